import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from steward.params import parse_params
from tasks.counterfactual import (
    ACTIONABLE,
    IMMUTABLE,
    Space,
    change_text,
    counterfactual,
    default_actionable,
)
from tasks.features import to_feature_frame
from tasks.serving_schema import SERVING_SUITE, columns, read_suite
from tasks.train import fit

GERMAN_CSV = Path(__file__).resolve().parents[3] / "data/german_credit.csv"
THRESHOLD = parse_params({}).evaluate.threshold
NEVER_CHANGED = ["sex", "age", "age_group", "foreign_worker", "personal_status"]
SAMPLE = 12  # rows per decision checked in the slower tests


@pytest.fixture(scope="module")
def german() -> pd.DataFrame:
    return to_feature_frame(pd.read_csv(GERMAN_CSV), data=parse_params({}).data)


@pytest.fixture(scope="module", params=["gradient_boosting", "logistic_regression"])
def model(request, german):
    params = parse_params({"train": {"model": request.param, "gradient_boosting": {"n_estimators": 40}}})
    return fit(german, params=params)


@pytest.fixture(scope="module")
def gb(german):
    return fit(german, params=parse_params({"train": {"gradient_boosting": {"n_estimators": 40}}}))


def score(model, frame: pd.DataFrame) -> np.ndarray:
    """P(good) straight from the pipeline, as the service computes it."""
    return model.predict_proba(frame[list(model.feature_names_in_)])[:, 1]


def apply(row: pd.DataFrame, changes) -> pd.DataFrame:
    changed = row.copy()
    for change in changes:
        changed[change["feature"]] = pd.array([change["to"]], dtype=row[change["feature"]].dtype)
    return changed


def rows_by_decision(model, german: pd.DataFrame, n: int = SAMPLE) -> dict[str, list[pd.DataFrame]]:
    p = score(model, german)
    approve = np.flatnonzero(p >= THRESHOLD)[:n]
    decline = np.flatnonzero(p < THRESHOLD)[:n]
    return {
        "approve": [german.iloc[[i]] for i in approve],
        "decline": [german.iloc[[i]] for i in decline],
    }


def single_candidates(space: Space, current) -> list[tuple[object, float]]:
    """Each value one feature may take instead of `current` and its cost, enumerated one by one."""
    if any(isinstance(v, str) for v in space.values):
        return [(v, 1.0) for v in space.values if v != current]
    out = []
    for k in range(math.ceil(space.low / space.step), math.floor(space.high / space.step) + 1):
        value = k * space.step  # every multiple of step in [low, high]
        moved = value - current
        inside = space.reach is None or abs(moved) <= space.reach
        allowed = {"up": moved > 0, "down": moved < 0, "both": moved != 0}[space.direction]
        if inside and allowed:
            out.append((value, abs(moved) / (space.reach or space.high - space.low)))
    return out


def brute_force_singles(model, row: pd.DataFrame, actionable) -> list[tuple[str, object, float, float]]:
    """Every single change that flips the decision: (feature, value, cost, probability)."""
    approved = score(model, row)[0] >= THRESHOLD
    tried, frames = [], []
    for feature, space in actionable.items():
        if feature not in model.feature_names_in_:
            continue
        for value, cost in single_candidates(space, row[feature].iloc[0]):
            frames.append(apply(row, [{"feature": feature, "to": value}]))
            tried.append((feature, value, cost))
    if not frames:
        return []
    p = score(model, pd.concat(frames, ignore_index=True))
    return [(f, v, c, float(q)) for (f, v, c), q in zip(tried, p, strict=True) if (q >= THRESHOLD) != approved]


def test_the_counterfactual_really_flips_the_decision_and_changes_only_actionable_features(model, german):
    flipped = {"approve": 0, "decline": 0}
    for decision, rows in rows_by_decision(model, german).items():
        for row in rows:
            cf = counterfactual(model, row, actionable=ACTIONABLE, threshold=THRESHOLD)
            if cf is None:
                continue
            flipped[decision] += 1
            assert cf.original_decision == decision
            assert 1 <= len(cf.changes) <= 2
            changed = apply(row, cf.changes)
            p = score(model, changed)[0]  # re-scored independently of the search
            assert (p >= THRESHOLD) == (decision == "decline")
            assert cf.decision == ("approve" if decision == "decline" else "decline")
            assert cf.probability == pytest.approx(p, abs=1e-12)
            assert cf.original_probability == pytest.approx(score(model, row)[0], abs=1e-12)
            differ = [c for c in row.columns if changed[c].iloc[0] != row[c].iloc[0]]
            assert set(differ) == {c["feature"] for c in cf.changes} <= set(ACTIONABLE)
            for c in cf.changes:
                assert c["from"] == row[c["feature"]].iloc[0] != c["to"]
            pd.testing.assert_frame_equal(changed[NEVER_CHANGED], row[NEVER_CHANGED])
            json.dumps(dataclasses.asdict(cf), allow_nan=False)
    assert flipped["approve"] > 0 and flipped["decline"] > 0  # the check above was not vacuous


def test_a_single_change_is_returned_exactly_when_one_exists_and_it_is_the_cheapest(gb, german):
    seen = {"single": 0, "pair": 0}
    for rows in rows_by_decision(gb, german).values():
        for row in rows:
            singles = brute_force_singles(gb, row, ACTIONABLE)
            cf = counterfactual(gb, row, actionable=ACTIONABLE, threshold=THRESHOLD)
            if singles:
                seen["single"] += 1
                assert cf is not None and len(cf.changes) == 1
                change = cf.changes[0]
                match = [s for s in singles if s[0] == change["feature"] and s[1] == change["to"]]
                assert len(match) == 1
                assert match[0][2] == pytest.approx(min(s[2] for s in singles))  # no cheaper single flip
                assert cf.probability == pytest.approx(match[0][3], abs=1e-12)
            else:
                assert cf is None or len(cf.changes) == 2
                assert counterfactual(gb, row, actionable=ACTIONABLE, threshold=THRESHOLD, max_changes=1) is None
                seen["pair"] += cf is not None
    assert seen["single"] > 0 and seen["pair"] > 0


def test_none_when_nothing_is_actionable_or_no_flip_is_possible(gb, german):
    row = german.iloc[[0]]
    assert counterfactual(gb, row, actionable={}, threshold=THRESHOLD) is None
    # a feature the model never reads cannot move its score
    assert counterfactual(gb, row, actionable={"applicant_id": Space(values=("x", "y"))}, threshold=0.5) is None
    # at threshold 0 every P(good) approves: nothing can decline
    assert counterfactual(gb, row, actionable=ACTIONABLE, threshold=0.0) is None


@pytest.mark.parametrize("feature", ["age", "sex", "foreign_worker", "age_group", "personal_status"])
def test_a_protected_attribute_listed_as_actionable_is_refused_by_name(gb, german, feature):
    space = Space(low=18, high=100, step=1) if feature == "age" else Space(values=("a", "b"))
    with pytest.raises(ValueError, match=feature):
        counterfactual(gb, german.iloc[[0]], actionable={**ACTIONABLE, feature: space}, threshold=THRESHOLD)


def test_bad_calls_are_refused(gb, german):
    with pytest.raises(ValueError, match="zip_code"):
        counterfactual(gb, german.iloc[[0]], actionable={"zip_code": Space(values=("1",))}, threshold=0.5)
    with pytest.raises(ValueError, match="one-row"):
        counterfactual(gb, german.iloc[:2], actionable=ACTIONABLE, threshold=0.5)
    with pytest.raises(ValueError, match="max_changes"):
        counterfactual(gb, german.iloc[[0]], actionable=ACTIONABLE, threshold=0.5, max_changes=0)
    with pytest.raises(ValueError, match="threshold"):
        counterfactual(gb, german.iloc[[0]], actionable=ACTIONABLE, threshold=1.5)


def test_spaces_are_validated():
    with pytest.raises(ValueError, match="either values"):
        Space(values=("a",), low=0, high=1, step=1)
    with pytest.raises(ValueError, match="either values"):
        Space()
    with pytest.raises(ValueError, match="step > 0"):
        Space(low=0, high=10, step=0)
    with pytest.raises(ValueError, match="low <= high"):
        Space(low=10, high=0, step=1)
    with pytest.raises(ValueError, match="no direction"):
        Space(values=("a", "b"), direction="up")
    with pytest.raises(ValueError, match="direction"):
        Space(low=0, high=10, step=1, direction="sideways")  # type: ignore[arg-type]


def test_a_direction_is_respected(gb, german):
    rows = rows_by_decision(gb, german)
    down = {"credit_amount": Space(low=1, high=1_000_000, step=250, reach=20_000, direction="down")}
    up = {"credit_amount": Space(low=1, high=1_000_000, step=250, reach=20_000, direction="up")}
    found = 0
    for decision, actionable in (("decline", down), ("approve", up)):
        for row in rows[decision]:
            for cf in (counterfactual(gb, row, actionable=actionable, threshold=THRESHOLD),):
                if cf is None:
                    continue
                found += 1
                (change,) = cf.changes
                assert change["feature"] == "credit_amount" and change["to"] % 250 == 0
                moved = change["to"] - change["from"]
                assert (moved < 0) if decision == "decline" else (moved > 0)
                assert abs(moved) <= 20_000
    assert found > 0


def test_thinning_over_budget_still_returns_a_true_flip(gb, german):
    checked = 0
    for rows in rows_by_decision(gb, german).values():
        for row in rows:
            full = counterfactual(gb, row, actionable=ACTIONABLE, threshold=THRESHOLD)
            if full is None or len(full.changes) < 2:
                continue
            thin = counterfactual(gb, row, actionable=ACTIONABLE, threshold=THRESHOLD, budget=30)
            if thin is None:
                continue
            checked += 1
            p = score(gb, apply(row, thin.changes))[0]
            assert (p >= THRESHOLD) != (thin.original_probability >= THRESHOLD)
            assert thin.probability == pytest.approx(p, abs=1e-12)
    assert checked > 0


def test_the_answer_is_deterministic(gb, german):
    row = german.iloc[[1]]
    first = counterfactual(gb, row, actionable=ACTIONABLE, threshold=THRESHOLD)
    again = counterfactual(gb, row, actionable=dict(reversed(list(ACTIONABLE.items()))), threshold=THRESHOLD)
    assert first == again


def test_the_default_actionable_set_comes_from_the_serving_suite_and_spares_the_protected():
    rules = {name: column.rules for name, column in columns(read_suite(SERVING_SUITE)).items()}
    assert not set(ACTIONABLE) & (IMMUTABLE | set(NEVER_CHANGED))
    assert set(ACTIONABLE) <= set(rules)
    assert {"credit_amount", "duration_months", "savings", "checking_status"} <= set(ACTIONABLE)
    for feature, space in ACTIONABLE.items():
        if space.values:
            assert space.values == rules[feature]["value set"]
        else:
            assert (space.low, space.high) == rules[feature]["range"]
    assert default_actionable(read_suite(SERVING_SUITE)) == ACTIONABLE


def test_changes_read_as_sentences():
    assert change_text("credit_amount", 5000, 2000) == "credit amount of 2,000 DM instead of 5,000 DM"
    assert change_text("duration_months", 36, 24) == "loan duration of 24 months instead of 36 months"
    assert change_text("savings", "< 100 DM", ">= 1000 DM") == "savings of '>= 1000 DM' instead of '< 100 DM'"
    assert change_text("existing_credits", 2, 1) == "1 existing credit(s) at this bank instead of 2"
    assert change_text("installment_rate", 4, 2) == "instalment rate band 2 (of 4) instead of 4"
    assert change_text("unlisted", 1, 2.5) == "unlisted of 2.5 instead of 1"

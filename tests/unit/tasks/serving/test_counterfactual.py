import dataclasses
import datetime
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from steward.usecase_check import suite_columns
from tasks.data.features import read_snapshot, to_feature_frame
from tasks.data.suites import read_suite
from tasks.model.train import fit
from tasks.serving.counterfactual import (
    NO_STEP,
    NOT_IN_SUITE,
    ORDER_NOT_IN_SUITE,
    Space,
    actionable_spaces,
    change_text,
    counterfactual,
)
from tasks.serving.reasons import FALLBACK_NUMBER, FALLBACK_TEXT
from tests.conftest import PROJECT_DIR
from tests.usecases import SHIPPED, parse_for, usecase

GERMAN_CSV = Path(__file__).resolve().parents[4] / "data/german_credit.csv"
THRESHOLD = parse_for({}).evaluate.threshold
GERMAN = usecase("german_credit")
NEVER_CHANGED = sorted(GERMAN.never_changed)
ACTIONABLE = actionable_spaces(GERMAN, read_suite(PROJECT_DIR / GERMAN.raw_suite))
PHRASES = GERMAN.reasons
SAMPLE = 12  # rows per decision checked in the slower tests


@pytest.fixture(scope="module")
def german() -> pd.DataFrame:
    return to_feature_frame(pd.read_csv(GERMAN_CSV), usecase=usecase())


@pytest.fixture(scope="module", params=["gradient_boosting", "logistic_regression"])
def model(request, german):
    params = parse_for({"train": {"model": request.param, "gradient_boosting": {"n_estimators": 40}}})
    return fit(german, params=params)


@pytest.fixture(scope="module")
def gb(german):
    return fit(german, params=parse_for({"train": {"gradient_boosting": {"n_estimators": 40}}}))


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
    if space.ordered:  # along the order, in its direction, a step of it costing 1
        if current not in space.values:
            return []
        at = space.values.index(current)
        ahead = {"up": lambda i: i > at, "down": lambda i: i < at, "both": lambda i: i != at}[space.direction]
        return [(v, float(abs(i - at))) for i, v in enumerate(space.values) if ahead(i)]
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
            cf = counterfactual(model, row, actionable=ACTIONABLE, threshold=THRESHOLD, protected=NEVER_CHANGED)
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
            cf = counterfactual(gb, row, actionable=ACTIONABLE, threshold=THRESHOLD, protected=NEVER_CHANGED)
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
        counterfactual(
            gb,
            german.iloc[[0]],
            actionable={**ACTIONABLE, feature: space},
            threshold=THRESHOLD,
            protected=NEVER_CHANGED,
        )


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
    with pytest.raises(ValueError, match="values only"):
        Space(low=0, high=10, step=1, ordered=True)
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
            full = counterfactual(gb, row, actionable=ACTIONABLE, threshold=THRESHOLD, protected=NEVER_CHANGED)
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
    first = counterfactual(gb, row, actionable=ACTIONABLE, threshold=THRESHOLD, protected=NEVER_CHANGED)
    again = counterfactual(
        gb, row, actionable=dict(reversed(list(ACTIONABLE.items()))), threshold=THRESHOLD, protected=NEVER_CHANGED
    )
    assert first == again


def test_the_german_actionable_set_comes_from_the_use_case_and_the_raw_suite():
    rules = suite_columns(read_suite(PROJECT_DIR / GERMAN.raw_suite))
    assert not set(ACTIONABLE) & GERMAN.never_changed
    assert set(ACTIONABLE) == set(GERMAN.actionable)
    for feature, space in ACTIONABLE.items():
        if space.values:
            assert space.values == tuple(rules[feature]["values"])
        else:
            assert (space.low, space.high) == (rules[feature]["min"], rules[feature]["max"])
    amount = rules["credit_amount"]
    assert ACTIONABLE["credit_amount"] == Space(low=amount["min"], high=amount["max"], step=250, reach=10_000)


def test_changes_read_as_sentences():
    assert change_text("credit_amount", 5000, 2000, phrases=PHRASES) == "credit amount of 2,000 DM instead of 5,000 DM"
    assert change_text("duration_months", 36, 24, phrases=PHRASES) == "loan duration of 24 months instead of 36 months"
    assert (
        change_text("savings", "< 100 DM", ">= 1000 DM", phrases=PHRASES)
        == "savings of '>= 1000 DM' instead of '< 100 DM'"
    )
    assert change_text("existing_credits", 2, 1, phrases=PHRASES) == "1 existing credit(s) at this bank instead of 2"
    assert change_text("installment_rate", 4, 2, phrases=PHRASES) == "instalment rate band 2 (of 4) instead of 4"
    assert change_text("unlisted", 1, 2.5) == "unlisted of 2.5 instead of 1"
    assert change_text("unlisted", "a", "b") == "unlisted 'b' instead of 'a'"
    assert change_text("unlisted", None, "b") == "unlisted 'b' instead of 'not given'"


# --- a hand-made scorer, where the right answer is worked out by hand ----------------------------------------
#
# P(good) = bias - duration_months / 64 - credit_amount / 8192 + a bonus per savings / checking_status value
# + age / 64 (a protected attribute the search must never touch). Every term is a multiple of 1/64 or 1/8192
# for the values used here, so the sums are exact in floating point and a probability can sit exactly on the
# threshold. The threshold is 0.5 throughout.

T = 0.5
SAVINGS = {"< 100 DM": 0.0, "100 <= ... < 500 DM": 0.0625, ">= 1000 DM": 0.5}
CHECKING = {"< 0 DM": 0.0, "no checking": 0.25}
READS = ["credit_amount", "duration_months", "savings", "checking_status", "age", "sex"]


class Rule:
    """A linear rule scored the way the service scores a pipeline: predict_proba over the model's columns."""

    def __init__(self, bias: float, savings=None, checking=None):
        self.bias = bias
        self.savings = SAVINGS if savings is None else savings
        self.checking = CHECKING if checking is None else checking
        self.feature_names_in_ = np.array(READS, dtype=object)
        self.calls: list[pd.DataFrame] = []

    def p(self, duration, amount, savings="< 100 DM", checking="< 0 DM", age=32) -> float:
        return self.bias - duration / 64 - amount / 8192 + self.savings[savings] + self.checking[checking] + age / 64

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        assert list(X.columns) == READS  # only the columns the model reads, in its order
        assert X["duration_months"].dtype == np.int64 and X["credit_amount"].dtype == np.int64
        assert X["savings"].dtype == object and X["sex"].dtype == object
        self.calls.append(X.copy())
        p = np.array(
            [
                self.p(r.duration_months, r.credit_amount, r.savings, r.checking_status, r.age)
                for r in X.itertuples(index=False)
            ],
            dtype=float,
        )
        p = np.clip(p, 0, 1)
        return np.column_stack([1 - p, p])


def applicant(duration=40, amount=4096, savings="< 100 DM", checking="< 0 DM") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "applicant_id": ["A-17"],  # not read by the model
            "checking_status": [checking],
            "credit_amount": np.array([amount], dtype=np.int64),
            "duration_months": np.array([duration], dtype=np.int64),
            "savings": [savings],
            "age": np.array([32], dtype=np.int64),
            "sex": ["female"],
        }
    )


# bias so that the applicant above (40 months, 4,096 DM, age 32) scores exactly p0 with no bonus
def rule(p0: float, **kwargs) -> Rule:
    return Rule(p0 + 40 / 64 + 4096 / 8192 - 32 / 64, **kwargs)


def moves(cf) -> list[tuple[str, object, object]]:
    return [(c["feature"], c["from"], c["to"]) for c in cf.changes]


DURATION = Space(low=0, high=64, step=4)  # cost of a move: months / 64
AMOUNT = Space(low=0, high=16384, step=512)  # cost of a move: DM / 16384


def test_the_rule_is_what_the_comments_say():
    r = rule(0.375)
    assert r.p(40, 4096) == 0.375 and r.p(32, 4096) == 0.5 and r.p(40, 3072) == 0.5
    assert r.p(40, 4096, savings=">= 1000 DM") == 0.875 and r.p(40, 4096, checking="no checking") == 0.625


def test_a_decline_flips_at_the_smallest_move_that_reaches_the_threshold_exactly():
    # 0.375 + 8/64 = 0.5: 32 months approves (P(good) >= threshold); 36 months (0.4375) does not
    model = rule(0.375)
    cf = counterfactual(model, applicant(), actionable={"duration_months": DURATION}, threshold=T, phrases=PHRASES)
    assert moves(cf) == [("duration_months", 40, 32)]
    assert (cf.probability, cf.decision) == (0.5, "approve")
    assert (cf.original_probability, cf.original_decision) == (0.375, "decline")
    assert cf.text == cf.changes[0]["text"] == "loan duration of 32 months instead of 40 months"
    assert type(cf.changes[0]["to"]) is int and type(cf.changes[0]["from"]) is int
    assert len(model.calls) == 1  # one stage, one predict_proba call


def test_an_approval_flips_only_strictly_below_the_threshold():
    # 0.6875 - 12/64 = 0.5 still approves; 16 more months (0.4375) declines
    model = rule(0.6875)
    cf = counterfactual(model, applicant(), actionable={"duration_months": DURATION}, threshold=T)
    assert moves(cf) == [("duration_months", 40, 56)]
    assert (cf.probability, cf.decision) == (0.4375, "decline")
    assert (cf.original_probability, cf.original_decision) == (0.6875, "approve")


def test_an_applicant_exactly_on_the_threshold_is_approved_and_any_worse_move_declines():
    cf = counterfactual(rule(0.5), applicant(), actionable={"duration_months": DURATION}, threshold=T)
    assert cf.original_decision == "approve" and moves(cf) == [("duration_months", 40, 44)]


@pytest.mark.parametrize(
    ("p0", "direction", "expected"),
    [
        (0.375, "down", ("duration_months", 40, 32)),
        (0.375, "both", ("duration_months", 40, 32)),
        (0.375, "up", None),  # longer loans only lower P(good)
        (0.6875, "up", ("duration_months", 40, 56)),
        (0.6875, "both", ("duration_months", 40, 56)),
        (0.6875, "down", None),
    ],
)
def test_a_direction_allows_only_moves_that_way(p0, direction, expected):
    space = Space(low=0, high=64, step=4, direction=direction)
    cf = counterfactual(rule(p0), applicant(), actionable={"duration_months": space}, threshold=T)
    assert (None if cf is None else moves(cf)[0]) == expected


@pytest.mark.parametrize(
    ("reach", "expected"), [(7, None), (8, ("duration_months", 40, 32)), (20, ("duration_months", 40, 32))]
)
def test_reach_bounds_the_move_inclusively(reach, expected):
    space = Space(low=0, high=64, step=4, reach=reach)
    cf = counterfactual(rule(0.375), applicant(), actionable={"duration_months": space}, threshold=T)
    assert (None if cf is None else moves(cf)[0]) == expected


def test_the_cheapest_of_several_single_flips_wins():
    # -8 months costs 8/64 = 0.125; -1,024 DM costs 1024/16384 = 0.0625; a savings bonus costs 1: both flip at 0.5
    actionable = {"duration_months": DURATION, "credit_amount": AMOUNT, "savings": Space(values=tuple(SAVINGS))}
    cf = counterfactual(rule(0.375), applicant(), actionable=actionable, threshold=T, phrases=PHRASES)
    assert moves(cf) == [("credit_amount", 4096, 3072)]
    assert cf.text == "credit amount of 3,072 DM instead of 4,096 DM"
    # a coarser amount grid makes the duration the cheaper move
    coarse = {**actionable, "credit_amount": Space(low=0, high=16384, step=4096)}  # -4,096 DM costs 0.25
    assert moves(counterfactual(rule(0.375), applicant(), actionable=coarse, threshold=T)) == [
        ("duration_months", 40, 32)
    ]


def test_between_equally_cheap_flips_the_largest_margin_wins():
    # both categorical (cost 1): savings >= 1000 DM gives 0.875, no checking gives 0.625
    actionable = {"checking_status": Space(values=tuple(CHECKING)), "savings": Space(values=tuple(SAVINGS))}
    cf = counterfactual(rule(0.375), applicant(), actionable=actionable, threshold=T)
    assert moves(cf) == [("savings", "< 100 DM", ">= 1000 DM")] and cf.probability == 0.875


def test_between_equal_flips_the_first_by_feature_name_then_value_order_wins():
    model = rule(0.375, savings={"< 100 DM": 0.0, "a": 0.25, "b": 0.25})
    actionable = {"savings": Space(values=("< 100 DM", "b", "a")), "checking_status": Space(values=tuple(CHECKING))}
    assert moves(counterfactual(model, applicant(), actionable=actionable, threshold=T)) == [
        ("checking_status", "< 0 DM", "no checking")
    ]
    del actionable["checking_status"]
    assert moves(counterfactual(model, applicant(), actionable=actionable, threshold=T)) == [
        ("savings", "< 100 DM", "b")
    ]


# Each single move below gains at most 1/16 (36 months, or 3,584 DM); together they gain the 1/8 a flip needs.
NEAR_DURATION = Space(low=36, high=64, step=4)  # from 40: 36, 44, ..., 64 (7 candidates), cost 4/28 for 36
NEAR_AMOUNT = Space(low=3584, high=8192, step=512)  # from 4096: 3584, 4608, ..., 8192 (9 candidates)


def test_a_pair_is_searched_only_when_no_single_change_flips():
    model = rule(0.375)
    actionable = {"duration_months": NEAR_DURATION, "credit_amount": NEAR_AMOUNT}
    cf = counterfactual(model, applicant(), actionable=actionable, threshold=T, phrases=PHRASES)
    assert moves(cf) == [("credit_amount", 4096, 3584), ("duration_months", 40, 36)]
    assert cf.probability == 0.5 and cf.decision == "approve"
    assert (
        cf.text == "credit amount of 3,584 DM instead of 4,096 DM and loan duration of 36 months instead of 40 months"
    )
    assert [len(c) for c in model.calls] == [1 + 9 + 7, 9 * 7]  # the applicant's own row rides in the first
    assert model.calls[0].iloc[0].to_dict() == applicant()[READS].iloc[0].to_dict()
    assert counterfactual(rule(0.375), applicant(), actionable=actionable, threshold=T, max_changes=1) is None


def test_one_changed_feature_is_preferred_to_two_even_when_the_two_cost_less():
    # the pair costs 4/28 + 512/4608 < 0.26; the savings bonus (cost 1) flips on its own
    model = rule(0.375)
    actionable = {
        "duration_months": NEAR_DURATION,
        "credit_amount": NEAR_AMOUNT,
        "savings": Space(values=tuple(SAVINGS)),
    }
    cf = counterfactual(model, applicant(), actionable=actionable, threshold=T)
    assert moves(cf) == [("savings", "< 100 DM", ">= 1000 DM")]
    assert len(model.calls) == 1  # the search stopped at the first stage holding a flip


@pytest.mark.parametrize("max_changes", [1, 2, 3])
def test_no_counterfactual_is_claimed_when_nothing_flips(max_changes):
    # at most 1/16 + 1/16 + 1/16 from 0.25: never 0.5
    model = rule(0.25, savings={"< 100 DM": 0.0, "100 <= ... < 500 DM": 0.0625, ">= 1000 DM": 0.0625})
    actionable = {
        "duration_months": NEAR_DURATION,
        "credit_amount": NEAR_AMOUNT,
        "savings": Space(values=tuple(SAVINGS)),
    }
    assert counterfactual(model, applicant(), actionable=actionable, threshold=T, max_changes=max_changes) is None
    assert len(model.calls) == max_changes


def test_one_feature_is_not_searched_in_pairs():
    model = rule(0.25)
    assert counterfactual(model, applicant(), actionable={"duration_months": NEAR_DURATION}, threshold=T) is None
    assert len(model.calls) == 1


def test_three_changes_when_allowed_and_needed():
    model = rule(0.3125, savings={"< 100 DM": 0.0, "100 <= ... < 500 DM": 0.0625, ">= 1000 DM": 0.0625})
    actionable = {
        "duration_months": NEAR_DURATION,
        "credit_amount": NEAR_AMOUNT,
        "savings": Space(values=tuple(SAVINGS)),
    }
    # 0.3125 + 3/16 = 0.5: only all three together flip
    cf = counterfactual(model, applicant(), actionable=actionable, threshold=T, max_changes=3)
    assert [m[0] for m in moves(cf)] == ["credit_amount", "duration_months", "savings"]
    assert len(model.calls) == 3


@pytest.mark.parametrize(
    ("budget", "pair_rows"),
    # 9 amounts x 7 durations; over budget, both keep their best `cap` candidates, cap the largest that fits
    [(10**6, 63), (63, 63), (62, 8 * 7), (56, 56), (55, 7 * 7), (48, 6 * 6), (4, 2 * 2), (3, 1), (1, 1)],
)
def test_over_budget_each_feature_keeps_its_most_promising_candidates(budget, pair_rows):
    model = rule(0.375)
    actionable = {"duration_months": NEAR_DURATION, "credit_amount": NEAR_AMOUNT}
    cf = counterfactual(model, applicant(), actionable=actionable, threshold=T, budget=budget)
    assert moves(cf) == [("credit_amount", 4096, 3584), ("duration_months", 40, 36)]
    assert len(model.calls[1]) == pair_rows


def test_thinning_an_approval_keeps_the_moves_toward_a_decline():
    # 0.5625: 44 months or 4,608 DM alone reach 0.5, which still approves; both together decline
    model = rule(0.5625)
    actionable = {"duration_months": Space(low=16, high=44, step=4), "credit_amount": Space(low=0, high=4608, step=512)}
    cf = counterfactual(model, applicant(), actionable=actionable, threshold=T, budget=1)
    assert moves(cf) == [("credit_amount", 4096, 4608), ("duration_months", 40, 44)]
    assert (cf.probability, cf.decision) == (0.4375, "decline")
    assert len(model.calls[1]) == 1


def test_protected_attributes_and_unlisted_features_are_never_changed():
    # age is worth 1/64 a year: a younger or older applicant would flip, but age is nobody's lever
    model = rule(0.375)
    actionable = {"savings": Space(values=("< 100 DM", "100 <= ... < 500 DM"))}
    assert counterfactual(model, applicant(), actionable=actionable, threshold=T) is None
    cf = counterfactual(model, applicant(), actionable={"duration_months": DURATION}, threshold=T)
    assert moves(cf) == [("duration_months", 40, 32)]
    for frame in model.calls:
        assert set(frame["age"]) == {32} and set(frame["sex"]) == {"female"}
    last = model.calls[-1]  # the duration search changed nothing else
    assert set(last["savings"]) == {"< 100 DM"} and set(last["checking_status"]) == {"< 0 DM"}


def test_the_use_cases_never_changed_attributes_are_refused():
    assert {"sex", "age", "age_group", "foreign_worker", "personal_status"} <= GERMAN.never_changed
    with pytest.raises(ValueError) as refused:
        counterfactual(
            rule(0.375),
            applicant(),
            actionable={"sex": Space(values=("male",)), "age": DURATION},
            threshold=T,
            protected=GERMAN.never_changed,
        )
    assert str(refused.value) == (
        "age, sex may not be actionable: a protected attribute (or its proxy) is never changed"
    )


def test_the_caller_may_protect_more():
    with pytest.raises(ValueError, match=r"^credit_amount may not be actionable"):
        counterfactual(
            rule(0.375), applicant(), actionable={"credit_amount": AMOUNT}, threshold=T, protected={"credit_amount"}
        )


def test_an_integer_column_takes_only_whole_numbers():
    # multiples of 2.5: 32.5 would be the smallest flip, but 30 is the smallest whole one
    space = Space(low=0, high=64, step=2.5)
    cf = counterfactual(rule(0.375), applicant(), actionable={"duration_months": space}, threshold=T)
    assert moves(cf) == [("duration_months", 40, 30)] and type(cf.changes[0]["to"]) is int


def test_features_the_model_does_not_read_are_skipped():
    model = rule(0.375)
    actionable = {"applicant_id": Space(values=("A-1", "A-2")), "duration_months": DURATION}
    assert moves(counterfactual(model, applicant(), actionable=actionable, threshold=T)) == [
        ("duration_months", 40, 32)
    ]
    assert counterfactual(model, applicant(), actionable={"applicant_id": Space(values=("A-1",))}, threshold=T) is None
    no_move = {"duration_months": Space(values=(40,)), "savings": Space(values=("< 100 DM",))}
    assert counterfactual(model, applicant(), actionable=no_move, threshold=T) is None
    assert len(model.calls) == 1  # nothing to try: nothing scored


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"actionable": {"zz": DURATION, "zip_code": DURATION}},
            "actionable feature(s) zip_code, zz are not columns of the row",
        ),
        ({"max_changes": 0}, "max_changes must be at least 1, got 0"),
        ({"threshold": -0.01}, "threshold must be within [0, 1], got -0.01"),
        ({"threshold": 1.5}, "threshold must be within [0, 1], got 1.5"),
        ({"budget": 0}, "budget must be at least 1, got 0"),
    ],
)
def test_bad_arguments_are_refused_with_the_rule_named(kwargs, message):
    call = {"actionable": {"duration_months": DURATION}, "threshold": T} | kwargs
    with pytest.raises(ValueError) as refused:
        counterfactual(rule(0.375), applicant(), **call)
    assert str(refused.value) == message


@pytest.mark.parametrize("rows", [0, 2])
def test_only_one_row_is_explained(rows):
    frame = pd.concat([applicant()] * rows, ignore_index=True) if rows else applicant().iloc[[]]
    with pytest.raises(ValueError, match=f"^the row must be a one-row frame, got {rows} rows$"):
        counterfactual(rule(0.375), frame, actionable={"duration_months": DURATION}, threshold=T)


@pytest.mark.parametrize(("threshold", "found"), [(0.0, False), (1.0, True)])
def test_the_threshold_may_be_zero_or_one(threshold, found):
    # at 0 everything approves; at 1 only P(good) = 1 does, which 0 months reaches (0.375 + 40/64 = 1)
    cf = counterfactual(
        rule(0.375),
        applicant(),
        actionable={"duration_months": DURATION, "credit_amount": AMOUNT},
        threshold=threshold,
        budget=1,
    )
    assert (cf is not None) is found


# --- a Space: its candidates, worked out by hand -----------------------------------------------------------


@pytest.mark.parametrize(
    ("space", "current", "values", "costs"),
    [
        (Space(low=0, high=10, step=3), 4, [0, 3, 6, 9], [0.4, 0.1, 0.2, 0.5]),
        (Space(low=1, high=10, step=3), 4, [3, 6, 9], [1 / 9, 2 / 9, 5 / 9]),  # multiples of step within [1, 10]
        (Space(low=0, high=10, step=5), 3, [0, 5, 10], [0.3, 0.2, 0.7]),  # an off-grid applicant
        (Space(low=0, high=10, step=1, reach=2), 5, [3, 4, 6, 7], [1, 0.5, 0.5, 1]),
        (Space(low=0, high=10, step=1, reach=2, direction="up"), 5, [6, 7], [0.5, 1]),
        (Space(low=0, high=10, step=1, reach=2, direction="down"), 5, [3, 4], [1, 0.5]),
        (Space(low=0, high=4, step=1, direction="up"), 4, [], []),
        (Space(values=(1, 5, 3, 3)), 3, [1, 5], [0.5, 0.5]),  # an explicit grid: scale 5 - 1
        (Space(values=(7,)), 3, [7], [4]),  # a grid of one: unit scale
        (Space(low=5, high=5, step=1), 2, [5], [3]),
        (Space(values=(2.5, 0.5), direction="down"), 2.5, [0.5], [1]),
        (Space(low=-2, high=0, step=1), -2, [-1, 0], [0.5, 1]),  # a range ending at 0
    ],
)
def test_numeric_candidates_and_their_cost(space, current, values, costs):
    got_values, got_costs = space.candidates(current)
    assert got_values.tolist() == values and got_values.dtype == np.float64
    assert got_costs.tolist() == pytest.approx(costs)


def test_categorical_candidates_are_the_other_values_at_unit_cost():
    values, costs = Space(values=("a", "b", "c")).candidates("b")
    assert values.tolist() == ["a", "c"] and costs.tolist() == [1.0, 1.0]
    assert Space(values=("a", "b", "c")).categorical and not Space(values=(1, 2)).categorical
    mixed, _ = Space(values=("none", 1, 2.5)).candidates("none")  # a number among the words stays a number
    assert mixed.tolist() == [1, 2.5] and [type(v) for v in mixed] == [int, float]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"values": ("a",), "low": 0, "high": 1, "step": 1},
            "a Space takes either values or low/high/step, not both and not neither",
        ),
        ({}, "a Space takes either values or low/high/step, not both and not neither"),
        ({"values": (1,), "step": 1}, "a Space takes either values or low/high/step, not both and not neither"),
        (
            {"low": 0, "high": 10, "step": 0},
            "a numeric Space needs low <= high and step > 0, got low=0, high=10, step=0",
        ),
        (
            {"low": 0, "high": 10, "step": -1},
            "a numeric Space needs low <= high and step > 0, got low=0, high=10, step=-1",
        ),
        (
            {"low": 10, "high": 0, "step": 1},
            "a numeric Space needs low <= high and step > 0, got low=10, high=0, step=1",
        ),
        ({"low": 0, "high": 10}, "a numeric Space needs low <= high and step > 0, got low=0, high=10, step=None"),
        ({"low": 0, "step": 1}, "a numeric Space needs low <= high and step > 0, got low=0, high=None, step=1"),
        ({"high": 0, "step": 1}, "a numeric Space needs low <= high and step > 0, got low=None, high=0, step=1"),
        ({"low": 0, "high": 10, "step": 1, "reach": 0}, "reach must be positive, got 0"),
        ({"values": (1, 2), "reach": -1}, "reach must be positive, got -1"),
        ({"values": ("a", "b"), "direction": "up"}, "a categorical Space has no direction unless ordered, got 'up'"),
        (
            {"values": ("a", "b"), "direction": "down"},
            "a categorical Space has no direction unless ordered, got 'down'",
        ),
        (
            {"low": 0, "high": 1, "step": 1, "direction": "sideways"},
            "direction must be one of ('up', 'down', 'both'), got 'sideways'",
        ),
    ],
)
def test_a_bad_space_is_refused_with_the_rule_named(kwargs, message):
    with pytest.raises(ValueError) as refused:
        Space(**kwargs)
    assert str(refused.value) == message


@pytest.mark.parametrize(
    "kwargs",
    [
        {"low": 3, "high": 3, "step": 0.5},
        {"low": 0, "high": 1, "step": 1, "reach": 0.1, "direction": "up"},
        {"values": (1, 2), "direction": "down"},
        {"values": ("a",), "direction": "both"},
    ],
)
def test_a_good_space_is_accepted(kwargs):
    Space(**kwargs)


# --- the actionable set, from a use case and a hand-made suite ---------------------------------------------------


def _spec(**actionable):
    from steward.usecase import UseCase

    base = usecase("adult_income").model_dump()
    return UseCase.model_validate({**base, "actionable": actionable})


def _suite(**columns):
    """A suite: column -> (type, value set or (min, max))."""
    expectations = []
    for column, (kind, rule) in columns.items():
        expectations.append({"type": "expect_column_values_to_be_of_type", "kwargs": {"column": column, "type_": kind}})
        if isinstance(rule, list):
            expectations.append(
                {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": column, "value_set": rule}}
            )
        elif rule is not None:
            low, high = rule
            expectations.append(
                {
                    "type": "expect_column_values_to_be_between",
                    "kwargs": {"column": column, "min_value": low, "max_value": high},
                }
            )
    return {"name": "hand-made", "expectations": expectations}


def test_the_actionable_set_takes_values_and_ranges_from_the_suite_and_bounds_from_the_use_case():
    spec = _spec(
        hours_per_week={"step": 5, "reach": 20, "direction": "up"},
        capital_gain_x={},
        workclass={},
        education={"direction": "up", "order": ["low", "mid", "high"]},
        occupation={"low": 2, "high": 6, "step": 0.5},
    )
    suite = _suite(
        hours_per_week=("int", (0, 99)),
        capital_gain_x=("int", (0, 10)),
        workclass=("str", ["a", "b"]),
        education=("str", ["high", "low", "mid"]),
        occupation=("float", (0, 100)),
    )
    spaces = actionable_spaces(spec, suite)
    assert spaces == {
        "capital_gain_x": Space(low=0, high=10, step=1),  # a whole-number column moves by 1 without a step
        "education": Space(values=("low", "mid", "high"), direction="up", ordered=True),
        "hours_per_week": Space(low=0, high=99, step=5, reach=20, direction="up"),
        "occupation": Space(low=2, high=6, step=0.5),  # the use case's bounds within the suite's
        "workclass": Space(values=("a", "b")),
    }
    assert list(spaces) == sorted(spaces)


@pytest.mark.parametrize(
    ("actionable", "suite", "message"),
    [
        ({"workclass": {}}, _suite(), NOT_IN_SUITE.format(feature="workclass")),
        ({"workclass": {}}, _suite(workclass=("int", None)), NOT_IN_SUITE.format(feature="workclass")),
        ({"workclass": {}}, _suite(workclass=("float", (0, 1))), NO_STEP.format(feature="workclass", kind="float")),
        (
            {"education": {"order": ["a", "z"]}},
            _suite(education=("str", ["a", "b"])),
            ORDER_NOT_IN_SUITE.format(feature="education", values=["z"]),
        ),
    ],
    ids=["not in the suite", "no range", "float without a step", "order outside the value set"],
)
def test_an_actionable_feature_the_suite_cannot_bound_is_refused_by_name(actionable, suite, message):
    with pytest.raises(ValueError) as refused:
        actionable_spaces(_spec(**actionable), suite)
    assert str(refused.value) == message


@pytest.mark.parametrize(
    ("current", "direction", "values", "costs"),
    [
        ("mid", "up", ["high", "top"], [1, 2]),
        ("mid", "down", ["low"], [1]),
        ("mid", "both", ["low", "high", "top"], [1, 1, 2]),
        ("top", "up", [], []),
        (None, "up", [], []),  # a gap has no place on the order
    ],
)
def test_an_ordered_space_moves_only_along_its_order_each_step_costing_one(current, direction, values, costs):
    space = Space(values=("low", "mid", "high", "top"), direction=direction, ordered=True)
    found, cost = space.candidates(current)
    assert list(found) == values and list(cost) == costs


# --- both shipped use cases, with a real model -----------------------------------------------------------------


@pytest.fixture(scope="module", params=SHIPPED)
def served(request):
    """A use case, its actionable set, rows of its data and a small gradient boosting fitted on them."""
    spec = usecase(request.param)
    raw = read_snapshot(PROJECT_DIR / spec.dataset.file)
    raw = raw.sample(n=min(len(raw), 3000), random_state=0).reset_index(drop=True)
    frame = to_feature_frame(raw, usecase=spec)
    params = parse_for({"train": {"gradient_boosting": {"n_estimators": 40}}}, request.param)
    spaces = actionable_spaces(spec, read_suite(PROJECT_DIR / spec.raw_suite))
    return spec, frame, fit(frame, params=params), spaces


def test_a_declined_person_gets_a_true_counterfactual_that_touches_only_what_they_can_act_on(served):
    spec, frame, model, spaces = served
    declined = np.flatnonzero(score(model, frame) < THRESHOLD)[:SAMPLE]
    assert len(declined) == SAMPLE
    found = 0
    for i in declined:
        row = frame.iloc[[i]]
        cf = counterfactual(
            model, row, actionable=spaces, threshold=THRESHOLD, protected=spec.never_changed, phrases=spec.reasons
        )
        if cf is None:  # reported impossible: then no single change flips it either (checked by brute force)
            assert brute_force_singles(model, row, spaces) == []
            continue
        found += 1
        changed = apply(row, cf.changes)
        assert score(model, changed)[0] >= THRESHOLD and cf.decision == "approve"
        kept = sorted(spec.never_changed & set(row.columns))
        pd.testing.assert_frame_equal(changed[kept], row[kept])
        for change in cf.changes:
            how = spec.actionable[change["feature"]]
            if how.order is not None:  # an ordinal moves only in its direction
                moved = how.order.index(change["to"]) - how.order.index(change["from"])
                assert moved > 0 if how.direction == "up" else moved != 0
            elif how.step is not None:  # a number moves by multiples of step, within reach
                assert change["to"] % how.step == 0
                assert how.reach is None or abs(change["to"] - change["from"]) <= how.reach
            text = spec.reasons.get(change["feature"])
            if text is not None:
                assert text.partition("{value}")[0] in change["text"]
        json.dumps(dataclasses.asdict(cf), allow_nan=False)
    assert found > 0
    if spec.name == "adult_income":
        assert {"sex", "race", "age", "relationship", "native_country", "age_group"} <= spec.never_changed
        assert spaces["education"].direction == "up" and spaces["education"].ordered


def test_more_feature_pairs_than_the_budget_still_scores_each_pairs_best_candidates():
    # three features, three pairs: even a budget of 2 scores one row per pair (each feature's best single move)
    model = rule(0.375, savings={"< 100 DM": 0.0, "100 <= ... < 500 DM": 0.0625, ">= 1000 DM": 0.0625})
    actionable = {
        "duration_months": NEAR_DURATION,
        "credit_amount": NEAR_AMOUNT,
        "savings": Space(values=tuple(SAVINGS)),
    }
    cf = counterfactual(model, applicant(), actionable=actionable, threshold=T, budget=2)
    assert moves(cf) == [("credit_amount", 4096, 3584), ("duration_months", 40, 36)]  # the cheapest of three pairs
    assert len(model.calls[1]) == 3


# --- ties: the first by enumeration order wins, also when thinning keeps only some tied candidates --------------

# savings: ten values that do not help, then ten that each gain 1/16 (as much as 36 months): a tie of ten
USELESS = tuple(f"none-{i}" for i in range(10))
HELPFUL = tuple(f"some-{i}" for i in range(10))
MANY_SAVINGS = {"< 100 DM": 0.0} | dict.fromkeys(USELESS, 0.0) | dict.fromkeys(HELPFUL, 0.0625)


@pytest.mark.parametrize(("budget", "pair_rows"), [(10**6, 20 * 7), (9, 3 * 3), (1, 1)])
def test_among_tied_candidates_thinning_keeps_the_first_enumerated(budget, pair_rows):
    # 0.375 + 1/16 (36 months) + 1/16 (any helpful savings value) = 0.5: each such pair flips at the same cost
    # and margin, so the first enumerated wins: some-0, which thinning must keep among the ten tied values
    model = rule(0.375, savings=MANY_SAVINGS)
    actionable = {"duration_months": NEAR_DURATION, "savings": Space(values=tuple(MANY_SAVINGS))}
    cf = counterfactual(model, applicant(), actionable=actionable, threshold=T, budget=budget)
    assert moves(cf) == [("duration_months", 40, 36), ("savings", "< 100 DM", "some-0")]
    assert len(model.calls[1]) == pair_rows


class OnlyTogether:
    """Approves (P(good) = 0.75) exactly the (checking_status, savings) pairs listed, else 0.25: not additive."""

    feature_names_in_ = np.array(["checking_status", "savings"], dtype=object)

    def __init__(self, approved: set[tuple[str, str]]):
        self.approved = approved

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        pairs = zip(X["checking_status"], X["savings"], strict=True)
        p = np.array([0.75 if pair in self.approved else 0.25 for pair in pairs], dtype=float)
        return np.column_stack([1 - p, p])


@pytest.mark.parametrize(
    ("approved", "expected"),
    [
        ({("c1", "s2"), ("c2", "s1")}, ("c1", "s2")),  # (c1, s2) is enumerated before (c2, s1)
        ({("c2", "s1"), ("c2", "s2")}, ("c2", "s1")),
        ({("c2", "s2"), ("c1", "s1")}, ("c1", "s1")),
        ({("c2", "s2")}, ("c2", "s2")),
    ],
)
def test_between_equal_pairs_the_first_by_the_first_features_value_then_the_seconds_wins(approved, expected):
    # every pair costs 1 + 1 and the approved ones share a margin of 0.25: enumeration order decides
    actionable = {
        "savings": Space(values=("< 100 DM", "s1", "s2")),
        "checking_status": Space(values=("< 0 DM", "c1", "c2")),
    }
    cf = counterfactual(OnlyTogether(approved), applicant(), actionable=actionable, threshold=T)
    assert moves(cf) == [("checking_status", "< 0 DM", expected[0]), ("savings", "< 100 DM", expected[1])]
    assert (cf.probability, cf.original_probability) == (0.75, 0.25)


@pytest.mark.parametrize(
    ("phrase", "expected"),
    [
        ("rated '{value}'", "rated 'B' instead of 'C'"),  # quotes around the value are repeated
        ("{value}'s guarantee", "B's guarantee instead of C"),  # an apostrophe after the value is no quote
        ("'{value} grade'", "'B grade' instead of C"),  # nor quotes around more than the value
        ("{value} years", "B years instead of C years"),  # a one-word unit is repeated
        ("{value} years ago", "B years ago instead of C"),  # a longer tail is said once
        ("{value} $k", "B $k instead of C"),  # as is a unit that is not one plain word
        ("band {value}", "band B instead of C"),
    ],
)
def test_only_quotes_around_the_value_are_repeated(monkeypatch, phrase, expected):
    assert change_text("grade", "C", "B", phrases={"grade": phrase}) == expected


@pytest.mark.parametrize(
    ("feature", "expected"),
    [
        ("unlisted", "unlisted of 2 instead of 1"),
        ("{value}", "{value} of 2 instead of 1"),  # a feature's name is not read as the phrase's placeholder
        ("score {value} band", "score {value} band of 2 instead of 1"),
    ],
)
def test_an_unlisted_feature_is_named_as_it_is(feature, expected):
    assert change_text(feature, 1, 2) == expected


@pytest.mark.parametrize("name", SHIPPED)
def test_every_phrase_holds_the_value_once(name):
    for phrase in (*usecase(name).reasons.values(), FALLBACK_NUMBER, FALLBACK_TEXT):
        assert phrase.count("{value}") == 1, phrase


class InFloat32:
    """P(good) in float32, as some libraries score: 0.25 above 32 months, float32(0.6) at 29-32, 0.75 at <= 28."""

    feature_names_in_ = np.array(["duration_months"], dtype=object)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        months = X["duration_months"].to_numpy()
        p = np.where(months <= 28, 0.75, np.where(months <= 32, 0.6, 0.25)).astype(np.float32)
        return np.column_stack([1 - p, p])


def test_a_float32_probability_is_decided_as_the_number_it_is():
    # float32(0.6) is 0.60000002384...: a threshold a hair above it declines at 32 months, as the service
    # (which compares the probability as a Python float) would; 28 months is the smallest move that approves
    threshold = float(np.float32(0.6)) + 1e-12
    cf = counterfactual(InFloat32(), applicant(), actionable={"duration_months": DURATION}, threshold=threshold)
    assert moves(cf) == [("duration_months", 40, 28)]
    assert (cf.probability, cf.decision, cf.original_probability) == (0.75, "approve", 0.25)


@pytest.mark.parametrize("budget", [3, 10**6])
def test_thinning_ranks_each_features_candidates_by_their_own_progress(budget):
    # three features in name order; only 3,584 DM with savings v3 (1/16 + 1/16 from 0.375) flips. At budget 3
    # each feature keeps its one best candidate: for savings that is v3, its last, ranked by savings' own gains
    model = rule(
        0.375, savings={"< 100 DM": 0.0, "v1": 0.0, "v2": 0.0, "v3": 0.0625}, checking={"< 0 DM": 0.0, "c": 0.0}
    )
    actionable = {
        "checking_status": Space(values=("< 0 DM", "c")),
        "credit_amount": NEAR_AMOUNT,
        "savings": Space(values=("< 100 DM", "v1", "v2", "v3")),
    }
    cf = counterfactual(model, applicant(), actionable=actionable, threshold=T, budget=budget)
    assert moves(cf) == [("credit_amount", 4096, 3584), ("savings", "< 100 DM", "v3")]


class Lookup:
    """P(good) of a (checking_status, savings) pair from a table, 0.25 for any pair not in it."""

    feature_names_in_ = np.array(["checking_status", "savings"], dtype=object)

    def __init__(self, table: dict[tuple[object, object], float]):
        self.table = table

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        pairs = zip(X["checking_status"], X["savings"], strict=True)
        p = np.array([self.table.get(pair, 0.25) for pair in pairs], dtype=float)
        return np.column_stack([1 - p, p])


@pytest.mark.parametrize("budget", [1, 10**6])
def test_thinning_tells_apart_progress_however_small(budget):
    # c1 alone moves P(good) from 0.25 by 2**-54 (one unit in the last place), c0 not at all: c1 is the more
    # promising, and only c1 with s1 approves
    table = {("c0", "< 100 DM"): 0.25, ("c1", "< 100 DM"): 0.25 + 2**-54, ("c1", "s1"): 0.75}
    actionable = {"checking_status": Space(values=("< 0 DM", "c0", "c1")), "savings": Space(values=("< 100 DM", "s1"))}
    cf = counterfactual(Lookup(table), applicant(), actionable=actionable, threshold=T, budget=budget)
    assert moves(cf) == [("checking_status", "< 0 DM", "c1"), ("savings", "< 100 DM", "s1")]


def test_a_pairs_cost_is_the_sum_of_both_changes():
    # from 0.3125 a flip needs 3/16: 3,072 DM (1/8, cost 1) with 36 months (1/16, cost 1/4) costs 1.25;
    # 3,584 DM (1/16, cost 1/2) with 32 months (1/8, cost 1/2) costs 1.0 and wins
    actionable = {
        "credit_amount": Space(low=3072, high=4096, step=512),  # scale 1,024
        "duration_months": Space(low=32, high=48, step=4),  # scale 16
    }
    cf = counterfactual(rule(0.3125), applicant(), actionable=actionable, threshold=T)
    assert moves(cf) == [("credit_amount", 4096, 3584), ("duration_months", 40, 32)]
    assert cf.probability == 0.5


@pytest.mark.parametrize(
    ("p0", "savings", "checking", "expected", "probability"),
    [
        # a decline: savings >= 1000 DM reaches 0.875, no checking only 0.625
        (0.375, "< 100 DM", "< 0 DM", ("savings", "< 100 DM", ">= 1000 DM"), 0.875),
        # an approval at 0.6875: losing the savings bonus falls to 0.1875, further below 0.5 than losing the
        # checking bonus (0.4375) or dropping to 100-500 DM (0.25)
        (-0.0625, ">= 1000 DM", "no checking", ("savings", ">= 1000 DM", "< 100 DM"), 0.1875),
    ],
)
def test_the_largest_margin_wins_either_way(p0, savings, checking, expected, probability):
    actionable = {"checking_status": Space(values=tuple(CHECKING)), "savings": Space(values=tuple(SAVINGS))}
    cf = counterfactual(rule(p0), applicant(savings=savings, checking=checking), actionable=actionable, threshold=T)
    assert moves(cf) == [expected] and cf.probability == probability


def test_costs_equal_to_twelve_decimals_are_equally_small():
    # a reach of 2**52 DM makes every move nearly free: 1,024 DM costs 2**-42 (2.3e-13), 2,048 DM 4.5e-13, both
    # 0 to twelve decimals, so the larger margin wins: 2,048 DM (0.625) over 3,072 DM (0.5)
    space = Space(low=0, high=8192, step=1024, reach=2**52)
    cf = counterfactual(rule(0.375), applicant(), actionable={"credit_amount": space}, threshold=T)
    assert moves(cf) == [("credit_amount", 4096, 2048)] and cf.probability == 0.625


class ByDate:
    """Approves (0.75) only a review date of 2025-01-01 in checking_status; 0.25 otherwise."""

    feature_names_in_ = np.array(["checking_status"], dtype=object)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = np.where(X["checking_status"] == datetime.date(2025, 1, 1), 0.75, 0.25)
        return np.column_stack([1 - p, p])


def test_a_value_of_another_type_is_given_as_text():
    row = applicant()
    row["checking_status"] = pd.Series([datetime.date(2024, 1, 1)], dtype=object)
    space = Space(values=("later", datetime.date(2025, 1, 1)))
    cf = counterfactual(ByDate(), row, actionable={"checking_status": space}, threshold=T)
    assert moves(cf) == [("checking_status", "2024-01-01", "2025-01-01")]
    json.dumps(dataclasses.asdict(cf), allow_nan=False)

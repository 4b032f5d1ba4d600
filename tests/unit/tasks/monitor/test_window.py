"""The monitoring report against a reference built from a real model on synthetic applications."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.data.features import LABEL
from tasks.monitor.window import Limits, report
from tests.unit.tasks.monitor.served import everything_window, fitted_model, outcomes, reference_of
from tests.unit.tasks.monitor.served import served as _served
from tests.usecases import SHIPPED


@pytest.fixture(scope="module")
def model():
    return fitted_model()


@pytest.fixture(scope="module")
def ref(model):
    return reference_of(model)


def test_the_reference_rates_are_the_groups_rates_under_the_services_rule(model, ref):
    test = _served(model, 6_000, seed=2)
    young = test["age_group"] == "under 25"
    approved = test["decision"] == "approve"
    assert ref["groups"]["age_group=under 25"]["selection_rate"] == pytest.approx(approved[young].mean())
    wrong = approved != (test[LABEL] == 1)
    assert ref["groups"]["age_group=under 25"]["error_rate"] == pytest.approx(wrong[young].mean())
    assert sum(ref["attributions"].values()) == pytest.approx(1.0)


@pytest.mark.parametrize("name", SHIPPED)
def test_a_window_like_the_reference_has_no_breach(model, ref, name):
    found = report(_served(model, 4_000, seed=3, name=name), ref, limits=Limits(), favourable=outcomes(name)[0])
    assert found["breaches"] == []
    assert found["outcomes"] == 4_000 and {g["group"] for g in found["groups"]} == set(ref["groups"])


def test_covariate_shift_breaches_input_and_prediction_drift(model, ref):
    found = report(_served(model, 4_000, seed=4, drift=1.0), ref, limits=Limits(), favourable="good")
    drifted = {d["column"] for d in found["inputs"] if d["drifted"]}
    assert {"duration_months", "credit_amount", "checking_status"} <= drifted and "housing" not in drifted
    assert any(b.startswith("input drift: credit_amount") for b in found["breaches"])


def test_a_group_declined_more_than_at_training_is_named(model, ref):
    window = _served(model, 4_000, seed=5)
    young = window["age_group"] == "under 25"
    window.loc[young & (np.arange(len(window)) % 2 == 0), "decision"] = "decline"
    found = report(window, ref, favourable="good", limits=Limits())
    expected = (window.loc[young, "decision"] == "approve").mean()
    row = next(g for g in found["groups"] if g["group"] == "age_group=under 25")
    assert row["selection_rate"] == pytest.approx(expected)
    assert [b for b in found["breaches"] if b.startswith("selection rate drift")] == [
        f"selection rate drift: age_group=under 25 {expected:.3f} vs "
        f"{ref['groups']['age_group=under 25']['selection_rate']:.3f} at training"
    ]


def test_error_rates_wait_for_outcomes_and_small_groups_are_not_judged(model, ref):
    window = _served(model, 300, seed=6).assign(outcome=None)
    found = report(window, ref, favourable="good", limits=Limits(min_group_size=100))
    young = next(g for g in found["groups"] if g["group"] == "age_group=under 25")
    assert "fewer than 100" in young["note"] and "selection_rate" not in young
    men = next(g for g in found["groups"] if g["group"] == "sex=male")
    assert men["outcome_note"] == "no outcomes yet" and "error_rate" not in men


def test_attribution_drift_and_slow_windows_are_breaches(model, ref):
    window = _served(model, 2_000, seed=7).assign(latency_ms=400.0)
    found = report(window, ref, favourable="good", limits=Limits(), attributions={"purpose": 1.0, "housing": 1.0})
    assert found["attribution"]["drifted"]
    assert "latency: p95 400 ms > 250 ms" in found["breaches"]
    same = report(
        _served(model, 2_000, seed=8), ref, limits=Limits(), favourable="good", attributions=dict(ref["attributions"])
    )
    assert same["attribution"] == {"js": pytest.approx(0.0, abs=1e-9), "drifted": False}


def test_errors_are_counted_apart_and_breach_past_their_limit(model, ref):
    window = _served(model, 1_000, seed=9)
    window.loc[:29, "decision"] = "error"  # 3 % of requests raised
    found = report(window, ref, favourable="good", limits=Limits(max_error_rate=0.01))
    assert (found["errors"], found["error_rate"]) == (30, pytest.approx(0.03))
    assert "errors: 30 of 1000 requests (3.00%) > 1.00%" in found["breaches"]
    men = next(g for g in found["groups"] if g["group"] == "sex=male")
    answered = window.iloc[30:]
    assert men["n"] == (answered["sex"] == "male").sum()  # rates are of answered requests only


def test_review_decisions_are_reported_as_labels_per_group(model, ref):
    window = _served(model, 1_000, seed=10).assign(review=None)
    window.loc[0:3, "decision"] = "referred"
    window.loc[0:1, "review"] = "approve"
    window.loc[2:3, "review"] = "decline"
    contested = window.index[window["decision"] == "decline"][:3]
    window.loc[contested, "review"] = ["approve", "approve", "decline"]  # two overturned, one upheld
    found = report(window, ref, favourable="good", limits=Limits())
    assert found["reviews"] == {
        "resolved": 7,
        "referred_approved": 2,
        "referred_declined": 2,
        "contested_overturned": 2,
    }
    total = sum(g["reviews"]["resolved"] for g in found["groups"] if g["group"].startswith("sex="))
    assert total == 7


@pytest.mark.parametrize("name", SHIPPED)
def test_an_approval_is_an_error_unless_the_outcome_is_the_use_cases_favourable_value(model, ref, name):
    window = _served(model, 3_000, seed=11, name=name)
    window.loc[window.index % 7 == 0, "outcome"] = None  # some outcomes have not arrived
    good, _ = outcomes(name)
    found = report(window, ref, limits=Limits(min_group_size=50), favourable=good)
    approved = window["decision"] == "approve"
    known = window["outcome"].notna()
    for row in found["groups"]:
        attribute, _, value = row["group"].partition("=")
        member = (window[attribute].astype(str) == value) & known
        wrong = approved[member] != (window.loc[member, LABEL] == 1)  # independently: from the 0/1 label
        assert row["with_outcome"] == member.sum()
        assert row["error_rate"] == pytest.approx(wrong.mean())
    assert found["outcomes"] == known.sum()
    # another use case's favourable word is never this one's: every approval would count as an error
    other = report(window, ref, limits=Limits(min_group_size=50), favourable=f"not {good}")
    men = next(g for g in other["groups"] if g["group"] == "sex=male")
    member = (window["sex"] == "male") & known
    assert men["error_rate"] == pytest.approx(approved[member].mean())


def test_a_window_exported_to_parquet_is_judged_on_the_frames_figures(model, ref, tmp_path, monkeypatch):
    """Read in chunks of about a thousand rows from three files: every figure equals the frame's (without SHAP)."""
    from tasks.monitor import stream
    from tasks.monitor.window import parquet_report

    window = everything_window(model)
    folder = tmp_path / "window"
    folder.mkdir()
    for i, part in enumerate(np.array_split(np.arange(len(window)), 3)):
        window.iloc[part].to_parquet(folder / f"part-{i}.parquet")
    monkeypatch.setattr(stream, "BATCH_BYTES", 8 * 1_100 * 20)  # 1,100 rows of 20 columns, 1,024 of more
    limits = Limits(max_p95_latency_ms=100.0)
    expected = report(window, ref, limits=limits, favourable="good")
    found = parquet_report(str(folder), ref, limits=limits, favourable="good")
    assert found == expected
    assert any(b.startswith("input drift") for b in found["breaches"]) and found["errors"] == 60
    assert found["reviews"]["resolved"] >= 13 and found["latency"]["p95_ms"] > 100.0


def test_a_parquet_window_without_decisions_is_refused_by_name(model, ref, tmp_path):
    from tasks.monitor.window import parquet_report

    path = tmp_path / "window.parquet"
    _served(model, 200, seed=13).drop(columns="decision").to_parquet(path)
    with pytest.raises(ValueError) as caught:
        parquet_report(str(path), ref, limits=Limits(), favourable="good")
    assert str(caught.value) == (
        "the window lacks the column 'decision' of the prediction log (`steward monitor --export` writes it)"
    )

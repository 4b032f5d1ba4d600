"""Input drift: statistics checked against direct computations, drift found on a drifted synthetic window and
not on a same-distribution one, and the false-alarm rate measured over repeated windows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from tasks.monitor.drift import Thresholds, column_drift, drift, psi
from tasks.monitor.sketch import reference
from usecases.german_credit.generator import generate_applications

NUMERIC = ["duration_months", "credit_amount", "age", "installment_rate"]
CATEGORICAL = ["checking_status", "purpose", "savings", "housing"]
COLUMNS = NUMERIC + CATEGORICAL


@pytest.fixture(scope="module")
def ref():
    return reference(generate_applications(50_000, seed=1), COLUMNS)


def test_psi_matches_its_definition():
    e, a = np.array([0.2, 0.3, 0.5]), np.array([0.1, 0.4, 0.5])
    assert psi(e, a) == pytest.approx((0.1 - 0.2) * np.log(0.1 / 0.2) + (0.4 - 0.3) * np.log(0.4 / 0.3))


def test_statistics_match_scipy_on_the_same_inputs(ref):
    window = generate_applications(5_000, seed=2, drift=0.5)
    found = {d.column: d for d in drift(window, ref, thresholds=Thresholds())}
    ks = stats.ks_2samp(generate_applications(50_000, seed=1)["age"].to_numpy(float), window["age"].to_numpy(float))
    assert found["age"].statistics["ks"] == ks.statistic  # every training age is on the grid: exact
    shares = window["purpose"].value_counts(normalize=True)
    expected = ref["purpose"]["shares"]
    js = jensenshannon([expected[k] for k in expected] + [0.0], [shares.get(k, 0.0) for k in expected] + [0.0], base=2)
    assert found["purpose"].statistics["js"] == pytest.approx(js)


def test_a_drifted_window_drifts_and_a_same_distribution_one_does_not(ref):
    window = generate_applications(5_000, seed=3, drift=1.0)
    found = {d.column for d in drift(window, ref, thresholds=Thresholds()) if d.drifted}
    same = [d for d in drift(generate_applications(5_000, seed=4), ref, thresholds=Thresholds()) if d.drifted]
    # the generator's drift moves durations, amounts, ages and the checking/purpose/savings mix
    assert {"duration_months", "credit_amount", "checking_status", "purpose", "savings"} <= found
    assert "housing" not in found and "installment_rate" not in found
    assert same == []


def test_false_alarm_rate_over_repeated_same_distribution_windows(ref):
    """200 windows of 2,000 rows from the reference distribution, 8 columns each: no column may drift in more
    than 1% of windows (the thresholds are effect sizes, so the rate falls as windows grow)."""
    alarms = np.zeros(len(COLUMNS))
    windows = 200
    for seed in range(windows):
        found = drift(generate_applications(2_000, seed=1000 + seed), ref, thresholds=Thresholds())
        alarms += [d.drifted for d in found]
    assert (alarms / windows).max() <= 0.01, dict(zip(COLUMNS, alarms, strict=True))


def test_unseen_categories_count_as_drift_and_are_named(ref):
    window = generate_applications(2_000, seed=5)
    window.loc[:599, "housing"] = "houseboat"
    found = {d.column: d for d in drift(window, ref, thresholds=Thresholds())}
    assert found["housing"].drifted and found["housing"].unseen == {"houseboat": 600}


def test_a_window_missing_a_column_is_refused_by_name(ref):
    with pytest.raises(ValueError, match="'purpose'"):
        drift(generate_applications(100, seed=6).drop(columns="purpose"), ref, thresholds=Thresholds())


def test_the_reference_is_plain_json(ref):
    import json

    assert json.loads(json.dumps(ref)) == ref
    assert pd.Series(ref["age"]["grid"]).is_monotonic_increasing


# Small hand-made columns: bins, shares and statistics worked out in the test.


def _bins(edges, values) -> np.ndarray:
    """Bin of each value: how many edges are at or below it (a value on an edge belongs to the bin above)."""
    return (np.asarray(edges)[None, :] <= np.asarray(values, dtype=float)[:, None]).sum(axis=1)


def _psi_by_hand(expected, actual, floor=1e-4) -> float:
    e, a = np.maximum(expected, floor), np.maximum(actual, floor)
    return float(sum((ai - ei) * np.log(ai / ei) for ai, ei in zip(a, e, strict=True)))


# 101 sorted values 0..10 where the 10 %..90 % quantiles (positions 10, 20, ..., 90) fall inside plateaus, so the
# deciles are exactly 1..9: 0 five times, 1..9 ten times each, 10 six times.
DECILES = np.floor(np.arange(101) / 10 + 0.5)
DECILE_SHARES = np.array([5] + [10] * 8 + [16]) / 101  # 9 and 10 share the top bin: a value on an edge goes up


def test_reference_of_a_numeric_column_holds_deciles_shares_and_every_distinct_value():
    frame = pd.DataFrame({"x": np.append(DECILES[::-1], np.nan)})
    ref = reference(frame, ["x"])["x"]
    assert ref["kind"] == "numeric"
    assert ref["edges"] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    assert ref["shares"] == pytest.approx(DECILE_SHARES.tolist())
    assert ref["grid"] == [float(v) for v in range(11)]
    assert ref["at_or_below"] == np.cumsum([5] + [10] * 9 + [6]).tolist()
    assert ref["n"] == 101


def test_reference_edges_are_distinct_when_values_tie():
    ref = reference(pd.DataFrame({"x": [0.0] * 50 + [1.0] * 50}), ["x"])["x"]
    assert ref["edges"] == pytest.approx([0.0, 0.5, 1.0])
    assert ref["shares"] == pytest.approx([0.0, 0.5, 0.0, 0.5])


def test_reference_of_an_integer_column_is_held_as_floats():
    ref = reference(pd.DataFrame({"x": np.arange(11)}), ["x"])["x"]
    assert ref["grid"] == [float(v) for v in range(11)]
    assert {type(v) for v in ref["grid"] + ref["edges"] + ref["shares"]} == {float}


def test_reference_of_a_categorical_or_boolean_column_holds_its_shares():
    frame = pd.DataFrame({"c": ["a", "b", "a", None, "a", "c"], "flag": [True, False, True, True, True, False]})
    assert frame["flag"].dtype == bool
    ref = reference(frame, ["c", "flag"])
    assert ref["c"] == {"kind": "categorical", "shares": {"a": 0.6, "b": 0.2, "c": 0.2}, "n": 5}
    assert ref["flag"]["kind"] == "categorical"
    assert ref["flag"]["shares"] == pytest.approx({"True": 4 / 6, "False": 2 / 6})
    assert ref["flag"]["n"] == 6


def test_psi_floors_empty_bins():
    expected, actual = np.array([0.5, 0.5, 0.0]), np.array([0.5, 0.4, 0.1])
    by_hand = (0.4 - 0.5) * np.log(0.4 / 0.5) + (0.1 - 1e-4) * np.log(0.1 / 1e-4)
    assert psi(expected, actual) == pytest.approx(by_hand)
    assert psi(actual, expected) == pytest.approx(by_hand)


def test_numeric_column_statistics_worked_by_hand():
    ref = reference(pd.DataFrame({"x": DECILES}), ["x"])["x"]
    window = pd.Series([0.5, 1.0, 1.0, 2.0, 9.5, 10.0, 10.0, np.nan, 3.0])
    got = column_drift(ref, window, column="x", thresholds=Thresholds())
    values = window.dropna().to_numpy()
    actual = np.bincount(_bins(range(1, 10), values), minlength=10) / len(values)
    ks = stats.ks_2samp(DECILES, values, method="asymp")
    assert (got.column, got.kind, got.n, got.unseen) == ("x", "numeric", 8, {})
    assert got.statistics["psi"] == pytest.approx(_psi_by_hand(DECILE_SHARES, actual))
    assert got.statistics["ks"] == pytest.approx(ks.statistic)
    assert got.p_value == pytest.approx(ks.pvalue, rel=1e-6, abs=0)
    assert got.drifted


def test_a_window_in_the_lowest_bin_only_still_has_every_bin():
    ref = reference(pd.DataFrame({"x": DECILES}), ["x"])["x"]
    got = column_drift(ref, pd.Series([0.0, 0.2, 0.9]), column="x", thresholds=Thresholds())
    assert got.statistics["psi"] == pytest.approx(_psi_by_hand(DECILE_SHARES, np.array([1.0] + [0.0] * 9)))


def _numeric_case():
    """A reference of 0..99 and a window shifted up by 8: PSI about 0.16 and KS 0.08 exactly (8 of 100)."""
    ref = reference(pd.DataFrame({"x": np.arange(100.0)}), ["x"])["x"]
    window = pd.Series(np.arange(100.0) + 8)
    edges = np.quantile(np.arange(100.0), np.arange(1, 10) / 10)
    actual = np.bincount(_bins(edges, window), minlength=10) / 100
    return ref, window, _psi_by_hand(np.full(10, 0.1), actual), 0.08


@pytest.mark.parametrize(
    ("which", "drifted"),
    [("psi alone", True), ("ks alone", True), ("neither", False), ("both", True)],
)
def test_either_statistic_alone_flags_a_numeric_column(which, drifted):
    ref, window, index, ks = _numeric_case()
    psi_limit = index * 0.9 if which in ("psi alone", "both") else index * 1.1
    ks_limit = ks * 0.9 if which in ("ks alone", "both") else ks * 1.1
    got = column_drift(ref, window, column="x", thresholds=Thresholds(psi=psi_limit, ks=ks_limit, js=0.0))
    assert got.statistics["psi"] == pytest.approx(index)
    assert got.statistics["ks"] == pytest.approx(ks)
    assert got.drifted is drifted


def test_a_statistic_equal_to_its_threshold_is_no_drift():
    """A window equal to the reference has PSI, KS and JS of exactly 0: at thresholds of 0 nothing drifts."""
    frame = pd.DataFrame({"x": np.arange(40.0), "c": ["a", "b", "b", "c"] * 10})
    ref = reference(frame, ["x", "c"])
    found = drift(frame, ref, thresholds=Thresholds(psi=0.0, ks=0.0, js=0.0))
    assert [(d.column, d.drifted) for d in found] == [("x", False), ("c", False)]
    assert [d.statistics["psi"] for d in found[:1]] == [0.0]
    assert found[0].statistics["ks"] == 0.0 and found[1].statistics["js"] == 0.0


def test_categorical_column_statistics_worked_by_hand():
    ref = reference(pd.DataFrame({"c": ["a"] * 50 + ["b"] * 30 + ["c"] * 20}), ["c"])["c"]
    window = pd.Series(["a"] * 20 + ["b"] * 20 + ["z"] * 8 + ["y"] * 2 + [None] * 3)
    got = column_drift(ref, window, column="c", thresholds=Thresholds(js=0.1))
    observed = np.array([20, 20, 0, 10])  # a, b, c, and the unseen z and y together
    expected = np.array([0.5, 0.3, 0.2, 0.0])
    floored = np.array([0.5, 0.3, 0.2, 1e-4])
    counts = floored / floored.sum() * 50
    chi2 = float(((observed - counts) ** 2 / counts).sum())
    assert (got.column, got.kind, got.n) == ("c", "categorical", 50)
    assert got.unseen == {"z": 8, "y": 2}
    assert got.statistics["js"] == pytest.approx(jensenshannon(expected, observed / 50, base=2))
    assert got.statistics["chi2"] == pytest.approx(chi2)
    assert got.p_value == pytest.approx(stats.chi2.sf(chi2, df=3), rel=1e-6, abs=0)
    assert got.drifted


@pytest.mark.parametrize(("js_limit", "drifted"), [(0.005, True), (0.05, False)])
def test_categorical_drift_is_decided_by_the_js_distance_not_the_p_value(js_limit, drifted):
    """A 1 % shift in 200,000 rows: chi-square calls it significant, the JS distance is small."""
    ref = reference(pd.DataFrame({"c": ["a"] * 500 + ["b"] * 500}), ["c"])["c"]
    window = pd.Series(np.array(["a"] * 102_000 + ["b"] * 98_000))
    got = column_drift(ref, window, column="c", thresholds=Thresholds(js=js_limit))
    js = jensenshannon([0.5, 0.5], [0.51, 0.49], base=2)
    assert got.statistics["js"] == pytest.approx(js) and 0.005 < js < 0.05
    counts = np.array([0.5, 0.5, 1e-4]) / 1.0001 * 200_000  # the unseen bucket's expectation is floored
    chi2 = float(((np.array([102_000, 98_000, 0]) - counts) ** 2 / counts).sum())
    assert got.statistics["chi2"] == pytest.approx(chi2)
    assert got.p_value == pytest.approx(stats.chi2.sf(chi2, df=2), rel=1e-6, abs=0) and got.p_value < 1e-10
    assert got.drifted is drifted


def test_an_empty_window_is_refused():
    ref = reference(pd.DataFrame({"x": np.arange(5.0)}), ["x"])
    with pytest.raises(ValueError) as caught:
        drift(pd.DataFrame({"x": [np.nan, np.nan]}), ref, thresholds=Thresholds())
    assert str(caught.value) == "an empty window has no distribution to compare"


def test_an_unknown_reference_kind_is_refused_by_name():
    with pytest.raises(ValueError) as caught:
        column_drift({"kind": "text"}, pd.Series(["a"]), column="note", thresholds=Thresholds())
    assert str(caught.value) == "column 'note': unknown reference kind 'text'"


def test_the_first_missing_column_is_named_and_columns_come_in_reference_order():
    frame = pd.DataFrame({"b": ["u", "v"] * 20, "a": np.arange(40.0), "c": ["x"] * 40})
    ref = reference(frame, ["c", "a", "b"])
    with pytest.raises(ValueError) as caught:
        drift(frame.drop(columns=["a", "b"]), ref, thresholds=Thresholds())
    assert str(caught.value) == "the window lacks the column 'a' the reference describes"
    assert [d.column for d in drift(frame, ref, thresholds=Thresholds())] == ["c", "a", "b"]


def test_numbers_held_as_text_in_the_window_are_read_as_numbers():
    ref = reference(pd.DataFrame({"x": DECILES}), ["x"])["x"]
    as_text = column_drift(ref, pd.Series(["0.5", "2", "9.5", None], dtype=object), column="x", thresholds=Thresholds())
    as_numbers = column_drift(ref, pd.Series([0.5, 2.0, 9.5]), column="x", thresholds=Thresholds())
    assert as_text == as_numbers

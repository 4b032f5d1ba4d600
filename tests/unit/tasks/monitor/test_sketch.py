"""Drift from sketches: the figures equal the ones computed on the whole columns (scipy's ks_2samp against every
training value, or against the old reference's sample, which the monitor used before), within the stated bound
where the grid is of order statistics, and a window split into chunks adds up to the very same counts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tasks.monitor.drift import Thresholds, drift, drift_of_counts
from tasks.monitor.sketch import GRID, ColumnCounts, count, counts, curve, describe, merge, reference
from tests.unit.tasks.monitor.sampled import sampled_reference, sampled_statistics
from usecases.german_credit.generator import generate_applications

PROJECT = Path(__file__).resolve().parents[4]
GERMAN = ["duration_months", "credit_amount", "age", "installment_rate", "checking_status", "purpose", "housing"]
ADULT = ["age", "fnlwgt", "education_num", "capital_gain", "hours_per_week", "workclass", "occupation", "race"]


def _german() -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    return generate_applications(30_000, seed=1), generate_applications(8_000, seed=2, drift=0.5), GERMAN


def _adult() -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """The census split in two: the reference, and a window of the older half of the other rows (drifted)."""
    people = pd.read_csv(PROJECT / "data/adult_income.csv.gz")
    shuffled = people.sample(frac=1.0, random_state=0)
    half = len(shuffled) // 2
    window = shuffled.iloc[half:]
    return shuffled.iloc[:half], window[window["age"] >= window["age"].median()], ADULT


CASES = {"german_credit": _german, "adult_income": _adult}


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    return CASES[request.param]()


def test_every_figure_equals_the_sample_based_monitor_on_an_old_reference(case):
    """A reference made before the grid (a 20,000-value sample) reads into the sketch and gives exactly what
    the monitor computed from it before: the same floats, not merely close ones."""
    train, window, columns = case
    old = sampled_reference(train, columns, seed=0)
    for found in drift(window, old, thresholds=Thresholds()):
        statistics, p_value = sampled_statistics(old[found.column], window[found.column])
        assert found.statistics == statistics, found.column
        assert found.p_value == p_value, found.column
        assert found.ks_error == 0.0


def test_ks_equals_scipy_against_every_training_value_or_lies_within_the_stated_bound(case):
    train, window, columns = case
    ref = reference(train, columns)
    exact_and_bounded = {True: 0, False: 0}
    for found in drift(window, ref, thresholds=Thresholds()):
        if found.kind != "numeric":
            continue
        full = stats.ks_2samp(train[found.column].to_numpy(float), window[found.column].to_numpy(float), method="asymp")
        exact_and_bounded[ref[found.column]["exact"]] += 1
        if ref[found.column]["exact"]:
            assert found.ks_error == 0.0
            assert found.statistics["ks"] == full.statistic, found.column
            assert found.p_value == full.pvalue, found.column
        else:
            assert 0.0 < found.ks_error <= 1 / (GRID - 1)
            assert found.statistics["ks"] <= full.statistic <= found.statistics["ks"] + found.ks_error, found.column
    assert exact_and_bounded[True] >= 3 and exact_and_bounded[False] >= 1  # both kinds of grid are exercised


def test_the_bound_holds_for_a_window_packed_between_two_grid_points():
    """The worst case for a grid of order statistics: every window value strictly inside one gap."""
    rng = np.random.default_rng(3)
    train = pd.Series(rng.normal(size=100_000))
    ref = describe(train)
    known = curve(ref)
    gap = int(np.argmax(known.below[1:] - known.at_or_below[:-1]))
    low, high = known.grid[gap], known.grid[gap + 1]
    inside = pd.Series(rng.uniform(low, high, 5_000))
    inside = inside[(inside > low) & (inside < high)]
    got = drift(pd.DataFrame({"x": inside}), {"x": ref}, thresholds=Thresholds())[0]
    exact = stats.ks_2samp(train.to_numpy(), inside.to_numpy()).statistic
    assert got.statistics["ks"] <= exact <= got.statistics["ks"] + got.ks_error
    assert got.ks_error == (known.below[1:] - known.at_or_below[:-1]).max() / 100_000


def test_a_numeric_reference_by_hand():
    ref = describe(pd.Series([3.0, 1.0, 2.0, 2.0, np.nan, 5.0]))
    assert ref["grid"] == [1.0, 2.0, 3.0, 5.0]
    assert ref["below"] == [0, 1, 3, 4]
    assert ref["at_or_below"] == [1, 3, 4, 5]
    assert ref["exact"] is True and ref["n"] == 5
    assert json.loads(json.dumps(ref)) == ref


def test_a_long_column_keeps_order_statistics_with_the_extremes():
    values = np.arange(20_005, dtype=float)[::-1]
    ref = describe(pd.Series(values))
    assert len(ref["grid"]) == GRID and ref["exact"] is False
    assert ref["grid"][0] == 0.0 and ref["grid"][-1] == 20_004.0 and ref["grid"] == sorted(ref["grid"])
    assert ref["below"] == [int(v) for v in ref["grid"]]  # value v has exactly v values below it
    assert ref["at_or_below"] == [int(v) + 1 for v in ref["grid"]]
    assert curve(ref).error <= 1 / (GRID - 1)


def test_counts_of_a_numeric_window_by_hand():
    ref = describe(pd.Series([1.0, 2.0, 3.0, 5.0] * 3))
    got = count(ref, pd.Series([0.5, 1.0, 1.5, 5.0, 7.0, np.nan, 2.0, 2.0]))
    # cells: below 1, at 1, (1,2), at 2, (2,3), at 3, (3,5), at 5, above 5
    assert got.cells.tolist() == [1, 1, 1, 2, 0, 0, 0, 1, 1]
    assert got.n == 7 and int(got.bins.sum()) == 7


@pytest.mark.parametrize("pieces", [2, 7, 31])
def test_a_window_split_anywhere_adds_up_to_the_same_counts_and_figures(case, pieces):
    train, window, columns = case
    ref = reference(train, columns)
    whole = counts(ref, window)
    cuts = np.sort(np.random.default_rng(pieces).choice(np.arange(1, len(window)), pieces - 1, replace=False))
    added: dict[str, ColumnCounts] = {}
    for part in np.split(np.arange(len(window)), cuts):
        added = merge(added, counts(ref, window.iloc[part]))
    for column in columns:
        assert added[column].n == whole[column].n
        if whole[column].cells is not None:
            assert np.array_equal(added[column].cells, whole[column].cells)
            assert np.array_equal(added[column].bins, whole[column].bins)
        else:
            assert added[column].labels == whole[column].labels
    assert drift_of_counts(added, ref, thresholds=Thresholds()) == drift(window, ref, thresholds=Thresholds())


def test_counts_against_different_references_are_refused():
    a = count(describe(pd.Series([1.0, 2.0])), pd.Series([1.0]))
    b = count(describe(pd.Series([1.0, 2.0, 3.0])), pd.Series([1.0]))
    c = count(describe(pd.Series(["x"])), pd.Series(["x"]))
    with pytest.raises(ValueError, match="different grids"):
        a + b
    with pytest.raises(ValueError, match="numeric and categorical"):
        a + c


def test_a_categorical_dtype_counts_only_the_values_it_holds():
    ref = describe(pd.Series(["a", "b"]))
    window = pd.Series(pd.Categorical(["a", "a"], categories=["a", "b", "zz"]))
    assert count(ref, window).labels == {"a": 2}

"""Input drift: statistics checked against direct computations, drift found on a drifted synthetic window and
not on a same-distribution one, and the false-alarm rate measured over repeated windows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from tasks.drift import Thresholds, drift, psi, reference
from tasks.synthetic import generate_applications

NUMERIC = ["duration_months", "credit_amount", "age", "installment_rate"]
CATEGORICAL = ["checking_status", "purpose", "savings", "housing"]
COLUMNS = NUMERIC + CATEGORICAL


@pytest.fixture(scope="module")
def ref():
    return reference(generate_applications(50_000, seed=1), COLUMNS, seed=0)


def test_psi_matches_its_definition():
    e, a = np.array([0.2, 0.3, 0.5]), np.array([0.1, 0.4, 0.5])
    assert psi(e, a) == pytest.approx((0.1 - 0.2) * np.log(0.1 / 0.2) + (0.4 - 0.3) * np.log(0.4 / 0.3))


def test_statistics_match_scipy_on_the_same_inputs(ref):
    window = generate_applications(5_000, seed=2, drift=0.5)
    found = {d.column: d for d in drift(window, ref, thresholds=Thresholds())}
    ks = stats.ks_2samp(ref["credit_amount"]["sample"], window["credit_amount"].to_numpy(dtype=float))
    assert found["credit_amount"].statistics["ks"] == pytest.approx(ks.statistic)
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
    assert pd.Series(ref["age"]["sample"]).is_monotonic_increasing

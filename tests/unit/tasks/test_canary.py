"""The canary analysis: SPRT arithmetic checked against scipy, the guards, and its error rates simulated."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tasks.canary import Design, analyse, boundaries, expected_sample_size, log_likelihood_ratio

ATTRIBUTES = ["sex", "age_group"]
GROUPS = {"sex": ["female", "male"], "age_group": ["under 25", "25 and over"]}


def _log(rng: np.random.Generator, n: int, *, weight: float, approve: float, young_factor: float = 1.0) -> pd.DataFrame:
    """n requests, a `weight` share to the canary; the canary approves the young at young_factor x the rate."""
    young = rng.random(n) < 0.3
    canary = rng.random(n) < weight
    rate = np.where(canary & young, approve * young_factor, approve)
    return pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "role": np.where(canary, "canary", "production"),
            "model": np.where(canary, "m:v2", "m:v1"),
            "decision": np.where(rng.random(n) < rate, "approve", "decline"),
            "latency_ms": rng.gamma(4, 5, n),
            "outcome": None,
            "sex": np.where(rng.random(n) < 0.35, "female", "male"),
            "age_group": np.where(young, "under 25", "25 and over"),
        }
    )


def _analyse(log: pd.DataFrame, design: Design):
    return analyse(log, candidate="m:v2", reference="m:v1", role="canary", attributes=ATTRIBUTES, design=design)


def test_log_likelihood_ratio_is_the_binomial_log_likelihood_difference():
    s, n, p0, p1 = 7, 20, 0.7, 0.35
    expected = stats.binom.logpmf(s, n, p1) - stats.binom.logpmf(s, n, p0)
    assert log_likelihood_ratio(s, n, p0, p1) == pytest.approx(expected)


def test_expected_sample_size_matches_the_worked_example():
    # p0 0.70, p1 0.35, alpha = beta = 0.05: KL(p1 || p0) 0.260, Wald's E1[N] about 10 decisions
    kl = 0.35 * math.log(0.35 / 0.70) + 0.65 * math.log(0.65 / 0.30)
    assert kl == pytest.approx(0.260, abs=1e-3)
    assert expected_sample_size(0.70, 0.35, alpha=0.05, beta=0.05) == pytest.approx(
        (0.95 * math.log(19) + 0.05 * math.log(0.05 / 0.95)) / kl
    )
    assert 9.5 < expected_sample_size(0.70, 0.35, alpha=0.05, beta=0.05) < 10.6


def test_bonferroni_splits_alpha_over_every_test_of_the_family():
    log = _log(np.random.default_rng(0), 2000, weight=0.5, approve=0.7)
    design = Design(metrics=("selection_rate", "tpr", "latency"))
    analysis = _analyse(log, design)
    k = 2 * 2 + 2 * 2 + 1  # 4 groups x 2 group metrics, plus latency
    assert len(analysis.tests) == k
    assert analysis.alpha_per_test == pytest.approx(0.05 / k)
    assert (analysis.upper, analysis.lower) == pytest.approx(boundaries(0.05 / k, 0.05))


def test_a_canary_that_halves_one_groups_approvals_is_a_breach_of_that_group_only():
    log = _log(np.random.default_rng(1), 4000, weight=0.2, approve=0.7, young_factor=0.5)
    analysis = _analyse(log, Design(metrics=("selection_rate",)))
    assert analysis.verdict == "breach"
    assert [t.group for t in analysis.breaches()] == ["age_group=under 25"]
    young = log[(log["role"] == "canary") & (log["age_group"] == "under 25")]
    breach = analysis.breaches()[0]
    assert breach.n == len(young)
    assert breach.candidate_rate == pytest.approx((young["decision"] == "approve").mean())


def test_a_canary_like_production_passes_once_every_group_has_enough_data():
    log = _log(np.random.default_rng(2), 4000, weight=0.3, approve=0.7)
    analysis = _analyse(log, Design(metrics=("selection_rate", "latency")))
    assert analysis.verdict == "pass", analysis.summary()


def test_too_few_observations_are_inconclusive_never_a_pass():
    log = _log(np.random.default_rng(3), 150, weight=0.1, approve=0.7)
    design = Design(metrics=("selection_rate",), min_samples=30)
    analysis = _analyse(log, design)
    assert analysis.verdict == "inconclusive"
    assert all(t.verdict == "pending" for t in analysis.tests if t.n < 30)


def test_production_with_too_few_observations_gives_no_verdict_at_all():
    log = _log(np.random.default_rng(4), 60, weight=0.5, approve=0.9, young_factor=0.0)
    analysis = _analyse(log, Design(metrics=("selection_rate",), min_samples=40))
    young = next(t for t in analysis.tests if t.group == "age_group=under 25")
    assert young.verdict == "pending" and "production has" in young.note


def test_outcome_tests_compare_true_positive_rates_per_group():
    rng = np.random.default_rng(5)
    log = _log(rng, 6000, weight=0.5, approve=0.7)
    log["outcome"] = np.where(rng.random(len(log)) < 0.7, "good", "bad")
    canary_good = (log["role"] == "canary") & (log["outcome"] == "good") & (log["sex"] == "female")
    log.loc[canary_good, "decision"] = np.where(rng.random(int(canary_good.sum())) < 0.3, "approve", "decline")
    analysis = _analyse(log, Design(metrics=("tpr",)))
    breached = {t.group for t in analysis.breaches()}
    # women are in both age groups, so their lower TPR shows there too; men's does not move
    assert "sex=female" in breached and "sex=male" not in breached


def test_unknown_metric_is_refused_by_name():
    with pytest.raises(ValueError, match="'accuracy'"):
        Design(metrics=("accuracy",))


def test_missing_log_columns_are_named():
    with pytest.raises(ValueError, match="latency_ms"):
        _analyse(pd.DataFrame(columns=["request_id", "role", "model", "decision", "outcome"]), Design())


def _first_breach(log: pd.DataFrame, design: Design, *, every: int) -> int | None:
    for end in range(every, len(log) + 1, every):
        if _analyse(log.iloc[:end], design).verdict == "breach":
            return end
    return None


def test_false_alarm_rate_stays_below_alpha_when_looking_again_and_again():
    """60 canaries identical to production, each looked at 40 times: the family-wise false-alarm rate is
    bounded by alpha = 0.05 (Bonferroni over the 4 group tests); 60 runs make 0.05 x 60 = 3 expected at most,
    so 8 or more false alarms would reject the bound at p < 0.01 (binomial)."""
    design = Design(metrics=("selection_rate",), min_samples=20)
    alarms = sum(
        _first_breach(_log(np.random.default_rng(100 + run), 2000, weight=0.2, approve=0.7), design, every=50)
        is not None
        for run in range(60)
    )
    assert stats.binom.sf(alarms - 1, 60, 0.05) > 0.01, f"{alarms} false alarms in 60 runs"


def test_a_halved_group_is_caught_in_most_runs():
    design = Design(metrics=("selection_rate",), min_samples=20)
    caught = sum(
        _first_breach(
            _log(np.random.default_rng(200 + run), 3000, weight=0.2, approve=0.7, young_factor=0.5),
            design,
            every=100,
        )
        is not None
        for run in range(30)
    )
    assert caught >= 27  # power 1 - beta = 0.95: 27 of 30 or more

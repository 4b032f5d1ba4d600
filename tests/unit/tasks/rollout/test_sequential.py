"""The e-processes behind the canary analysis: each checked against a direct computation from its definition, and
their guarantees (false alarms at most alpha, false passes at most beta) simulated, with rates that move over time."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special, stats

from tasks.rollout.sequential import (
    Effect,
    allocation_breach,
    allocation_pass,
    bernoulli_kl,
    breach_information,
    difference_interval,
    level_pass,
    paired_breach,
    paired_pass,
    pass_information,
    rate_interval,
    wald_expected_sample_size,
)

HALF = Effect("ratio", 0.5)
TPR_GAP = Effect("shift", -0.2)
FPR_GAP = Effect("shift", 0.2)


def _allocation_by_hand(sides, approvals, *, weight, effect):
    """The breach e-process by its definition: at each step production's rate p is the KT estimate of production's
    earlier observations; the joint table of (side, outcome) under the breach effect gives P(candidate | outcome)
    by Bayes; the factor is that over `weight` (candidate) or its complement over 1 - weight (production)."""
    log_e, s, n, out = 0.0, 0, 0, []
    for candidate, approved in zip(sides, approvals, strict=True):
        p = (s + 0.5) / (n + 1)
        h = float(effect.rate(p))
        joint = {
            (True, True): weight * h,
            (True, False): weight * (1 - h),
            (False, True): (1 - weight) * p,
            (False, False): (1 - weight) * (1 - p),
        }
        given = joint[(True, approved)] / (joint[(True, approved)] + joint[(False, approved)])
        log_e += math.log(given / weight) if candidate else math.log((1 - given) / (1 - weight))
        out.append(log_e)
        if not candidate:
            n, s = n + 1, s + approved
    return np.array(out)


@pytest.mark.parametrize("effect", [HALF, TPR_GAP, FPR_GAP, Effect("level", 0.25)])
@pytest.mark.parametrize("weight", [0.05, 0.3, 0.5])
def test_allocation_breach_is_its_definition_worked_step_by_step(effect, weight):
    rng = np.random.default_rng(1)
    sides, approvals = rng.random(300) < weight, rng.random(300) < 0.6
    got = allocation_breach(sides, approvals, weight=weight, effect=effect)
    assert got == pytest.approx(_allocation_by_hand(sides, approvals, weight=weight, effect=effect), rel=1e-9)


def test_observations_outside_the_member_mask_count_for_nothing():
    rng = np.random.default_rng(2)
    sides, approvals, member = rng.random(400) < 0.2, rng.random(400) < 0.7, rng.random(400) < 0.3
    masked = allocation_breach(sides, approvals, weight=0.2, effect=HALF, member=member)
    alone = allocation_breach(sides[member], approvals[member], weight=0.2, effect=HALF)
    assert masked[member] == pytest.approx(alone)
    assert masked[-1] == pytest.approx(alone[-1])


def test_runs_along_leading_axes_are_independent():
    rng = np.random.default_rng(3)
    sides, approvals = rng.random((3, 200)) < 0.2, rng.random((3, 200)) < 0.5
    together = allocation_breach(sides, approvals, weight=0.2, effect=HALF)
    for run in range(3):
        assert together[run] == pytest.approx(allocation_breach(sides[run], approvals[run], weight=0.2, effect=HALF))


def _moving_rates(rng, runs, steps, base):
    """Production's rate wanders over time (a campaign, the hour of day): the same for both sides."""
    t = np.arange(steps)
    return np.clip(base + 0.3 * np.sin(t / 150 + rng.random((runs, 1)) * 6), 0.02, 0.98)


@pytest.mark.parametrize("effect", [HALF, TPR_GAP, FPR_GAP])
@pytest.mark.parametrize(("weight", "base"), [(0.05, 0.5), (0.2, 0.1), (0.5, 0.9)])
def test_a_fair_canary_breaches_at_most_alpha_of_the_time_looked_at_after_every_request(effect, weight, base):
    """2,000 fair canaries over 2,000 requests each, production's rate moving: Ville's inequality bounds the
    share whose e-process ever reaches 1/alpha by alpha = 0.1; 2,000 runs would show 230 or more false alarms
    with probability below 0.1% if the rate were 0.1, so that many rejects the bound."""
    rng = np.random.default_rng(4)
    p = _moving_rates(rng, 2000, 2000, base)
    sides, approvals = rng.random(p.shape) < weight, rng.random(p.shape) < p
    alarms = int((allocation_breach(sides, approvals, weight=weight, effect=effect).max(axis=1) >= math.log(10)).sum())
    assert stats.binom.sf(alarms - 1, 2000, 0.1) > 1e-3, f"{alarms} false alarms in 2000 runs"


def test_a_canary_better_than_production_breaches_no_more_often():
    rng = np.random.default_rng(5)
    sides = rng.random((2000, 1500)) < 0.2
    approvals = rng.random(sides.shape) < np.where(sides, 0.8, 0.6)
    alarms = int((allocation_breach(sides, approvals, weight=0.2, effect=HALF).max(axis=1) >= math.log(10)).sum())
    assert alarms <= 10  # far below alpha = 0.1 of 2,000


@pytest.mark.parametrize(("effect", "p0"), [(HALF, 0.7), (TPR_GAP, 0.8)])
def test_a_canary_at_the_breach_effect_is_caught_near_the_planned_count(effect, p0):
    """Caught in every run, after a mean count of the canary's decisions within 15 % of the plan's
    ln(1/alpha) / (growth per member) x weight."""
    rng = np.random.default_rng(6)
    weight, alpha = 0.2, 0.05 / 19
    sides = rng.random((1000, 4000)) < weight
    approvals = rng.random(sides.shape) < np.where(sides, float(effect.rate(p0)), p0)
    crossed = allocation_breach(sides, approvals, weight=weight, effect=effect) >= math.log(1 / alpha)
    assert crossed.any(axis=1).all()
    at = np.cumsum(sides, axis=1)[np.arange(1000), crossed.argmax(axis=1)]
    planned = math.log(1 / alpha) / breach_information(p0, weight=weight, effect=effect) * weight
    assert at.mean() == pytest.approx(planned, rel=0.15)


def test_breach_information_is_the_mean_growth_per_member_with_production_known():
    """With production's rate learnt (a long stream), the e-process grows by the information per member."""
    rng = np.random.default_rng(7)
    weight, p0 = 0.3, 0.6
    sides = rng.random(400_000) < weight
    approvals = rng.random(sides.size) < np.where(sides, 0.3, p0)
    log_e = allocation_breach(sides, approvals, weight=weight, effect=HALF)
    growth = (log_e[-1] - log_e[99_999]) / 300_000
    assert growth == pytest.approx(breach_information(p0, weight=weight, effect=HALF), rel=0.03)


def test_the_pass_test_lets_a_breaching_canary_pass_at_most_beta_of_the_time():
    """The pass e-process's null is "at half production's rate or worse": 2,000 such canaries, rates moving."""
    rng = np.random.default_rng(8)
    p = _moving_rates(rng, 2000, 2000, 0.6)
    sides = rng.random(p.shape) < 0.2
    approvals = rng.random(p.shape) < np.where(sides, p * 0.5, p)
    passes = int((allocation_pass(sides, approvals, weight=0.2, effect=HALF).max(axis=1) >= math.log(10)).sum())
    assert stats.binom.sf(passes - 1, 2000, 0.1) > 1e-3, f"{passes} false passes"
    fair = rng.random(p.shape) < p
    assert (allocation_pass(sides, fair, weight=0.2, effect=HALF).max(axis=1) >= math.log(20)).mean() > 0.99


def test_the_pass_test_grows_by_its_information_per_member_for_a_fair_canary():
    rng = np.random.default_rng(9)
    sides = rng.random(1_000_000) < 0.2
    approvals = rng.random(sides.size) < 0.7
    growth = allocation_pass(sides, approvals, weight=0.2, effect=HALF)[-1] / sides.size
    assert growth == pytest.approx(pass_information(0.7, weight=0.2, effect=HALF), rel=0.03)  # its sd: 1 %


def test_a_pass_test_needs_a_ratio_effect():
    with pytest.raises(ValueError, match="ratio effect"):
        allocation_pass([True], [True], weight=0.2, effect=TPR_GAP)
    with pytest.raises(ValueError, match="ratio effect"):
        paired_pass([True], [True], effect=Effect("ratio", 1.0))


def test_the_level_test_is_its_definition_and_bounds_false_passes():
    slow = np.array([0, 1, 0, 0, 1, 0, 0, 0], dtype=bool)
    log_e, s, n, want = 0.0, 0, 0, []
    for x in slow:
        q = min((s + 0.5) / (n + 1), 0.25 * (1 - 1e-3))
        log_e += math.log(q / 0.25) if x else math.log((1 - q) / 0.75)
        want.append(log_e)
        s, n = s + x, n + 1
    assert level_pass(slow, level=0.25) == pytest.approx(want)
    rng = np.random.default_rng(10)
    at_level = rng.random((2000, 1000)) < 0.25
    passes = int((level_pass(at_level, level=0.25).max(axis=1) >= math.log(10)).sum())
    assert stats.binom.sf(passes - 1, 2000, 0.1) > 1e-3


def test_the_paired_sign_test_reads_only_disagreements_and_bounds_false_alarms():
    shadow = np.array([1, 0, 0, 1, 0, 1], dtype=bool)
    production = np.array([1, 1, 0, 0, 1, 1], dtype=bool)
    # disagreements: #2 (shadow declines, worse), #4 (shadow approves), #5 (worse)
    share_2, share_4, share_5 = 0.5, max((1 + 0.5) / 2, 0.5), max((1 + 0.5) / 3, 0.5)
    want = [0, math.log(2 * share_2), math.log(2 * share_2)]
    want += [want[-1] + math.log(2 * (1 - share_4))]
    want += [want[-1] + math.log(2 * share_5), want[-1] + math.log(2 * share_5)]
    assert paired_breach(shadow, production, worse="lower") == pytest.approx(want)
    rng = np.random.default_rng(11)
    p = _moving_rates(rng, 2000, 2000, 0.5)
    a, b = rng.random(p.shape) < p, rng.random(p.shape) < p
    alarms = int((paired_breach(a, b, worse="lower").max(axis=1) >= math.log(10)).sum())
    assert stats.binom.sf(alarms - 1, 2000, 0.1) > 1e-3


def test_the_paired_pass_bet_bounds_false_passes_and_passes_a_fair_shadow():
    rng = np.random.default_rng(12)
    production = rng.random((2000, 1500)) < 0.6
    halved = production & (rng.random(production.shape) < 0.5)  # approves half of production's approvals
    passes = int((paired_pass(halved, production, effect=HALF).max(axis=1) >= math.log(10)).sum())
    assert stats.binom.sf(passes - 1, 2000, 0.1) > 1e-3
    assert (paired_pass(production, production, effect=HALF).max(axis=1) >= math.log(20)).all()


@pytest.mark.parametrize(("s", "n"), [(0, 10), (7, 20), (30, 30), (412, 1000)])
def test_the_rate_interval_edges_are_where_the_mixture_ratio_reaches_one_over_alpha(s, n):
    low, high = rate_interval(s, n, alpha=0.05)
    log_mix = special.betaln(s + 0.5, n - s + 0.5) - special.betaln(0.5, 0.5)

    def ratio(p):
        return log_mix - stats.binom.logpmf(s, n, p) + math.log(special.comb(n, s))

    assert low <= s / n <= high
    for edge, outside in ((low, 0.0), (high, 1.0)):
        if edge != outside:
            assert ratio(edge) == pytest.approx(math.log(20), abs=1e-6)


def test_the_rate_interval_covers_a_steady_rate_at_every_n_at_once():
    rng = np.random.default_rng(13)
    misses = 0
    for _ in range(300):
        x = rng.random(300) < 0.3
        s = np.cumsum(x)
        looks = sorted({int(n) for n in np.geomspace(1, 300, 40)})  # many looks, early ones dense
        misses += any(not (lo <= 0.3 <= hi) for lo, hi in (rate_interval(s[n - 1], n, alpha=0.1) for n in looks))
    assert stats.binom.sf(misses - 1, 300, 0.1) > 1e-3


def test_the_difference_interval_spends_half_of_alpha_on_each_side():
    c = rate_interval(12, 40, alpha=0.025)
    r = rate_interval(60, 100, alpha=0.025)
    assert difference_interval((12, 40), (60, 100), alpha=0.05) == pytest.approx((c[0] - r[1], c[1] - r[0]))
    assert rate_interval(0, 0, alpha=0.05) == (0.0, 1.0)


def test_effects_keep_the_breach_rate_on_the_worse_side():
    p = np.array([0.1, 0.5, 0.9])
    assert HALF.rate(p) == pytest.approx([0.05, 0.25, 0.45])
    assert TPR_GAP.rate(p) == pytest.approx([0.025, 0.3, 0.7])  # 0.1 - 0.2 < 0: a quarter of the way instead
    assert FPR_GAP.rate(p) == pytest.approx([0.3, 0.7, 0.975])
    assert Effect("level", 0.25).rate(p) == pytest.approx([0.25, 0.5, 0.9])
    assert [e.worse for e in (HALF, TPR_GAP, FPR_GAP, Effect("level", 0.25))] == ["lower", "lower", "higher", "higher"]


def test_wald_expected_sample_size_matches_the_worked_example():
    # p0 0.70, p1 0.35, alpha = beta = 0.05: KL(p1 || p0) 0.260, Wald's E1[N] about 10 decisions
    kl = 0.35 * math.log(0.35 / 0.70) + 0.65 * math.log(0.65 / 0.30)
    assert bernoulli_kl(0.35, 0.70) == pytest.approx(kl) and kl == pytest.approx(0.260, abs=1e-3)
    assert wald_expected_sample_size(0.70, 0.35, alpha=0.05, beta=0.05) == pytest.approx(
        (0.95 * math.log(19) + 0.05 * math.log(0.05 / 0.95)) / kl
    )
    assert bernoulli_kl(0.0, 0.5) == pytest.approx(math.log(2)) and bernoulli_kl(1.0, 0.5) == pytest.approx(math.log(2))

"""The canary analysis: SPRT arithmetic checked against scipy, the guards, and its error rates simulated."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tasks.rollout.canary import Design, analyse, boundaries, expected_sample_size, log_likelihood_ratio
from tests.usecases import SHIPPED, usecase

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


def _labels(name: str = "german_credit") -> dict[str, str]:
    """The use case's favourable and unfavourable outcomes, as /feedback stores them (strings)."""
    label = usecase(name).label
    return {"favourable": str(label.favourable), "unfavourable": str(label.unfavourable)}


def _analyse(log: pd.DataFrame, design: Design, name: str = "german_credit"):
    return analyse(
        log, candidate="m:v2", reference="m:v1", role="canary", attributes=ATTRIBUTES, design=design, **_labels(name)
    )


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


@pytest.mark.parametrize("name", SHIPPED)
def test_outcome_tests_compare_true_positive_rates_per_group(name):
    good, bad = _labels(name).values()
    rng = np.random.default_rng(5)
    log = _log(rng, 6000, weight=0.5, approve=0.7)
    log["outcome"] = np.where(rng.random(len(log)) < 0.7, good, bad)
    canary_good = (log["role"] == "canary") & (log["outcome"] == good) & (log["sex"] == "female")
    log.loc[canary_good, "decision"] = np.where(rng.random(int(canary_good.sum())) < 0.3, "approve", "decline")
    analysis = _analyse(log, Design(metrics=("tpr",)), name)
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


# Hand-built logs: every count below is chosen, so each expected figure is worked out in the test.

BAD_METRIC_TEXT = "unknown canary metric 'accuracy'; one of: selection_rate, tpr, fpr, latency"
NO_TEST_TEXT = "no test to run: give at least one sensitive attribute or metric"
OTHER = {"sex": ("female", "male"), "age_group": ("under 25", "25 and over")}


def _rows(model: str, role: str, decisions: list[str], *, start: int = 0, **columns) -> pd.DataFrame:
    """One row per decision; `columns` are constants or lists of the same length."""
    n = len(decisions)
    frame = pd.DataFrame(
        {
            "request_id": [f"{model}-{role}-{start + i}" for i in range(n)],
            "role": role,
            "model": model,
            "decision": decisions,
            "latency_ms": 10.0,
            "outcome": None,
            "sex": "male",
            "age_group": "25 and over",
        },
        index=range(n),
    )
    for name, value in columns.items():
        frame[name] = value
    return frame


def _decisions(approved: int, n: int) -> list[str]:
    return ["approve"] * approved + ["decline"] * (n - approved)


def _group(attribute: str, value: str, n: int) -> dict[str, object]:
    """Rows of `attribute=value`, spread over both values of the other attribute."""
    other = next(a for a in OTHER if a != attribute)
    return {attribute: value, other: [OTHER[other][i % 2] for i in range(n)]}


def _by_hand(s_ref: int, n_ref: int, s: int, n: int, alternative) -> tuple[float, float, float]:
    """(p0, p1, LLR) as the module docstring defines them, with scipy's binomial for the LLR."""
    estimate = min(max((s_ref + 0.5) / (n_ref + 1), 0.001), 0.999)
    p1 = min(max(alternative(estimate), 0.001), 0.999)
    shift = min(1.645 * math.sqrt(estimate * (1 - estimate) / n_ref), abs(p1 - estimate) / 2)
    p0 = estimate + shift if p1 > estimate else estimate - shift
    return p0, p1, stats.binom.logpmf(s, n, p1) - stats.binom.logpmf(s, n, p0)


def _verdict(llr: float, n: int, *, k: int, alpha: float, beta: float, min_samples: int) -> str:
    if llr >= math.log((1 - beta) / (alpha / k)):
        return "breach"
    if llr <= math.log(beta / (1 - alpha / k)) and n >= min_samples:
        return "pass"
    return "pending"


def _outcome_log(attribute: str, name: str = "german_credit") -> pd.DataFrame:
    """The group `attribute`=first value: production 30/40 good and 6/30 bad approved, the canary 6/30 good and
    21/30 bad; the other group is approved throughout. Errors, another model and a shadow are noise."""
    value, rest = OTHER[attribute]
    good, bad = _labels(name).values()
    parts = [
        _rows("m:v1", "production", _decisions(30, 40), outcome=good, **_group(attribute, value, 40)),
        _rows("m:v1", "production", _decisions(6, 30), start=40, outcome=bad, **_group(attribute, value, 30)),
        _rows("m:v1", "production", ["approve"] * 60, start=70, outcome=good, **_group(attribute, rest, 60)),
        _rows("m:v2", "canary", _decisions(6, 30), outcome=good, **_group(attribute, value, 30)),
        _rows("m:v2", "canary", _decisions(21, 30), start=30, outcome=bad, **_group(attribute, value, 30)),
        _rows("m:v2", "canary", ["approve"] * 60, start=60, outcome=bad, **_group(attribute, rest, 60)),
        # never counted: the canary's errors, production's errors, another model, the candidate as a shadow
        _rows("m:v2", "canary", ["error"] * 25, start=500, outcome=good, **_group(attribute, value, 25)),
        _rows("m:v1", "production", ["error"] * 25, start=500, outcome=bad, **_group(attribute, value, 25)),
        _rows("m:v0", "production", ["decline"] * 50, start=600, outcome=good, **_group(attribute, value, 50)),
        _rows("m:v2", "shadow", ["decline"] * 50, start=700, outcome=good, **_group(attribute, value, 50)),
        _rows("m:v0", "canary", ["decline"] * 50, start=800, outcome=bad, **_group(attribute, value, 50)),
        _rows("m:v1", "shadow", ["decline"] * 50, start=900, outcome=good, **_group(attribute, value, 50)),
    ]
    return pd.concat(parts, ignore_index=True)


# metric -> (s_ref, n_ref, s, n) in the first group, and the breach hypothesis p1(p0) at ratio 0.6 / gap 0.15
HAND_COUNTS = {
    "selection_rate": ((30 + 6, 70, 6 + 21, 60), lambda p: p * 0.6),
    "tpr": ((30, 40, 6, 30), lambda p: p - 0.15),
    "fpr": ((6, 30, 21, 30), lambda p: p + 0.15),
}


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("attribute", ATTRIBUTES)
@pytest.mark.parametrize("metric", ["selection_rate", "tpr", "fpr"])
def test_each_group_test_is_the_sprt_worked_by_hand(metric, attribute, name):
    design = Design(metrics=(metric,), selection_ratio=0.6, rate_gap=0.15, min_samples=25, alpha=0.1, beta=0.2)
    analysis = _analyse(_outcome_log(attribute, name), design, name)
    assert (analysis.candidate, analysis.reference) == ("m:v2", "m:v1")
    assert analysis.n_candidate == 120 and analysis.n_reference == 130
    assert [t.group for t in analysis.tests] == [
        "age_group=25 and over",
        "age_group=under 25",
        "sex=female",
        "sex=male",
    ]
    assert analysis.alpha_per_test == pytest.approx(0.1 / 4)
    assert analysis.upper == pytest.approx(math.log(0.8 / 0.025))
    assert analysis.lower == pytest.approx(math.log(0.2 / 0.975))
    (s_ref, n_ref, s, n), alternative = HAND_COUNTS[metric]
    test = next(t for t in analysis.tests if t.group == f"{attribute}={OTHER[attribute][0]}")
    p0, p1, llr = _by_hand(s_ref, n_ref, s, n, alternative)
    assert (test.metric, test.n, test.successes, test.n_reference) == (metric, n, s, n_ref)
    assert test.reference_rate == pytest.approx(s_ref / n_ref)
    assert test.candidate_rate == pytest.approx(s / n)
    assert test.p0 == pytest.approx(p0, rel=1e-12)
    assert test.p1 == pytest.approx(p1, rel=1e-12)
    assert test.llr == pytest.approx(llr, rel=1e-9)
    assert test.verdict == _verdict(llr, n, k=4, alpha=0.1, beta=0.2, min_samples=25)


def test_the_hand_worked_example_has_both_verdicts():
    """The example above is not vacuous: the TPR and FPR of the first group breach, its selection rate passes."""
    for metric, verdict in [("selection_rate", "pass"), ("tpr", "breach"), ("fpr", "breach")]:
        (s_ref, n_ref, s, n), alternative = HAND_COUNTS[metric]
        llr = _by_hand(s_ref, n_ref, s, n, alternative)[2]
        assert _verdict(llr, n, k=4, alpha=0.1, beta=0.2, min_samples=25) == verdict, metric


def _two_group_log(attribute: str, *, reference: tuple[int, int], candidate: tuple[int, int], outcome=None):
    """The first group of `attribute` with (approved, n) on each side; its other group approves 70 % both sides."""
    value, rest = OTHER[attribute]
    return pd.concat(
        [
            _rows(
                "m:v1", "production", _decisions(*reference), outcome=outcome, **_group(attribute, value, reference[1])
            ),
            _rows(
                "m:v1", "production", _decisions(70, 100), start=1000, outcome=outcome, **_group(attribute, rest, 100)
            ),
            _rows("m:v2", "canary", _decisions(*candidate), outcome=outcome, **_group(attribute, value, candidate[1])),
            _rows("m:v2", "canary", _decisions(70, 100), start=1000, outcome=outcome, **_group(attribute, rest, 100)),
        ],
        ignore_index=True,
    )


@pytest.mark.parametrize("attribute", ATTRIBUTES)
@pytest.mark.parametrize(
    ("metric", "outcome", "canary_approves", "verdict"),
    [
        ("tpr", "favourable", 10, "breach"),  # TPR 80 % -> 10 %: lower is the breach
        ("tpr", "favourable", 80, "pass"),  # TPR 80 % -> 80 %
        ("tpr", "favourable", 100, "pass"),  # a higher TPR is no harm
        ("fpr", "unfavourable", 90, "breach"),  # FPR 20 % -> 90 %: higher is the breach
        ("fpr", "unfavourable", 20, "pass"),
        ("fpr", "unfavourable", 0, "pass"),  # a lower FPR is no harm
        ("selection_rate", None, 10, "breach"),  # approvals 80 % -> 10 %
        ("selection_rate", None, 100, "pass"),  # more approvals are not this test's breach
    ],
)
@pytest.mark.parametrize("name", SHIPPED)
def test_breach_direction_of_each_metric_in_every_attribute(attribute, metric, outcome, canary_approves, verdict, name):
    production = 80 if metric != "fpr" else 20
    outcome = _labels(name)[outcome] if outcome else None
    log = _two_group_log(attribute, reference=(production, 100), candidate=(canary_approves, 100), outcome=outcome)
    analysis = _analyse(log, Design(metrics=(metric,), min_samples=20), name)
    verdicts = {t.group: t.verdict for t in analysis.tests}
    value, rest = OTHER[attribute]
    assert verdicts[f"{attribute}={value}"] == verdict
    assert verdicts[f"{attribute}={rest}"] != "breach"
    assert analysis.verdict == ("breach" if verdict == "breach" else analysis.verdict)


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("attribute", ATTRIBUTES)
def test_outcome_tests_only_read_rows_with_that_outcome(attribute, name):
    """Approvals of the unfavourable outcomes do not enter the TPR, nor those of the favourable ones the FPR;
    an outcome that is neither of the use case's values (another use case's word) enters neither."""
    value, _ = OTHER[attribute]
    good, bad = _labels(name).values()
    foreign = "good" if good != "good" else ">50K"
    log = pd.concat(
        [
            _rows("m:v1", "production", _decisions(40, 50), outcome=good, **_group(attribute, value, 50)),
            _rows("m:v1", "production", _decisions(10, 50), start=50, outcome=bad, **_group(attribute, value, 50)),
            _rows("m:v1", "production", _decisions(5, 10), start=100, outcome=None, **_group(attribute, value, 10)),
            _rows("m:v2", "canary", _decisions(36, 40), outcome=good, **_group(attribute, value, 40)),
            _rows("m:v2", "canary", _decisions(3, 30), start=40, outcome=bad, **_group(attribute, value, 30)),
            _rows("m:v2", "canary", _decisions(0, 10), start=70, outcome=None, **_group(attribute, value, 10)),
            _rows("m:v2", "canary", _decisions(10, 10), start=80, outcome=foreign, **_group(attribute, value, 10)),
        ],
        ignore_index=True,
    )
    analysis = _analyse(log, Design(metrics=("tpr", "fpr", "selection_rate"), min_samples=20), name)
    found = {(t.metric, t.group): (t.successes, t.n, t.n_reference) for t in analysis.tests}
    group = f"{attribute}={value}"
    assert found[("tpr", group)] == (36, 40, 50)
    assert found[("fpr", group)] == (3, 30, 50)
    assert found[("selection_rate", group)] == (39 + 10, 90, 110)


@pytest.mark.parametrize("attribute", ATTRIBUTES)
def test_a_group_approved_far_less_breaches_in_every_attribute(attribute):
    value = OTHER[attribute][0]
    log = _two_group_log(attribute, reference=(60, 80), candidate=(6, 60))
    analysis = _analyse(log, Design(metrics=("selection_rate",)))
    assert analysis.verdict == "breach"
    assert [t.group for t in analysis.breaches()] == [f"{attribute}={value}"]


@pytest.mark.parametrize(("n_reference", "verdict"), [(29, "pending"), (30, "pass"), (31, "pass")])
def test_production_minimum_sample_guard_at_its_boundary(n_reference, verdict):
    log = _two_group_log("sex", reference=(n_reference - 6, n_reference), candidate=(160, 200))
    analysis = _analyse(log, Design(metrics=("selection_rate",), min_samples=30))
    test = next(t for t in analysis.tests if t.group == "sex=female")
    assert test.verdict == verdict
    if verdict == "pending":
        assert test.note == f"production has {n_reference} observation(s), fewer than 30"
        assert (test.p0, test.p1, test.llr) == (None, None, 0.0)
        assert test.reference_rate == pytest.approx((n_reference - 6) / n_reference)
        assert test.candidate_rate == pytest.approx(0.8)
    else:
        assert test.note == ""


@pytest.mark.parametrize(("n_candidate", "verdict"), [(29, "pending"), (30, "pass"), (31, "pass")])
def test_candidate_minimum_sample_guard_at_its_boundary(n_candidate, verdict):
    """The canary approves the group exactly as production (80 %): enough evidence of no breach at once, but a
    pass needs min_samples of the canary's decisions."""
    log = _two_group_log("sex", reference=(800, 1000), candidate=(n_candidate, n_candidate))
    design = Design(metrics=("selection_rate",), min_samples=30)
    analysis = _analyse(log, design)
    test = next(t for t in analysis.tests if t.group == "sex=female")
    llr = _by_hand(800, 1000, n_candidate, n_candidate, lambda p: p / 2)[2]
    assert llr < math.log(0.05 / (1 - 0.05 / 4))  # past the lower boundary already at 29
    assert test.verdict == verdict
    expected_note = f"{n_candidate} candidate observation(s), fewer than 30" if verdict == "pending" else ""
    assert test.note == expected_note


def test_a_breach_needs_no_minimum_candidate_sample():
    log = _two_group_log("age_group", reference=(90, 100), candidate=(0, 12))
    analysis = _analyse(log, Design(metrics=("selection_rate",), min_samples=30))
    test = next(t for t in analysis.tests if t.group == "age_group=under 25")
    llr = _by_hand(90, 100, 0, 12, lambda p: p / 2)[2]
    assert llr >= math.log(0.95 / (0.05 / 4))
    assert test.verdict == "breach" and test.n == 12 and test.note == ""


def test_llr_exactly_on_the_upper_boundary_is_a_breach():
    """alpha = 1 - beta puts both boundaries at 0, and a breach hypothesis equal to production's rate gives an
    LLR of exactly 0: Wald stops for H1 on LLR >= upper."""
    log = _two_group_log("sex", reference=(70, 100), candidate=(21, 30))
    design = Design(metrics=("selection_rate",), selection_ratio=1.0, alpha=0.5 * 4, beta=0.5, min_samples=1)
    analysis = _analyse(log, design)
    assert (analysis.upper, analysis.lower) == (0.0, 0.0)
    assert all(t.llr == 0.0 and t.verdict == "breach" for t in analysis.tests)
    # a group only production has served breaches too (LLR 0 of no decisions) and is described by its label
    log = pd.concat([log, _rows("m:v1", "production", _decisions(7, 10), start=5000, sex="other")])
    design = Design(metrics=("selection_rate",), selection_ratio=1.0, alpha=0.5 * 5, beta=0.5, min_samples=1)
    analysis = analyse(
        log, candidate="m:v2", reference="m:v1", role="canary", attributes=["sex"], design=design, **_labels()
    )
    assert analysis.summary() == (
        "breach: selection_rate[sex=female] 0.700 vs production 0.700 (n=30, LLR 0.00); "
        "selection_rate[sex=male] 0.700 vs production 0.700 (n=100, LLR 0.00); selection_rate[sex=other]"
    )


def test_boundaries_are_walds():
    assert boundaries(0.05, 0.05) == pytest.approx((math.log(19), -math.log(19)))
    assert boundaries(0.01, 0.2) == pytest.approx((math.log(80), math.log(0.2 / 0.99)))


def test_rates_are_kept_off_zero_and_one():
    """Production approving all 2000 puts its smoothed rate past 0.999; an FPR gap past 1 is cut to 0.999 too."""
    log = _two_group_log("sex", reference=(2000, 2000), candidate=(40, 40))
    test = next(t for t in _analyse(log, Design(metrics=("selection_rate",))).tests if t.group == "sex=female")
    p0, p1, _ = _by_hand(2000, 2000, 40, 40, lambda p: p / 2)
    assert p1 == pytest.approx(0.4995) and test.p1 == pytest.approx(p1, rel=1e-12)
    assert test.p0 == pytest.approx(p0, rel=1e-12)
    log = _two_group_log("sex", reference=(45, 50), candidate=(40, 40), outcome="bad")
    test = next(t for t in _analyse(log, Design(metrics=("fpr",), rate_gap=0.3)).tests if t.group == "sex=female")
    assert test.p1 == 0.999
    assert test.p0 == pytest.approx(_by_hand(45, 50, 40, 40, lambda p: p + 0.3)[0], rel=1e-12)
    # production approving none of 1000: its smoothed rate 0.5/1001 is raised to 0.001, and p1 = p0 / 2 too
    log = _two_group_log("sex", reference=(0, 1000), candidate=(0, 40))
    test = next(t for t in _analyse(log, Design(metrics=("selection_rate",))).tests if t.group == "sex=female")
    assert (test.p0, test.p1, test.llr) == (0.001, 0.001, 0.0)
    log = _two_group_log("sex", reference=(0, 50), candidate=(0, 40), outcome="good")
    test = next(t for t in _analyse(log, Design(metrics=("tpr",))).tests if t.group == "sex=female")
    assert test.p1 == 0.001
    assert test.p0 == pytest.approx(_by_hand(0, 50, 0, 40, lambda p: p - 0.2)[0], rel=1e-12)


def _latency_log(candidate_latencies: list[float]) -> pd.DataFrame:
    production = _rows("m:v1", "production", ["approve"] * 101, latency_ms=[float(v) for v in range(101)])
    canary = _rows("m:v2", "canary", ["approve"] * len(candidate_latencies), latency_ms=candidate_latencies)
    return pd.concat([production, canary], ignore_index=True)


def test_latency_counts_requests_slower_than_the_factor_times_production_p95():
    """Production's latencies 0..100 ms have p95 95 ms; at a factor of 2, slow is above 190 ms (not at it)."""
    latencies = [190.0] * 20 + [191.0] * 8 + [10.0] * 12
    design = Design(metrics=("latency",), latency_factor=2.0, slow_share=0.3, min_samples=20)
    analysis = analyse(
        _latency_log(latencies),
        candidate="m:v2",
        reference="m:v1",
        role="canary",
        attributes=[],
        design=design,
        **_labels(),
    )
    (test,) = analysis.tests
    assert (test.metric, test.group, test.n, test.successes, test.n_reference) == ("latency", "all", 40, 8, 101)
    assert test.reference_rate == 0.0
    p0, _, llr = _by_hand(0, 101, 8, 40, lambda _p: 0.3)
    assert (test.p0, test.p1) == (pytest.approx(p0, rel=1e-12), pytest.approx(0.3))
    assert test.llr == pytest.approx(llr, rel=1e-9)
    assert analysis.alpha_per_test == 0.05
    # at a factor of 1 the threshold is production's p95 itself, 95 ms: production's 96..100 are slow, 95 is not
    design = Design(metrics=("latency",), latency_factor=1.0, min_samples=20)
    analysis = analyse(
        _latency_log(latencies),
        candidate="m:v2",
        reference="m:v1",
        role="canary",
        attributes=[],
        design=design,
        **_labels(),
    )
    assert analysis.tests[0].reference_rate == pytest.approx(5 / 101)
    assert analysis.tests[0].successes == 40 - 12


def test_latency_with_no_production_requests_is_pending():
    log = _rows("m:v2", "canary", ["approve"] * 40, latency_ms=1e9)
    analysis = analyse(
        log, candidate="m:v2", reference="m:v1", role="canary", attributes=[], design=Design(), **_labels()
    )
    (test,) = analysis.tests
    assert test.verdict == "pending" and test.successes == 0 and analysis.verdict == "inconclusive"


def test_outcome_tests_waiting_do_not_hold_a_promotion():
    log = _two_group_log("sex", reference=(80, 100), candidate=(80, 100))
    analysis = _analyse(log, Design(metrics=("selection_rate", "tpr", "fpr")))
    assert {t.verdict for t in analysis.tests if t.metric == "selection_rate"} == {"pass"}
    assert {t.verdict for t in analysis.tests if t.metric != "selection_rate"} == {"pending"}
    assert analysis.verdict == "pass"
    assert analysis.summary() == "pass: 4 test(s) passed, none breached"
    assert analysis.as_dict()["summary"] == analysis.summary()
    assert analysis.as_dict()["verdict"] == "pass"


def test_outcome_tests_alone_never_promote():
    log = _two_group_log("sex", reference=(80, 100), candidate=(80, 100), outcome="good")
    analysis = _analyse(log, Design(metrics=("tpr",)))
    assert {t.verdict for t in analysis.tests} == {"pass"}
    assert analysis.verdict == "inconclusive"


def test_one_pending_blocking_test_keeps_the_analysis_inconclusive():
    log = pd.concat(
        [
            _two_group_log("sex", reference=(80, 100), candidate=(80, 100)),
            _rows("m:v1", "production", _decisions(40, 50), start=5000, sex="other"),
            _rows("m:v2", "canary", _decisions(4, 5), start=5000, sex="other"),
        ],
        ignore_index=True,
    )
    analysis = _analyse(log, Design(metrics=("selection_rate",)))
    assert [t.verdict for t in analysis.tests if t.group.startswith("sex=")] == ["pass", "pass", "pending"]
    assert analysis.verdict == "inconclusive"
    assert [t.group for t in analysis.pending()] == ["sex=other"]
    assert analysis.summary() == "inconclusive: 1 test(s) still need data (selection_rate[sex=other])"


def test_inconclusive_summary_names_at_most_four_waiting_tests():
    log = _two_group_log("sex", reference=(8, 10), candidate=(8, 10))
    analysis = _analyse(log, Design(metrics=("selection_rate", "tpr", "latency"), min_samples=500))
    assert analysis.verdict == "inconclusive"
    assert analysis.summary() == (
        "inconclusive: 5 test(s) still need data (selection_rate[age_group=25 and over], "
        "selection_rate[age_group=under 25], selection_rate[sex=female], selection_rate[sex=male])"
    )


def test_breach_summary_describes_each_breach():
    log = _two_group_log("sex", reference=(90, 100), candidate=(3, 40))
    design = Design(metrics=("selection_rate",))
    analysis = analyse(
        log, candidate="m:v2", reference="m:v1", role="canary", attributes=["sex"], design=design, **_labels()
    )
    llr = _by_hand(90, 100, 3, 40, lambda p: p / 2)[2]
    assert analysis.summary() == f"breach: selection_rate[sex=female] 0.075 vs production 0.900 (n=40, LLR {llr:.2f})"
    assert [t.group for t in analysis.breaches()] == ["sex=female"]
    assert analysis.pending() == []


def test_groups_come_from_both_sides_and_skip_missing_values_and_absent_attributes():
    log = pd.concat(
        [
            _rows("m:v1", "production", _decisions(40, 50), sex=None),
            _rows("m:v2", "canary", _decisions(40, 50), sex="female", start=100),
            _rows("m:v1", "production", _decisions(40, 50), sex="male", start=200),
        ],
        ignore_index=True,
    )
    design = Design(metrics=("selection_rate",))
    analysis = analyse(
        log, candidate="m:v2", reference="m:v1", role="canary", attributes=["sex", "region"], design=design, **_labels()
    )
    assert [t.group for t in analysis.tests] == ["sex=female", "sex=male"]
    assert [(t.n, t.n_reference) for t in analysis.tests] == [(50, 0), (0, 50)]
    assert [(t.candidate_rate, t.reference_rate) for t in analysis.tests] == [(0.8, None), (None, 0.8)]


def test_groups_of_a_numeric_attribute_are_matched_as_text():
    log = pd.concat(
        [
            _rows("m:v1", "production", _decisions(40, 50), band=1),
            _rows("m:v2", "canary", _decisions(4, 40), band=1, start=100),
            _rows("m:v1", "production", _decisions(40, 50), band=2, start=200),
            _rows("m:v2", "canary", _decisions(32, 40), band=2, start=300),
        ],
        ignore_index=True,
    )
    design = Design(metrics=("selection_rate",))
    analysis = analyse(
        log, candidate="m:v2", reference="m:v1", role="canary", attributes=["band"], design=design, **_labels()
    )
    assert [(t.group, t.successes, t.n, t.n_reference) for t in analysis.tests] == [
        ("band=1", 4, 40, 50),
        ("band=2", 32, 40, 50),
    ]
    assert [t.verdict for t in analysis.tests] == ["breach", "pass"]


def test_a_candidate_at_min_samples_without_enough_evidence_is_pending_without_a_note():
    log = _two_group_log("sex", reference=(80, 100), candidate=(17, 30))
    analysis = _analyse(log, Design(metrics=("selection_rate",), min_samples=30))
    test = next(t for t in analysis.tests if t.group == "sex=female")
    llr = _by_hand(80, 100, 17, 30, lambda p: p / 2)[2]
    assert math.log(0.05 / (1 - 0.05 / 4)) < llr < math.log(0.95 / (0.05 / 4))
    assert (test.n, test.verdict, test.note) == (30, "pending", "")


def test_no_test_to_run_is_refused():
    log = _two_group_log("sex", reference=(80, 100), candidate=(80, 100))
    with pytest.raises(ValueError) as caught:
        analyse(
            log,
            candidate="m:v2",
            reference="m:v1",
            role="canary",
            attributes=[],
            design=Design(metrics=("tpr",)),
            **_labels(),
        )
    assert str(caught.value) == NO_TEST_TEXT


def test_unknown_metric_message_lists_the_allowed_ones():
    with pytest.raises(ValueError) as caught:
        Design(metrics=("selection_rate", "accuracy"))
    assert str(caught.value) == BAD_METRIC_TEXT


def test_missing_log_columns_message_lists_them_sorted():
    with pytest.raises(ValueError) as caught:
        _analyse(pd.DataFrame(columns=["request_id", "model", "decision"]), Design())
    assert str(caught.value) == "the prediction log frame lacks the columns ['latency_ms', 'outcome', 'role']"


def test_shadow_agreement_is_the_share_of_paired_requests_with_productions_decision():
    production = _rows("m:v1", "production", _decisions(6, 10))
    shadow = _rows("m:v2", "shadow", _decisions(3, 8))
    shadow["request_id"] = production["request_id"][:8].to_numpy()  # mirrored requests keep their id
    # the same requests seen by other models or in other roles never pair
    others = [_rows("m:v3", "shadow", ["approve"] * 10), _rows("m:v2", "canary", ["approve"] * 10)]
    others += [_rows("m:v1", "shadow", ["approve"] * 10), _rows("m:v3", "production", ["approve"] * 10)]
    for other in others:
        other["request_id"] = production["request_id"].to_numpy()
    log = pd.concat([production, shadow, *others], ignore_index=True)
    analysis = analyse(
        log, candidate="m:v2", reference="m:v1", role="shadow", attributes=["sex"], design=Design(), **_labels()
    )
    # pairs 0-2 approve/approve, 3-5 decline/approve, 6-7 decline/decline
    assert analysis.agreement == pytest.approx(5 / 8)
    assert analysis.n_paired == 8
    assert analysis.n_candidate == 8


def test_agreement_is_only_for_shadows_and_needs_pairs():
    production = _rows("m:v1", "production", _decisions(6, 10))
    canary = _rows("m:v2", "canary", _decisions(3, 8))
    canary["request_id"] = production["request_id"][:8].to_numpy()
    log = pd.concat([production, canary], ignore_index=True)
    assert (_analyse(log, Design()).agreement, _analyse(log, Design()).n_paired) == (None, 0)
    # a canary that was a shadow earlier in the window: agreement is still a shadow's figure only
    earlier = _rows("m:v2", "shadow", _decisions(3, 8), start=50)
    earlier["request_id"] = production["request_id"][:8].to_numpy()
    with_shadow = _analyse(pd.concat([log, earlier], ignore_index=True), Design())
    assert (with_shadow.agreement, with_shadow.n_paired) == (None, 0)
    shadow = _rows("m:v2", "shadow", _decisions(3, 8), start=50)
    log = pd.concat([production, shadow], ignore_index=True)
    analysis = analyse(
        log, candidate="m:v2", reference="m:v1", role="shadow", attributes=["sex"], design=Design(), **_labels()
    )
    assert (analysis.agreement, analysis.n_paired) == (None, 0)


def test_latency_alone_decides_a_latency_only_analysis():
    fast = analyse(
        _latency_log([10.0] * 40),
        candidate="m:v2",
        reference="m:v1",
        role="canary",
        attributes=[],
        design=Design(metrics=("latency",), latency_factor=2.0, min_samples=20),
        **_labels(),
    )
    assert [t.verdict for t in fast.tests] == ["pass"] and fast.verdict == "pass"
    slow = analyse(
        _latency_log([10.0] * 20),
        candidate="m:v2",
        reference="m:v1",
        role="canary",
        attributes=[],
        design=Design(metrics=("latency",), latency_factor=2.0, min_samples=30),
        **_labels(),
    )
    assert [t.verdict for t in slow.tests] == ["pending"] and slow.verdict == "inconclusive"


def test_llr_exactly_on_the_lower_boundary_is_a_pass():
    """One fast request: the LLR is ln((1 - p1) / (1 - p0)). With alpha = 0.5 and beta = half that ratio the
    lower boundary ln(beta / (1 - alpha)) is that same number, and Wald stops for H0 on LLR <= lower."""
    log = _latency_log([10.0])
    first = analyse(
        log,
        candidate="m:v2",
        reference="m:v1",
        role="canary",
        attributes=[],
        design=Design(metrics=("latency",)),
        **_labels(),
    )
    ratio = (1 - first.tests[0].p1) / (1 - first.tests[0].p0)
    design = Design(metrics=("latency",), alpha=0.5, beta=ratio / 2, min_samples=1)
    analysis = analyse(
        log, candidate="m:v2", reference="m:v1", role="canary", attributes=[], design=design, **_labels()
    )
    (test,) = analysis.tests
    assert analysis.lower == math.log(ratio) == test.llr
    assert test.verdict == "pass"

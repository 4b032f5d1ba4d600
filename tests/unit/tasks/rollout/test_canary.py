"""The canary analysis over a prediction-log window: which observations each test reads, on which side, in what
order; its figures against the e-processes computed from those observations directly; verdicts and guards."""

from __future__ import annotations

import math
from itertools import count

import numpy as np
import pandas as pd
import pytest

from steward.routing import bucket
from tasks.rollout.canary import Design, analyse
from tasks.rollout.sequential import Effect, allocation_breach, allocation_pass, difference_interval
from tests.usecases import SHIPPED, usecase

WEIGHT = 0.3
ATTRIBUTES = ["sex", "age_group"]
_ids = count()


def _subject(canary: bool, weight: float = WEIGHT) -> str:
    """A fresh applicant id whose routing bucket puts it on `canary`'s side at `weight`."""
    while True:
        subject = f"s{next(_ids)}"
        if (bucket(subject) < weight) == canary:
            return subject


def _labels(name: str = "german_credit") -> dict[str, str]:
    label = usecase(name).label
    return {"favourable": str(label.favourable), "unfavourable": str(label.unfavourable)}


def _log(rng, n: int, *, weight: float = WEIGHT, approve: float = 0.7, young_factor: float = 1.0, outcome=None):
    """n requests in time order, routed by bucket; the canary approves the young at young_factor x the rate."""
    canary = rng.random(n) < weight
    young = rng.random(n) < 0.3
    rate = np.where(canary & young, approve * young_factor, approve)
    return pd.DataFrame(
        {
            "request_id": [f"r{i:06d}" for i in range(n)],
            "role": np.where(canary, "canary", "production"),
            "ts": [f"2026-01-01T00:{i // 6000:02d}:{(i // 100) % 60:02d}.{i % 100:06d}+00:00" for i in range(n)],
            "model": np.where(canary, "m:v2", "m:v1"),
            "subject_id": [_subject(bool(c), weight) for c in canary],
            "decision": np.where(rng.random(n) < rate, "approve", "decline"),
            "latency_ms": rng.gamma(4, 5, n),
            "outcome": outcome,
            "outcome_ts": None if outcome is None else "2026-02-01T00:00:00+00:00",
            "sex": np.where(rng.random(n) < 0.35, "female", "male"),
            "age_group": np.where(young, "under 25", "25 and over"),
        }
    )


def _analyse(log, design, *, name="german_credit", weight=WEIGHT, attributes=ATTRIBUTES, **kw):
    return analyse(
        log,
        candidate="m:v2",
        reference="m:v1",
        role="canary",
        attributes=attributes,
        design=design,
        weight=weight,
        **_labels(name),
        **kw,
    )


def test_each_test_is_the_allocation_e_process_of_its_groups_observations():
    """The figures of a test, recomputed from the frame by hand: the group's rows in time order, the side by
    bucket, the breach and pass e-processes, the interval of the two rates."""
    log = _log(np.random.default_rng(1), 3000, young_factor=0.5)
    design = Design(metrics=("selection_rate",))
    analysis = _analyse(log, design)
    assert [t.group for t in analysis.tests] == [
        "age_group=25 and over",
        "age_group=under 25",
        "sex=female",
        "sex=male",
    ]
    k = 4
    assert analysis.alpha_per_test == pytest.approx(0.05 / k) and analysis.threshold == pytest.approx(k / 0.05)
    test = next(t for t in analysis.tests if t.group == "age_group=under 25")
    young = log[log["age_group"] == "under 25"]
    sides = np.array([bucket(s) < WEIGHT for s in young["subject_id"]])
    approved = (young["decision"] == "approve").to_numpy()
    breach = allocation_breach(sides, approved, weight=WEIGHT, effect=Effect("ratio", 0.5))
    passing = allocation_pass(sides, approved, weight=WEIGHT, effect=Effect("ratio", 0.5))
    assert (test.n, test.successes) == (sides.sum(), approved[sides].sum())
    assert (test.n_reference, test.reference_successes) == ((~sides).sum(), approved[~sides].sum())
    assert test.e_value == pytest.approx(math.exp(breach[-1]), rel=1e-9)
    assert test.max_e_value == pytest.approx(math.exp(breach.max()), rel=1e-9)
    assert test.p_value == pytest.approx(1 / test.max_e_value, rel=1e-9)
    assert test.pass_e_value == pytest.approx(math.exp(max(passing.max(), 0)), rel=1e-9)
    interval = difference_interval(
        (test.successes, test.n), (test.reference_successes, test.n_reference), alpha=0.05 / k
    )
    assert test.interval == pytest.approx(interval)
    assert test.verdict == "breach" and analysis.verdict == "breach"
    assert [t.group for t in analysis.breaches()] == ["age_group=under 25"]
    assert analysis.summary() == (
        f"breach: selection_rate[age_group=under 25] {test.candidate_rate:.3f} vs production "
        f"{test.reference_rate:.3f} (n={test.n}, e-value {test.max_e_value:.3g} >= 80)"
    )


def test_a_canary_like_production_passes_once_every_group_has_enough_data():
    log = _log(np.random.default_rng(2), 5000)
    analysis = _analyse(log, Design(metrics=("selection_rate", "latency")), slow_ms=200.0)
    assert analysis.verdict == "pass", analysis.summary()
    assert analysis.summary() == "pass: 5 test(s) passed, none breached"
    assert all(t.interval[0] < 0 < t.interval[1] for t in analysis.tests if t.metric == "selection_rate")


def test_too_few_observations_are_inconclusive_never_a_pass():
    log = _log(np.random.default_rng(3), 150, weight=0.1)
    analysis = _analyse(log, Design(metrics=("selection_rate",), min_samples=30), weight=0.1)
    assert analysis.verdict == "inconclusive"
    for test in analysis.tests:
        assert test.verdict == "pending" and test.note == f"{test.n} candidate observation(s), fewer than 30"
    assert analysis.summary().startswith("inconclusive: 4 test(s) still need data (selection_rate[")


def test_the_side_is_the_routing_bucket_so_requests_decided_while_the_weight_moved_count_where_it_puts_them():
    """A request production decided for an applicant whose bucket is below the new weight (the service had not
    read it yet) is on the canary's side of the test: under the null its decision is the same coin."""
    rows = _log(np.random.default_rng(4), 400)
    late = rows.index[:20]
    rows.loc[late, "subject_id"] = [_subject(True) for _ in late]
    rows.loc[late, ["role", "model"]] = ["production", "m:v1"]
    test = _analyse(rows, Design(metrics=("selection_rate",))).tests[0]
    sides = np.array([bucket(s) < WEIGHT for s in rows[rows["age_group"] == test.group.split("=")[1]]["subject_id"]])
    assert test.n == sides.sum()


def test_an_applicant_is_counted_once_at_its_first_decision():
    rows = _log(np.random.default_rng(5), 300)
    again = rows.iloc[:50].assign(request_id=lambda f: f["request_id"] + "-again", ts="2027-01-01T00:00:00+00:00")
    once = _analyse(rows, Design(metrics=("selection_rate",)))
    twice = _analyse(pd.concat([rows, again], ignore_index=True), Design(metrics=("selection_rate",)))
    assert [(t.n, t.n_reference, t.e_value) for t in once.tests] == [
        (t.n, t.n_reference, t.e_value) for t in twice.tests
    ]


def test_errors_other_models_and_other_roles_are_never_read():
    rows = _log(np.random.default_rng(6), 600)
    noise = [
        rows.iloc[:40].assign(decision="error", request_id=lambda f: f["request_id"] + "e"),
        rows.iloc[:40].assign(model="m:v0", request_id=lambda f: f["request_id"] + "o"),
        rows.iloc[:40].assign(role="shadow", model="m:v2", request_id=lambda f: f["request_id"] + "s"),
    ]
    clean = _analyse(rows, Design(metrics=("selection_rate",)))
    noisy = _analyse(pd.concat([rows, *noise], ignore_index=True), Design(metrics=("selection_rate",)))
    assert clean.tests == noisy.tests
    assert (noisy.n_candidate, noisy.n_reference) == (clean.n_candidate, clean.n_reference)


@pytest.mark.parametrize("name", SHIPPED)
def test_outcome_tests_compare_true_positive_rates_per_group_in_the_order_outcomes_arrived(name):
    good, bad = _labels(name).values()
    rng = np.random.default_rng(7)
    log = _log(rng, 6000, weight=0.5, outcome=good)
    log.loc[rng.random(len(log)) < 0.3, "outcome"] = bad
    log["outcome_ts"] = [f"2026-03-01T00:00:{s:02d}+00:00" for s in rng.integers(0, 60, len(log))]
    women = (log["role"] == "canary") & (log["outcome"] == good) & (log["sex"] == "female")
    log.loc[women, "decision"] = np.where(rng.random(int(women.sum())) < 0.3, "approve", "decline")
    analysis = _analyse(log, Design(metrics=("tpr",)), name=name, weight=0.5)
    assert "sex=female" in {t.group for t in analysis.breaches()}
    assert "sex=male" not in {t.group for t in analysis.breaches()}
    female = next(t for t in analysis.tests if t.group == "sex=female")
    read = log[(log["outcome"] == good) & (log["sex"] == "female")].sort_values(["outcome_ts", "ts", "request_id"])
    sides = np.array([bucket(s) < 0.5 for s in read["subject_id"]])
    approved = (read["decision"] == "approve").to_numpy()
    breach = allocation_breach(sides, approved, weight=0.5, effect=Effect("shift", -0.2))
    assert female.e_value == pytest.approx(math.exp(breach[-1]), rel=1e-9)


@pytest.mark.parametrize(
    ("metric", "production", "candidate", "verdict"),
    [
        ("tpr", 0.8, 0.1, "breach"),
        ("tpr", 0.8, 0.8, "pass"),
        ("tpr", 0.8, 1.0, "pass"),  # a higher TPR is no harm
        ("fpr", 0.2, 0.9, "breach"),
        ("fpr", 0.2, 0.2, "pass"),
        ("fpr", 0.2, 0.0, "pass"),  # a lower FPR is no harm
        ("selection_rate", 0.8, 0.1, "breach"),
        ("selection_rate", 0.8, 1.0, "pass"),  # more approvals are not this test's breach
    ],
)
def test_breach_direction_of_each_metric(metric, production, candidate, verdict):
    rng = np.random.default_rng(8)
    good, bad = _labels().values()
    log = _log(rng, 8000, weight=0.5, outcome=good if metric != "fpr" else bad)
    canary = log["role"] == "canary"
    rate = np.where(canary, candidate, production)
    log["decision"] = np.where(rng.random(len(log)) < rate, "approve", "decline")
    log["sex"] = "female"
    analysis = _analyse(log, Design(metrics=(metric,)), weight=0.5, attributes=["sex"])
    assert analysis.tests[0].verdict == verdict


def test_outcome_tests_waiting_do_not_hold_a_promotion_and_alone_never_promote():
    log = _log(np.random.default_rng(9), 5000)
    analysis = _analyse(log, Design(metrics=("selection_rate", "tpr", "fpr")))
    assert {t.verdict for t in analysis.tests if t.metric == "selection_rate"} == {"pass"}
    assert {t.verdict for t in analysis.tests if t.metric != "selection_rate"} == {"pending"}
    assert analysis.verdict == "pass"
    good, _ = _labels().values()
    alone = _analyse(_log(np.random.default_rng(9), 5000, outcome=good), Design(metrics=("tpr",)))
    assert {t.verdict for t in alone.tests} == {"pass"} and alone.verdict == "inconclusive"


def test_latency_reads_the_threshold_fixed_before_the_step():
    rng = np.random.default_rng(10)
    log = _log(rng, 3000, weight=0.5)
    canary = log["role"] == "canary"
    log.loc[canary, "latency_ms"] = np.where(rng.random(int(canary.sum())) < 0.5, 500.0, 10.0)
    log.loc[~canary, "latency_ms"] = 10.0
    slow = _analyse(log, Design(metrics=("latency",)), weight=0.5, slow_ms=100.0, attributes=[])
    (test,) = slow.tests
    assert (test.metric, test.group, test.verdict) == ("latency", "all", "breach")
    assert test.successes == int((log[canary]["latency_ms"] > 100).sum()) and test.reference_successes == 0
    fast = _analyse(log.assign(latency_ms=10.0), Design(metrics=("latency",)), weight=0.5, slow_ms=100.0, attributes=[])
    assert fast.tests[0].verdict == "pass" and fast.tests[0].note == ""
    unplanned = _analyse(log.assign(latency_ms=10.0), Design(metrics=("latency",)), weight=0.5, attributes=[])
    assert unplanned.tests[0].note == "threshold from the step's own production latencies"


def test_a_shadow_is_tested_on_paired_decisions_and_judged_on_agreement():
    rng = np.random.default_rng(11)
    production = _log(rng, 2000, weight=0.0).assign(role="production", model="m:v1")
    shadow = production.assign(role="shadow", model="m:v2")
    young = shadow["age_group"] == "under 25"
    shadow.loc[young, "decision"] = "decline"  # the shadow declines every young applicant
    log = pd.concat([production, shadow], ignore_index=True)
    analysis = analyse(
        log,
        candidate="m:v2",
        reference="m:v1",
        role="shadow",
        attributes=ATTRIBUTES,
        design=Design(metrics=("selection_rate",)),
        **_labels(),
    )
    assert analysis.method == "paired" and analysis.weight is None
    # the sign test reads which side is worse where they disagree: both sexes hold young applicants, so they
    # breach too; the older applicants, decided alike, never do
    assert {t.group for t in analysis.breaches()} == {"age_group=under 25", "sex=female", "sex=male"}
    agree = (production["decision"].to_numpy() == shadow["decision"].to_numpy()).mean()
    assert analysis.agreement == pytest.approx(agree) and analysis.n_paired == 2000
    fair = pd.concat([production, production.assign(role="shadow", model="m:v2")], ignore_index=True)
    same = analyse(
        fair,
        candidate="m:v2",
        reference="m:v1",
        role="shadow",
        attributes=ATTRIBUTES,
        design=Design(metrics=("selection_rate",)),
        **_labels(),
    )
    assert same.verdict == "pass" and same.agreement == 1.0


def test_a_fair_canary_false_alarms_at_most_alpha_over_repeated_looks():
    """40 fair canaries, each looked at 20 times by the analysis itself: alpha = 0.05 makes 2 expected at most;
    7 or more would reject the bound at p < 0.01."""
    alarms = 0
    for run in range(40):
        log = _log(np.random.default_rng(100 + run), 2000, weight=0.2)
        alarms += any(
            _analyse(log.iloc[:end], Design(metrics=("selection_rate",)), weight=0.2).verdict == "breach"
            for end in range(100, 2001, 100)
        )
    assert alarms < 7


@pytest.mark.parametrize(
    ("setting", "value", "rule"),
    [
        ("alpha", 0.5, "in (0, 0.5)"),
        ("alpha", 0.0, "in (0, 0.5)"),
        ("beta", 0.7, "in (0, 0.5)"),
        ("selection_ratio", 1.0, "in (0, 1): 1 is no effect at all"),
        ("rate_gap", 0.0, "in (0, 1): 0 is no effect at all"),
        ("slow_share", 1.0, "in (0, 1)"),
        ("latency_factor", 0.5, "at least 1"),
        ("min_samples", 0, "at least 1"),
    ],
)
def test_a_design_that_cannot_control_its_error_rates_is_refused_naming_the_setting(setting, value, rule):
    with pytest.raises(ValueError) as caught:
        Design(**{setting: value})
    assert str(caught.value) == (
        f"rollout.analysis.{setting} must be {rule} (else the analysis cannot control its error rates), got {value!r}"
    )


def test_bad_input_is_refused_with_what_was_wrong():
    with pytest.raises(ValueError) as caught:
        Design(metrics=("selection_rate", "accuracy"))
    assert str(caught.value) == "unknown canary metric 'accuracy'; one of: selection_rate, tpr, fpr, latency"
    with pytest.raises(ValueError) as caught:
        _analyse(pd.DataFrame(columns=["request_id", "model", "decision"]), Design())
    assert str(caught.value) == (
        "the prediction log frame lacks the columns ['latency_ms', 'outcome', 'outcome_ts', 'role', 'subject_id', 'ts']"
    )
    log = _log(np.random.default_rng(12), 100)
    for weight in (None, 0.0, 1.0):
        with pytest.raises(ValueError, match=r"needs the canary's weight, a share in \(0, 1\); got"):
            _analyse(log, Design(), weight=weight)
    with pytest.raises(ValueError, match="no test to run"):
        _analyse(log, Design(metrics=("tpr",)), attributes=[])

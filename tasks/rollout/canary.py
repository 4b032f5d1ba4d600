"""Judging a canary (or a shadow) against production on the prediction log, with tests that stay valid when they
are looked at after every request and need neither side's rate known (the statistics: tasks/rollout/sequential.py).

Every check is a Bernoulli rate compared between the candidate's decisions and production's over the same period,
one test per (metric, group):

* ``selection_rate``: P(approve) in each group of each sensitive attribute. Breach hypothesis: the candidate
  approves the group at ``selection_ratio`` times production's rate.
* ``tpr`` / ``fpr``: P(approve | favourable outcome) and P(approve | unfavourable outcome) per group (the use
  case's label values), once outcomes have arrived through /feedback, in the order they arrived. Breach
  hypothesis: the candidate's TPR is ``rate_gap`` lower, or its FPR ``rate_gap`` higher, than production's.
* ``latency``: the share of requests slower than ``slow_ms`` (``latency_factor`` x production's p95 before the
  step, fixed for the step). Breach hypothesis: ``slow_share`` of the candidate's requests are slow.

A canary's observations are the applicants of both sides in the order they were decided, each applicant once (its
first decision: the routing is sticky, so a second request would repeat the first's side), on the candidate's side
when its routing bucket is below the canary `weight` (so the few requests decided while a new weight was reaching
the service count where the weight puts them, as the test's guarantee needs). A shadow's are the requests both
decided, paired.

Each test has a breach e-value (the largest so far) and a pass e-value. Bonferroni: a test breaches when its breach
e-value reaches k/alpha over the k tests of the family, so the chance of any false alarm in the step stays below
alpha however often it is looked at. A selection-rate or latency test passes when its pass e-value reaches 1/beta
and it has ``min_samples`` observations of the candidate: a candidate at the breach effect passes a test with
probability at most beta. Outcome tests pass when their interval rules the gap out; they breach like the others
but never hold a promotion while they wait (credit outcomes take months). Each test reports an always-valid
(1 - alpha/k) interval for the candidate's rate minus production's (each side's rate taken as steady in the step).

Until every selection-rate and latency test has passed the analysis is ``inconclusive``, which never promotes.
Errors are not judged here: the service takes a canary that raises out of routing at once.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd

from steward.personal import ERASED
from steward.routing import bucket
from tasks.rollout.sequential import (
    Effect,
    allocation_breach,
    allocation_pass,
    difference_interval,
    level_pass,
    paired_breach,
    paired_pass,
)

Verdict = Literal["breach", "pass", "pending"]
Overall = Literal["breach", "pass", "inconclusive"]
METRICS = ("selection_rate", "tpr", "fpr", "latency")
BLOCKING = ("selection_rate", "latency")  # a promotion waits for these to pass
EMPTY_FAMILY = "no test to run: give at least one sensitive attribute or metric"
BAD_METRIC = "unknown canary metric {metric!r}; one of: {allowed}"
BAD_SETTING = "rollout.analysis.{name} must be {rule} (else the analysis cannot control its error rates), got {value!r}"
BAD_WEIGHT = "a canary analysis needs the canary's weight, a share in (0, 1); got {weight!r}"
NEEDS_COLUMNS = "the prediction log frame lacks the columns {missing}"
NEEDED = ("request_id", "role", "ts", "model", "subject_id", "decision", "latency_ms", "outcome", "outcome_ts")


@dataclass(frozen=True)
class Design:
    """The hypotheses and error rates of the analysis (params.yaml `rollout.analysis`); a design that cannot control
    its error rates is refused, naming the setting."""

    alpha: float = 0.05
    beta: float = 0.05
    selection_ratio: float = 0.5
    rate_gap: float = 0.2
    latency_factor: float = 1.5
    slow_share: float = 0.25
    min_samples: int = 20
    metrics: tuple[str, ...] = METRICS

    def __post_init__(self) -> None:
        for metric in self.metrics:
            if metric not in METRICS:
                raise ValueError(BAD_METRIC.format(metric=metric, allowed=", ".join(METRICS)))
        rules = {
            "alpha": (0 < self.alpha < 0.5, "in (0, 0.5)"),
            "beta": (0 < self.beta < 0.5, "in (0, 0.5)"),
            "selection_ratio": (0 < self.selection_ratio < 1, "in (0, 1): 1 is no effect at all"),
            "rate_gap": (0 < self.rate_gap < 1, "in (0, 1): 0 is no effect at all"),
            "slow_share": (0 < self.slow_share < 1, "in (0, 1)"),
            "latency_factor": (self.latency_factor >= 1, "at least 1"),
            "min_samples": (self.min_samples >= 1, "at least 1"),
        }
        for name, (ok, rule) in rules.items():
            if not ok:
                raise ValueError(BAD_SETTING.format(name=name, rule=rule, value=getattr(self, name)))

    def effect(self, metric: str) -> Effect:
        """The breach hypothesis of `metric`'s tests."""
        if metric == "selection_rate":
            return Effect("ratio", self.selection_ratio)
        if metric == "latency":
            return Effect("level", self.slow_share)
        return Effect("shift", -self.rate_gap if metric == "tpr" else self.rate_gap)


@dataclass(frozen=True)
class Test:
    """One sequential test, as of the latest look."""

    metric: str
    group: str  # "attribute=value", or "all"
    n: int  # the candidate's observations
    successes: int
    n_reference: int
    reference_successes: int
    candidate_rate: float | None
    reference_rate: float | None
    e_value: float  # the breach e-value now
    max_e_value: float  # its largest so far: what the verdict reads
    p_value: float  # always-valid: 1 / max(1, max_e_value)
    pass_e_value: float  # the largest pass e-value so far (1 for outcome tests, which pass on their interval)
    interval: tuple[float, float]  # candidate minus production, always-valid at 1 - alpha/k
    verdict: Verdict
    note: str = ""


@dataclass(frozen=True)
class Analysis:
    """The verdict of one look, with every test behind it."""

    verdict: Overall
    candidate: str
    reference: str
    n_candidate: int
    n_reference: int
    alpha_per_test: float
    threshold: float  # the breach e-value a test must reach: k / alpha
    method: str  # "allocation" (a canary at `weight`) or "paired" (a shadow)
    weight: float | None = None
    tests: list[Test] = field(default_factory=list)
    agreement: float | None = None  # shadow only: share of mirrored requests with production's decision
    n_paired: int = 0

    def breaches(self) -> list[Test]:
        return [t for t in self.tests if t.verdict == "breach"]

    def pending(self) -> list[Test]:
        return [t for t in self.tests if t.verdict == "pending"]

    def summary(self) -> str:
        if self.verdict == "breach":
            return "breach: " + "; ".join(_describe(t, self.threshold) for t in self.breaches())
        if self.verdict == "inconclusive":
            waiting = [t for t in self.pending() if t.metric in BLOCKING]
            return f"inconclusive: {len(waiting)} test(s) still need data ({', '.join(_label(t) for t in waiting[:4])})"
        return f"pass: {sum(t.verdict == 'pass' for t in self.tests)} test(s) passed, none breached"

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["summary"] = self.summary()
        return out


def _label(test: Test) -> str:
    return f"{test.metric}[{test.group}]"


def _describe(test: Test, threshold: float) -> str:
    if test.reference_rate is None or test.candidate_rate is None:
        return _label(test)
    return (
        f"{_label(test)} {test.candidate_rate:.3f} vs production {test.reference_rate:.3f} "
        f"(n={test.n}, e-value {test.max_e_value:.3g} >= {threshold:.3g})"
    )


@dataclass(frozen=True)
class _Sides:
    """One test's observations in order: which side decided (candidate True), and each side's outcome (a paired
    shadow has both; a canary's `reference` is unused, all False)."""

    candidate: np.ndarray
    success: np.ndarray  # the candidate's outcome (canary: whichever side decided)
    reference: np.ndarray  # production's outcome (paired only)


def analyse(
    log: pd.DataFrame,
    *,
    candidate: str,
    reference: str,
    role: str,
    attributes: list[str],
    design: Design,
    favourable: str,
    unfavourable: str,
    weight: float | None = None,
    slow_ms: float | None = None,
) -> Analysis:
    """Compare `candidate` (the model's rows with `role`: canary, at `weight`, or shadow) with `reference`
    (production's rows) over `log`, a prediction-log window (`steward.windows.window`: oldest first, with the
    columns in NEEDED and the sensitive attributes). The TPR tests read the decisions whose outcome is `favourable`,
    the FPR tests those whose outcome is `unfavourable`. `slow_ms` is the latency threshold fixed before the step;
    without it, production's p95 in `log` times the factor stands in (noted on the test)."""
    missing = set(NEEDED) - set(log.columns)
    if missing:
        raise ValueError(NEEDS_COLUMNS.format(missing=sorted(missing)))
    paired = role == "shadow"
    if not paired and not (weight is not None and 0 < weight < 1):
        raise ValueError(BAD_WEIGHT.format(weight=weight))
    answered = log[log["decision"] != "error"]  # errors are the circuit breaker's, never a rate's
    ours = answered[(answered["model"] == candidate) & (answered["role"] == role)]
    theirs = answered[(answered["model"] == reference) & (answered["role"] == "production")]
    family = _family(_groups(pd.concat([ours, theirs]), attributes), design)
    if not family:
        raise ValueError(EMPTY_FAMILY)
    alpha_i = design.alpha / len(family)
    latency_note = ""
    if slow_ms is None:
        slow_ms = _p95(theirs["latency_ms"]) * design.latency_factor
        latency_note = "threshold from the step's own production latencies"
    rows = _paired_rows(ours, theirs) if paired else _canary_rows(ours, theirs, weight or 0.0)
    tests = []
    for metric, attribute, value in family:
        chosen = _observations(rows, metric, favourable=favourable, unfavourable=unfavourable)
        if metric == "latency":
            group, member = "all", np.ones(len(chosen), bool)
        else:
            group, member = f"{attribute}={value}", (chosen[attribute].astype(str) == value).to_numpy()
        sides = _sides(chosen, metric, paired=paired, slow_ms=slow_ms)
        test = _test(metric, group, sides, member, design=design, alpha_i=alpha_i, weight=weight, paired=paired)
        if metric == "latency" and latency_note and test.verdict != "breach":
            test = _with_note(test, latency_note)
        tests.append(test)
    agreement, n_paired = _agreement(rows) if paired else (None, 0)
    return Analysis(
        verdict=_overall(tests),
        candidate=candidate,
        reference=reference,
        n_candidate=len(ours),
        n_reference=len(theirs),
        alpha_per_test=alpha_i,
        threshold=len(family) / design.alpha,
        method="paired" if paired else "allocation",
        weight=None if paired else weight,
        tests=tests,
        agreement=agreement,
        n_paired=n_paired,
    )


def _canary_rows(ours: pd.DataFrame, theirs: pd.DataFrame, weight: float) -> pd.DataFrame:
    """Both sides' decisions in the order they were made, each applicant once, with its side by routing bucket."""
    rows = pd.concat([ours, theirs]).sort_values(["ts", "request_id"], kind="stable")
    rows = rows[rows["subject_id"] != ERASED].drop_duplicates("subject_id", keep="first")  # erased: side unknown
    return rows.assign(candidate=[bucket(str(s)) < weight for s in rows["subject_id"]])


def _paired_rows(ours: pd.DataFrame, theirs: pd.DataFrame) -> pd.DataFrame:
    """The requests both decided, in production's order, each applicant once: the shadow's decision and latency
    beside production's (the groups and outcome are the request's, read from production's row)."""
    shadow = ours[["request_id", "decision", "latency_ms"]].drop_duplicates("request_id")
    rows = theirs.merge(shadow, on="request_id", suffixes=("_reference", ""))
    rows = rows[rows["subject_id"] != ERASED].sort_values(["ts", "request_id"], kind="stable")
    return rows.drop_duplicates("subject_id", keep="first").assign(candidate=True)


def _observations(rows: pd.DataFrame, metric: str, *, favourable: str, unfavourable: str) -> pd.DataFrame:
    """The rows a metric's tests read, in the order they became known (outcome tests: when the outcome arrived)."""
    if metric not in ("tpr", "fpr"):
        return rows
    outcome = favourable if metric == "tpr" else unfavourable
    known = rows[rows["outcome"] == outcome]
    return known.sort_values(["outcome_ts", "ts", "request_id"], kind="stable")


def _sides(rows: pd.DataFrame, metric: str, *, paired: bool, slow_ms: float) -> _Sides:
    if metric == "latency":
        success = (rows["latency_ms"] > slow_ms).to_numpy()
        reference = (rows["latency_ms_reference"] > slow_ms).to_numpy() if paired else np.zeros(len(rows), bool)
    else:
        success = (rows["decision"] == "approve").to_numpy()
        reference = (rows["decision_reference"] == "approve").to_numpy() if paired else np.zeros(len(rows), bool)
    return _Sides(rows["candidate"].to_numpy(bool), success, reference)


def _test(
    metric: str,
    group: str,
    sides: _Sides,
    member: np.ndarray,
    *,
    design: Design,
    alpha_i: float,
    weight: float | None,
    paired: bool,
) -> Test:
    effect = design.effect(metric)
    ours = member & sides.candidate
    theirs = member & (sides.candidate if paired else ~sides.candidate)
    n, s = int(ours.sum()), int(sides.success[ours].sum())
    reference_success = sides.reference if paired else sides.success
    n_ref, s_ref = int(theirs.sum()), int(reference_success[theirs].sum())
    if paired:
        breach = paired_breach(sides.success, sides.reference, worse=effect.worse, member=member)
    else:
        breach = allocation_breach(sides.candidate, sides.success, weight=weight or 0.0, effect=effect, member=member)
    if metric == "latency":
        passing = level_pass(sides.success, level=design.slow_share, member=ours)
    elif metric == "selection_rate" and paired:
        passing = paired_pass(sides.success, sides.reference, effect=effect, member=member)
    elif metric == "selection_rate":
        passing = allocation_pass(sides.candidate, sides.success, weight=weight or 0.0, effect=effect, member=member)
    else:
        passing = np.zeros(1)
    now = float(breach[-1]) if len(breach) else 0.0
    top = max(float(breach.max()) if len(breach) else 0.0, 0.0)
    top_pass = max(float(passing.max()) if len(passing) else 0.0, 0.0)
    interval = difference_interval((s, n), (s_ref, n_ref), alpha=alpha_i)
    verdict: Verdict = "pending"
    note = ""
    if top >= math.log(1 / alpha_i):
        verdict = "breach"
    elif n < design.min_samples:
        note = f"{n} candidate observation(s), fewer than {design.min_samples}"
    elif _passed(metric, top_pass, interval, design):
        verdict = "pass"
    return Test(
        metric=metric,
        group=group,
        n=n,
        successes=s,
        n_reference=n_ref,
        reference_successes=s_ref,
        candidate_rate=s / n if n else None,
        reference_rate=s_ref / n_ref if n_ref else None,
        e_value=math.exp(min(now, 700.0)),
        max_e_value=math.exp(min(top, 700.0)),
        p_value=min(1.0, math.exp(-top)),
        pass_e_value=math.exp(min(top_pass, 700.0)),
        interval=interval,
        verdict=verdict,
        note=note,
    )


def _passed(metric: str, log_pass: float, interval: tuple[float, float], design: Design) -> bool:
    """A blocking test passes on its pass e-value; an outcome test when its interval for (candidate - production)
    rules out the gap (its size or worse)."""
    if metric in BLOCKING:
        return log_pass >= math.log(1 / design.beta)
    gap = design.effect(metric).size
    return interval[0] > gap if gap < 0 else interval[1] < gap


def _with_note(test: Test, note: str) -> Test:
    return replace(test, note="; ".join(n for n in (test.note, note) if n))


def _groups(frame: pd.DataFrame, attributes: list[str]) -> list[tuple[str, str]]:
    pairs: set[tuple[str, str]] = set()
    for attribute in attributes:
        if attribute in frame:
            pairs.update((attribute, str(v)) for v in frame[attribute].dropna().unique())
    return sorted(pairs)


def _family(groups: list[tuple[str, str]], design: Design) -> list[tuple[str, str, str]]:
    family: list[tuple[str, str, str]] = [
        (m, a, v) for m in ("selection_rate", "tpr", "fpr") if m in design.metrics for a, v in groups
    ]
    if "latency" in design.metrics:
        family.append(("latency", "", ""))
    return family


def _p95(latencies: pd.Series) -> float:
    return float(np.percentile(latencies, 95)) if len(latencies) else math.inf


def _overall(tests: list[Test]) -> Overall:
    if any(t.verdict == "breach" for t in tests):
        return "breach"
    blocking = [t for t in tests if t.metric in BLOCKING]
    if blocking and all(t.verdict == "pass" for t in blocking):
        return "pass"
    return "inconclusive"


def _agreement(rows: pd.DataFrame) -> tuple[float | None, int]:
    if rows.empty:
        return None, 0
    return float((rows["decision"] == rows["decision_reference"]).mean()), len(rows)

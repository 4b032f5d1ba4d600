"""Judging a canary (or a shadow) against production on the prediction log, with tests that stay valid
when they are looked at after every request.

Every check is a Bernoulli rate compared between the candidate's decisions and production's decisions
over the same period, one test per (metric, group):

* ``selection_rate``: P(approve) in each group of each sensitive attribute. Breach hypothesis: the
  candidate approves the group at ``selection_ratio`` times production's rate.
* ``tpr`` / ``fpr``: P(approve | favourable outcome) and P(approve | unfavourable outcome) per group (the
  use case's label values), once outcomes have arrived through /feedback. Breach hypothesis: the
  candidate's TPR is ``rate_gap`` lower, or its FPR ``rate_gap`` higher, than production's.
* ``latency``: the share of the candidate's requests slower than ``latency_factor`` x production's p95.
  Breach hypothesis: ``slow_share`` of them are.

Each test is Wald's SPRT with production's rate plugged in as p0, recomputed at every look: smoothed away
from 0 and 1, then moved ``PLUG_IN_Z`` standard errors towards the breach hypothesis, so that a
production sample that happens to look good does not turn an ordinary candidate into a breach (p1 stays
where the raw estimate puts it; the margin shrinks as production's sample grows, and never exceeds half the
distance to p1). The log-likelihood ratio of the candidate's s successes in n trials,
``s ln(p1/p0) + (n - s) ln((1 - p1)/(1 - p0))``, is compared with ``ln((1 - beta)/alpha_i)`` (breach) and
``ln(beta/(1 - alpha_i))`` (no breach). Bonferroni: ``alpha_i = alpha / k`` over the k tests of the
family, so the chance of any false alarm over the whole rollout stays below ``alpha``.

Minimum-sample guard: no verdict while production has fewer than ``min_samples`` observations for a
test (p0 would be a guess), and no "pass" while the candidate has fewer than ``min_samples``: such a test
is ``pending`` and the whole analysis is ``inconclusive``, which never promotes a model. Outcome tests
breach like the others but do not hold a promotion while they wait (credit outcomes take months).

Errors are not judged here: the service takes a canary that raises out of routing at once.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

Verdict = Literal["breach", "pass", "pending"]
Overall = Literal["breach", "pass", "inconclusive"]
METRICS = ("selection_rate", "tpr", "fpr", "latency")
PLUG_IN_Z = 1.645  # production's rate is moved this many standard errors towards p1 (one-sided 95 %)
SMOOTHING = 0.5  # added to successes (and 2x to trials) before plugging production's rate in as p0
RATE_FLOOR = 1e-3
EMPTY_FAMILY = "no test to run: give at least one sensitive attribute or metric"
BAD_METRIC = "unknown canary metric {metric!r}; one of: {allowed}"
NEEDS_COLUMNS = "the prediction log frame lacks the columns {missing}"


@dataclass(frozen=True)
class Design:
    """The hypotheses and error rates of the analysis (params.yaml `rollout.analysis`)."""

    alpha: float = 0.05
    beta: float = 0.05
    selection_ratio: float = 0.5
    rate_gap: float = 0.2
    latency_factor: float = 1.5
    slow_share: float = 0.25
    min_samples: int = 30
    metrics: tuple[str, ...] = METRICS

    def __post_init__(self) -> None:
        for metric in self.metrics:
            if metric not in METRICS:
                raise ValueError(BAD_METRIC.format(metric=metric, allowed=", ".join(METRICS)))


@dataclass(frozen=True)
class Test:
    """One sequential test, as of the latest look."""

    metric: str
    group: str  # "attribute=value", or "all"
    n: int  # the candidate's observations
    successes: int
    n_reference: int
    reference_rate: float | None
    candidate_rate: float | None
    p0: float | None
    p1: float | None
    llr: float
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
    upper: float
    lower: float
    tests: list[Test] = field(default_factory=list)
    agreement: float | None = None  # shadow only: share of mirrored requests with production's decision
    n_paired: int = 0

    def breaches(self) -> list[Test]:
        return [t for t in self.tests if t.verdict == "breach"]

    def pending(self) -> list[Test]:
        return [t for t in self.tests if t.verdict == "pending"]

    def summary(self) -> str:
        if self.verdict == "breach":
            return "breach: " + "; ".join(_describe(t) for t in self.breaches())
        if self.verdict == "inconclusive":
            waiting = [t for t in self.pending() if t.metric in ("selection_rate", "latency")]
            return f"inconclusive: {len(waiting)} test(s) still need data ({', '.join(_label(t) for t in waiting[:4])})"
        return f"pass: {sum(t.verdict == 'pass' for t in self.tests)} test(s) passed, none breached"

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["summary"] = self.summary()
        return out


def _label(test: Test) -> str:
    return f"{test.metric}[{test.group}]"


def _describe(test: Test) -> str:
    if test.reference_rate is None or test.candidate_rate is None:
        return _label(test)
    return (
        f"{_label(test)} {test.candidate_rate:.3f} vs production {test.reference_rate:.3f} "
        f"(n={test.n}, LLR {test.llr:.2f})"
    )


def boundaries(alpha: float, beta: float) -> tuple[float, float]:
    """Wald's (upper, lower) log-likelihood-ratio boundaries."""
    return math.log((1 - beta) / alpha), math.log(beta / (1 - alpha))


def log_likelihood_ratio(successes: int, n: int, p0: float, p1: float) -> float:
    """ln L(p1)/L(p0) of `successes` in `n` Bernoulli trials."""
    return successes * math.log(p1 / p0) + (n - successes) * math.log((1 - p1) / (1 - p0))


def expected_sample_size(p0: float, p1: float, *, alpha: float, beta: float) -> float:
    """Wald's approximation of E[N] under H1 for the SPRT of p0 against p1 (the bench's yardstick)."""
    upper, lower = boundaries(alpha, beta)
    kl = p1 * math.log(p1 / p0) + (1 - p1) * math.log((1 - p1) / (1 - p0))
    return ((1 - beta) * upper + beta * lower) / kl


def _plug_in(successes: int, n: int) -> float:
    rate = (successes + SMOOTHING) / (n + 2 * SMOOTHING)
    return min(max(rate, RATE_FLOOR), 1 - RATE_FLOOR)


def _sprt(
    metric: str,
    group: str,
    candidate: np.ndarray,
    reference: np.ndarray,
    *,
    alternative: Any,
    design: Design,
    bounds: tuple[float, float],
) -> Test:
    """One test: `candidate` and `reference` are 0/1 arrays; `alternative(p0)` gives p1."""
    n, s = len(candidate), int(candidate.sum())
    n_ref, s_ref = len(reference), int(reference.sum())
    candidate_rate = s / n if n else None
    reference_rate = s_ref / n_ref if n_ref else None
    if n_ref < design.min_samples:
        note = f"production has {n_ref} observation(s), fewer than {design.min_samples}"
        return Test(metric, group, n, s, n_ref, reference_rate, candidate_rate, None, None, 0.0, "pending", note)
    estimate = _plug_in(s_ref, n_ref)
    p1 = min(max(float(alternative(estimate)), RATE_FLOOR), 1 - RATE_FLOOR)
    margin = PLUG_IN_Z * math.sqrt(estimate * (1 - estimate) / n_ref)
    p0 = estimate + math.copysign(min(margin, abs(p1 - estimate) / 2), p1 - estimate)
    llr = log_likelihood_ratio(s, n, p0, p1)
    upper, lower = bounds
    verdict: Verdict = "pending"
    note = ""
    if llr >= upper:
        verdict = "breach"
    elif llr <= lower and n >= design.min_samples:
        verdict = "pass"
    elif n < design.min_samples:
        note = f"{n} candidate observation(s), fewer than {design.min_samples}"
    return Test(metric, group, n, s, n_ref, reference_rate, candidate_rate, p0, p1, llr, verdict, note)


def _groups(frame: pd.DataFrame, attributes: list[str]) -> list[tuple[str, str]]:
    pairs: set[tuple[str, str]] = set()
    for attribute in attributes:
        if attribute in frame:
            pairs.update((attribute, str(v)) for v in frame[attribute].dropna().unique())
    return sorted(pairs)


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
) -> Analysis:
    """Compare `candidate` (the models' rows with `role`: canary or shadow) with `reference` (production).

    The TPR tests read the decisions whose outcome is `favourable`, the FPR tests those whose outcome is
    `unfavourable` (the use case's label values, as the strings /feedback stores).

    `log` is a prediction-log window (`steward.predictions.window`): one row per decision, with columns
    request_id, role, model, decision, latency_ms, outcome (None until known) and the sensitive attributes.
    """
    needed = {"request_id", "role", "model", "decision", "latency_ms", "outcome"}
    missing = needed - set(log.columns)
    if missing:
        raise ValueError(NEEDS_COLUMNS.format(missing=sorted(missing)))
    answered = log[log["decision"] != "error"]  # errors are the circuit breaker's, never a rate's
    ours = answered[(answered["model"] == candidate) & (answered["role"] == role)]
    theirs = answered[(answered["model"] == reference) & (answered["role"] == "production")]
    groups = _groups(pd.concat([ours, theirs]), attributes)
    family = _family(groups, design)
    if not family:
        raise ValueError(EMPTY_FAMILY)
    alpha_i = design.alpha / len(family)
    bounds = boundaries(alpha_i, design.beta)
    approve_ours = (ours["decision"] == "approve").to_numpy()
    approve_theirs = (theirs["decision"] == "approve").to_numpy()
    tests: list[Test] = []
    for metric, attribute, value in family:
        if metric == "latency":
            threshold = _p95(theirs["latency_ms"]) * design.latency_factor
            tests.append(
                _sprt(
                    "latency",
                    "all",
                    (ours["latency_ms"] > threshold).to_numpy(),
                    (theirs["latency_ms"] > threshold).to_numpy(),
                    alternative=lambda _p0: design.slow_share,
                    design=design,
                    bounds=bounds,
                )
            )
            continue
        in_ours = (ours[attribute].astype(str) == value).to_numpy()
        in_theirs = (theirs[attribute].astype(str) == value).to_numpy()
        if metric == "selection_rate":
            alternative: Any = lambda p0: p0 * design.selection_ratio  # noqa: E731
        else:
            outcome = favourable if metric == "tpr" else unfavourable
            in_ours = in_ours & (ours["outcome"] == outcome).to_numpy()
            in_theirs = in_theirs & (theirs["outcome"] == outcome).to_numpy()
            gap = -design.rate_gap if metric == "tpr" else design.rate_gap
            alternative = lambda p0, gap=gap: p0 + gap  # noqa: E731
        tests.append(
            _sprt(
                metric,
                f"{attribute}={value}",
                approve_ours[in_ours],
                approve_theirs[in_theirs],
                alternative=alternative,
                design=design,
                bounds=bounds,
            )
        )
    agreement, paired = _agreement(log, candidate=candidate, reference=reference) if role == "shadow" else (None, 0)
    return Analysis(
        verdict=_overall(tests),
        candidate=candidate,
        reference=reference,
        n_candidate=len(ours),
        n_reference=len(theirs),
        alpha_per_test=alpha_i,
        upper=bounds[0],
        lower=bounds[1],
        tests=tests,
        agreement=agreement,
        n_paired=paired,
    )


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
    blocking = [t for t in tests if t.metric in ("selection_rate", "latency")]
    if blocking and all(t.verdict == "pass" for t in blocking):
        return "pass"
    return "inconclusive"


def _agreement(log: pd.DataFrame, *, candidate: str, reference: str) -> tuple[float | None, int]:
    shadow = log[(log["model"] == candidate) & (log["role"] == "shadow")][["request_id", "decision"]]
    served = log[(log["model"] == reference) & (log["role"] == "production")][["request_id", "decision"]]
    paired = shadow.merge(served, on="request_id", suffixes=("_shadow", "_production"))
    if paired.empty:
        return None, 0
    return float((paired["decision_shadow"] == paired["decision_production"]).mean()), len(paired)

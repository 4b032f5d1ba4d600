"""Watching one rollout step: analyse the prediction log every few hundred milliseconds until the step ends.

A step ends on the first of: a breach (the caller rolls back at once), a passing analysis once the
candidate has served the step's number of decisions, the candidate gone from routing (the service's
circuit breaker or the kill switch took it out), or the step's time limit (inconclusive).

Watching is what keeps the rollout's lease (steward/leases.py): its first look renews it, then each look once a
third of it has passed, so a rollout whose watch stops (killed, hung, stuck waiting on the Prefect API) loses its
lease and its candidate is withdrawn. A renewal refused (`LeaseLost`: it lapsed and was expired) ends the watch
by raising.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError

from steward.anchor import anchored
from steward.db import make_engine
from steward.leases import Lease, Leases
from steward.params import Params, StepParams
from steward.routing import RoutingTable, model_name_of
from steward.settings import Settings
from steward.windows import window
from tasks.rollout.canary import Analysis, Design, analyse
from tasks.rollout.plan import LOOKBACK_SECONDS, Plan, baseline, plan

Ending = Literal["breach", "pass", "inconclusive", "withdrawn"]
PROGRESS_EVERY = 10.0  # seconds between progress lines in the run's log
TEST_FIELDS = (
    *("metric", "group", "n", "successes", "n_reference", "reference_successes", "verdict", "note"),
    *("candidate_rate", "reference_rate", "e_value", "max_e_value", "p_value", "pass_e_value"),
)
LOW_AGREEMENT = "shadow agreed with production on {agreement:.1%} of {n} decisions, below {minimum:.0%}"


@dataclass(frozen=True)
class StepResult:
    ending: Ending
    analysis: Analysis
    seconds: float
    decisive_ts: str | None  # the newest decision the deciding look read (a breach's decisive request)
    note: str = ""
    plan: dict[str, Any] | None = None  # a canary step's plan (tasks/rollout/plan.py), made before it started

    def payload(self, *, step: str) -> dict[str, Any]:
        """The step's `rollout.analysis` record: each test's counts, rates, e-values, always-valid p-value and
        interval for (candidate - production), and the plan made before the step."""
        tests = [
            {k: v for k, v in asdict(t).items() if k in TEST_FIELDS} | {"interval": [round(x, 6) for x in t.interval]}
            for t in self.analysis.tests
        ]
        return {
            "step": step,
            "ending": self.ending,
            "summary": self.note or self.analysis.summary(),
            "candidate": self.analysis.candidate,
            "reference": self.analysis.reference,
            "method": self.analysis.method,
            "weight": self.analysis.weight,
            "n_candidate": self.analysis.n_candidate,
            "n_reference": self.analysis.n_reference,
            "alpha_per_test": self.analysis.alpha_per_test,
            "threshold": self.analysis.threshold,
            "agreement": self.analysis.agreement,
            "seconds": round(self.seconds, 3),
            "decisive_ts": self.decisive_ts,
            "plan": self.plan,
            "tests": tests,
        }


def verdict(step: StepResult, *, shadow_min_agreement: float | None) -> tuple[Ending, str]:
    """How a step ends and why. A shadow step (`shadow_min_agreement` given) that passed the analysis still
    breaches when it agreed with production on fewer decisions than that share: a shadow is judged on
    agreement as well, since none of its decisions reached anyone (no agreement measured counts as 0)."""
    ending, why = step.ending, step.note or step.analysis.summary()
    agreement = step.analysis.agreement or 0.0
    if shadow_min_agreement is not None and ending == "pass" and agreement < shadow_min_agreement:
        n = step.analysis.n_paired
        return "breach", LOW_AGREEMENT.format(agreement=agreement, n=n, minimum=shadow_min_agreement)
    return ending, why


def design(params: Params) -> Design:
    a = params.rollout.analysis
    return Design(
        alpha=a.alpha,
        beta=a.beta,
        selection_ratio=a.selection_ratio,
        rate_gap=a.rate_gap,
        latency_factor=a.latency_factor,
        slow_share=a.slow_share,
        min_samples=a.min_samples,
        metrics=tuple(a.metrics),
    )


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


@task(name="watch-step", task_run_name="watch {role} {candidate}", cache_policy=NO_CACHE)
def watch(
    *,
    candidate: str,
    reference: str,
    role: Literal["shadow", "canary"],
    since: str,
    limits: StepParams,
    params: Params,
    settings: Settings,
    weight: float | None = None,
    lease: Lease | None = None,
) -> StepResult:
    """Poll the log from `since` until the step ends (see the module docstring), renewing `lease` (if given) at
    least every third of it; raises `LeaseLost` when a renewal is refused. A canary step (`weight`, its share of
    applicants) is planned first from production's decisions in the LOOKBACK_SECONDS before `since`, and the plan
    logged. Outside a flow: `watch.fn`."""
    try:
        log: Any = get_run_logger()
    except MissingContextError:
        log = None
    engine = make_engine(settings.db_url)
    table = RoutingTable(engine, anchored(engine, settings))
    model_name = model_name_of(candidate)  # the routing row of the candidate's use case
    label = params.usecase.label
    started = time.monotonic()
    last_progress = started
    last_renewal = -float("inf")  # the first look renews: a watch that starts late finds out it lost the lease
    leases = Leases(engine)
    attributes = list(params.usecase.sensitive)
    base = baseline(
        _history(engine, reference, since), reference=reference, attributes=attributes, design=design(params)
    )
    step_plan: Plan | None = None
    if role == "canary" and weight is not None:
        tests = (len(base.groups) or 1) * sum(m != "latency" for m in params.rollout.analysis.metrics)
        tests += "latency" in params.rollout.analysis.metrics
        step_plan = plan(
            base,
            weight=weight,
            design=design(params),
            tests=tests,
            limit_seconds=limits.seconds,
            min_requests=limits.requests,
        )
        if log is not None:
            (log.info if step_plan.feasible else log.warning)(f"{role} {candidate}: plan: {step_plan.summary()}")
    planned = step_plan.as_dict() if step_plan else None
    while True:
        if lease is not None and time.monotonic() - last_renewal >= lease.seconds / 3:
            leases.renew(lease)  # LeaseLost: the rollout's candidate is, or is about to be, withdrawn
            last_renewal = time.monotonic()
        frame = window(engine, models=[candidate, reference], since=since)
        analysis = analyse(
            frame,
            candidate=candidate,
            reference=reference,
            role=role,
            attributes=attributes,
            design=design(params),
            favourable=str(label.favourable),
            unfavourable=str(label.unfavourable),
            weight=weight,
            slow_ms=base.slow_ms,
        )
        elapsed = time.monotonic() - started
        ours = frame[(frame["model"] == candidate) & (frame["role"] == role)] if len(frame) else frame
        newest = str(ours["ts"].max()) if len(ours) else None
        if analysis.verdict == "breach":
            return StepResult("breach", analysis, elapsed, newest, plan=planned)
        routing = table.get(model_name)
        if (routing.canary if role == "canary" else routing.shadow) != candidate:
            note = f"{candidate} left routing during the step: {routing.reason or 'no reason recorded'}"
            return StepResult("withdrawn", analysis, elapsed, newest, note, planned)
        if analysis.n_candidate >= limits.requests and analysis.verdict == "pass":
            return StepResult("pass", analysis, elapsed, newest, plan=planned)
        if elapsed >= limits.seconds:
            note = f"time limit {limits.seconds:g} s reached; {analysis.summary()}"
            return StepResult("inconclusive", analysis, elapsed, newest, note, planned)
        if log is not None and time.monotonic() - last_progress >= PROGRESS_EVERY:
            last_progress = time.monotonic()
            log.info(f"{role} {candidate}: {analysis.n_candidate} decisions, {analysis.summary()}")
        time.sleep(params.rollout.poll_seconds)


def _history(engine: Any, reference: str, since: str) -> Any:
    """Production's decisions in the LOOKBACK_SECONDS before `since` (none if `since` is not a time)."""
    try:
        start = datetime.fromisoformat(since)
    except ValueError:
        start = None
    lookback = (start - timedelta(seconds=LOOKBACK_SECONDS)).isoformat() if start else "9999"
    history = window(engine, models=[reference], since=lookback)
    return history[history["ts"] < since]

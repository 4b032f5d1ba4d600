"""The rollout flow: an approved model mirrors production (shadow), then takes the canary weights in
params.yaml one after another, then becomes production. After each step an analysis of the prediction
log compares it with production (tasks/rollout/canary.py); a breach, an inconclusive step or a canary the service
took out of routing rolls it back at once: weight 0, state rolled_back, a ledger record, a
`steward.rollback` event.

With no production model to compare against, an approved model becomes production directly (the
ledger says so), but only the first: a use case that had production models (taken out with `steward rollback
--refuse-all`) must have one restored before the next is rolled out against it.

Before each move (shadow, each canary weight, production) the model's bytes and records are verified
(tasks/model/integrity.py): one that does not verify is refused in the ledger, withdrawn if it already mirrors
or takes traffic, and the rollout ends `refused`; production stays the model it was.

A rollout holds its use case's lease (steward/leases.py) from before its first move to its end, renewed by each
step's watch and before every move: a second rollout of the use case is refused meanwhile. A rollout that stops
renewing (killed, hung, Prefect unreachable longer than `rollout.lease_seconds`) has its candidate withdrawn by
whoever expires leases (the service, the monitor, the next rollout); when it wakes up its renewal is refused and
it ends `withdrawn`, never promoting. An exception in the flow (a database or Prefect error, Ctrl-C) withdraws the
candidate at once and is raised again.

A rollout acts on one use case (`usecase`, default params.yaml's): its model's routing row, its label and
sensitive attributes; other use cases' routing is untouched.

`alpha` judges this rollout's steps at a stricter family-wise false-alarm rate than `rollout.analysis.alpha`, down to
a hundredth of it (each step's ledger record carries the rate it was judged at). A stricter rate costs a breach more
evidence (the threshold k/alpha grows; a breach needs about ln(k/alpha) / ln(k/alpha_0) times the decisions), never a
candidate at the breach effect a better chance to pass (that is beta's); the floor keeps it from making a canary deaf.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from prefect import flow, get_run_logger
from prefect.events import emit_event

from steward.anchor import anchored
from steward.db import make_engine
from steward.layout import Layout
from steward.leases import Lease, LeaseLost, Leases, expire
from steward.ledger import ROLLOUT_ANALYSIS
from steward.model_integrity import ModelRefused
from steward.params import Params, ParamsError, load_params
from steward.registry import State
from steward.rollouts import Rollouts
from steward.routing import RoutingError, model_name_of
from steward.settings import Settings
from tasks.artifacts import publish
from tasks.model.integrity import verified_or_withdrawn
from tasks.rollout.watch import StepResult, now_iso, verdict, watch
from tasks.signoff.policy import resource

ACTOR = "steward-rollout"
NOT_APPROVED = "model {ref} is {state}: only an approved model starts a rollout"
NOT_FIRST = (
    "{model_name} serves no production model now, but it had one before ({earlier}): {ref} would skip shadow and "
    "canary as if it were the first; restore one (`steward rollback --to MODEL`) and roll {ref} out against it"
)
OTHER_USECASE = "model {ref} is not a version of use case {usecase}'s model {model_name}: name its use case"
FAILED = "the rollout failed at {step} ({error}): its candidate is withdrawn rather than left unwatched"
BAD_ALPHA = (
    "alpha={alpha!r}: a rollout may be judged at a false-alarm rate from rollout.analysis.alpha / {floor:g} to "
    "rollout.analysis.alpha ({configured:g}), never a laxer one"
)
ALPHA_FLOOR = 100  # the strictest rate a rollout may ask for: rollout.analysis.alpha / ALPHA_FLOOR


@dataclass
class RolloutResult:
    model: str
    outcome: str  # production | rolled_back | refused | withdrawn (its lease lapsed)
    steps: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""
    step: str = "start"  # the step it is at (or ended at)


@flow(name="rollout", flow_run_name="rollout {model}", log_prints=False)
def rollout_flow(model: str, usecase: str | None = None, alpha: float | None = None) -> RolloutResult:
    """Roll `model`, an approved version of `usecase`'s model (default: params.yaml's use case), out; `alpha`: a
    stricter false-alarm rate for its steps (see the module docstring)."""
    settings = Settings()
    params = with_alpha(load_params(Layout(settings.project_dir).params_file, usecase=usecase), alpha)
    engine = make_engine(settings.db_url)
    ledger = anchored(engine, settings)
    moves = Rollouts(engine, ledger)
    version = moves.registry.get(model)
    ref = version.ref
    if version.name != params.usecase.model_name:
        raise RoutingError(
            OTHER_USECASE.format(ref=ref, usecase=params.usecase.name, model_name=params.usecase.model_name)
        )
    if version.state is not State.APPROVED:
        raise ValueError(NOT_APPROVED.format(ref=ref, state=version.state.value))
    if not moves.table.get(version.name).production and (earlier := moves.former_production(version.name)):
        raise RoutingError(NOT_FIRST.format(ref=ref, model_name=version.name, earlier=", ".join(earlier)))
    leases = Leases(engine)
    for lapsed in expire(moves, model_name=version.name):  # a rollout of this use case that died: withdrawn first
        get_run_logger().warning(lapsed.reason)
    lease = leases.acquire(version.name, ref, params.rollout.lease_seconds)  # LeaseHeld: another rollout moves it
    result = RolloutResult(model=ref, outcome="production")
    try:
        return _walk(moves, Keeper(leases, lease), result, params=params, settings=settings)
    except LeaseLost as lost:  # it lapsed (this process stalled) and was expired: never move routing again
        why = str(lost)
        _pull(moves, ref, reason=why)
        _event("steward.rollback", ref, {"step": result.step, "ending": "withdrawn", "reason": why})
        get_run_logger().warning(f"{ref}: withdrawn: {why}")
        result.outcome, result.reason = "withdrawn", f"{result.step}: {why}"
        return result
    except BaseException as error:  # a database or Prefect error, Ctrl-C: nothing left serving unwatched
        why = FAILED.format(step=result.step, error=f"{type(error).__name__}: {error}"[:200])
        with contextlib.suppress(Exception):  # the database too: the lease lapses, and expiring it withdraws
            _pull(moves, ref, reason=why)
        raise
    finally:
        with contextlib.suppress(Exception):  # an unreleased lease lapses; expire then finds its holder gone
            leases.release(lease)


def with_alpha(params: Params, alpha: float | None) -> Params:
    """`params` with the canary analysis judged at `alpha` (None: as configured); a laxer rate than configured, or
    one below a hundredth of it, is refused, naming both."""
    if alpha is None:
        return params
    configured = params.rollout.analysis.alpha
    if not configured / ALPHA_FLOOR <= alpha <= configured:
        raise ParamsError(BAD_ALPHA.format(alpha=alpha, floor=ALPHA_FLOOR, configured=configured))
    analysis = params.rollout.analysis.model_copy(update={"alpha": alpha})
    return params.model_copy(update={"rollout": params.rollout.model_copy(update={"analysis": analysis})})


@dataclass
class Keeper:
    """The rollout's lease: renewed before every move (`LeaseLost` if it lapsed) and handed to each step's watch."""

    leases: Leases
    lease: Lease

    def renew(self) -> None:
        self.lease = self.leases.renew(self.lease)


def _walk(
    moves: Rollouts, keeper: Keeper, result: RolloutResult, *, params: Params, settings: Settings
) -> RolloutResult:
    """The rollout's moves under its lease: the first production model, or shadow, canary weights, production."""
    logger = get_run_logger()
    ledger = moves.ledger
    ref = result.model
    production = moves.table.get(model_name_of(ref)).production
    if not production:
        if why := _refused(moves, ref, step="production", settings=settings):
            result.outcome, result.reason = "refused", why
            return result
        reason = f"{ref} is the first production model: nothing to compare it with"
        keeper.renew()
        moves.promote(ref, actor=ACTOR, reason=reason)
        _event("steward.rollout.promoted", ref, {"reason": reason})
        logger.info(reason)
        result.reason = reason
        return result

    steps: list[tuple[str, float | None]] = [("shadow", None)] + [
        (f"canary {w:.0%}", w) for w in params.rollout.weights
    ]
    for name, weight in steps:
        result.step = name
        if why := _refused(moves, ref, step=name, settings=settings):
            result.outcome, result.reason = "refused", f"{name}: {why}"
            return result
        since = now_iso()
        keeper.renew()  # a rollout that lost its lease moves nothing
        if weight is None:
            moves.to_shadow(ref, actor=ACTOR)
            limits: Any = params.rollout.shadow
        else:
            moves.to_canary(ref, weight, actor=ACTOR)
            limits = params.rollout.step
        logger.info(f"{ref}: {name} against {production}")
        step = watch(
            candidate=ref,
            reference=production,
            role="shadow" if weight is None else "canary",
            since=since,
            limits=limits,
            params=params,
            settings=settings,
            weight=weight,
            lease=keeper.lease,
        )
        minimum = params.rollout.shadow.min_agreement if weight is None else None
        ending, why = verdict(step, shadow_min_agreement=minimum)
        if ending != "pass":  # traffic first: the records and the event follow
            moves.withdraw(ref, actor=ACTOR, reason=f"{name}: {why}")
        payload = step.payload(step=name) | {"ending": ending, "summary": why}
        ledger.append(actor=ACTOR, action=ROLLOUT_ANALYSIS, subject=ref, payload=payload)
        _artifact(ref, name, step, why)
        result.steps.append(payload)
        logger.info(f"{ref}: {name} ended {ending}: {why}")
        if ending != "pass":
            _event("steward.rollback", ref, {"step": name, "ending": ending, "reason": why})
            result.outcome, result.reason = "rolled_back", f"{name}: {why}"
            return result

    result.step = "production"
    if why := _refused(moves, ref, step="production", settings=settings):
        result.outcome, result.reason = "refused", f"production: {why}"
        return result
    reason = f"{ref} passed shadow and {len(params.rollout.weights)} canary step(s)"
    keeper.renew()  # never promoted after losing the lease
    moves.promote(ref, actor=ACTOR, reason=reason)
    _event("steward.rollout.promoted", ref, {"reason": reason, "replaced": production})
    result.reason = reason
    return result


def _pull(moves: Rollouts, ref: str, *, reason: str) -> None:
    """Withdraw `ref` if it is still this use case's shadow or canary (a `rollback` record with `reason`)."""
    routing = moves.table.get(model_name_of(ref))
    if ref in (routing.canary, routing.shadow):
        moves.withdraw(ref, actor=ACTOR, reason=reason)


def _refused(moves: Rollouts, ref: str, *, step: str, settings: Settings) -> str | None:
    """Why `ref` may not take `step` (None: it verifies); refused in the ledger, withdrawn if it already mirrors
    or takes traffic, then `steward.rollback` is emitted."""
    try:
        verified_or_withdrawn(ref, moves=moves, settings=settings, where=f"rollout {step}", actor=ACTOR)
    except ModelRefused as refused:
        _event("steward.rollback", ref, {"step": step, "ending": "refused", "reason": str(refused)})
        get_run_logger().warning(f"{ref}: refused before {step}: {refused}")
        return str(refused)
    return None


def _event(name: str, ref: str, payload: dict[str, Any]) -> None:
    emit_event(event=name, resource=resource(ref), payload=payload)


def _artifact(ref: str, name: str, step: StepResult, why: str) -> None:
    head = "| metric | group | n | candidate | production | difference (always-valid) | e-value | p-value | verdict |"
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    lines += [
        f"| {t.metric} | {t.group} | {t.n} | {_rate(t.candidate_rate)} | {_rate(t.reference_rate)} "
        f"| [{t.interval[0]:+.3f}, {t.interval[1]:+.3f}] | {t.max_e_value:.3g} | {t.p_value:.3g} | {t.verdict} |"
        for t in step.analysis.tests
    ]
    a = step.analysis
    rule = (
        f"{a.method.capitalize()} tests ({len(a.tests)}, Bonferroni): a breach when a test's e-value reaches "
        f"{a.threshold:.3g}; intervals at {1 - a.alpha_per_test:.2%}."
    )
    planned = [f"Plan: {step.plan['summary']}."] if step.plan else []
    key = "rollout-" + "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    markdown = "\n\n".join([f"## {ref}: {name}", why, *planned, rule, "\n".join(lines)])
    publish(key, markdown, description=f"{ref} {name}: {step.ending}")


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


@flow(name="rollback", flow_run_name="rollback {model}", log_prints=False)
def rollback_flow(model: str, reason: str) -> dict[str, Any]:
    """Take `model` out of routing if it is the canary or the shadow (a trigger runs this on a monitoring breach
    of a canary); a production model is left serving, since only the kill switch takes production out."""
    settings = Settings()
    engine = make_engine(settings.db_url)
    moves = Rollouts(engine, anchored(engine, settings))
    routing = moves.table.get(model_name_of(model))  # the routing row of the model's own use case
    if model not in (routing.canary, routing.shadow):
        get_run_logger().info(f"{model} is neither canary nor shadow now: nothing to roll back")
        return {"model": model, "rolled_back": False, "routing": routing.as_dict()}
    done = moves.withdraw(model, actor=ACTOR, reason=reason)
    _event("steward.rollback", model, {"step": "monitoring", "ending": "breach", "reason": reason})
    return {"model": model, "rolled_back": True, "routing": done.as_dict()}

"""The sign-off step of the training flow: pause for approvers, record every answer, settle the registry.

Run by hand (`steward train`) the flow pauses in place and polls Prefect for an answer; run from a
deployment it suspends instead, so no process waits for days, and starts again from the top when
resumed (the pipeline stages are DVC no-ops then, and every sign-off fact is read back from the ledger).
"""

from __future__ import annotations

import math

from prefect import flow, get_client, get_run_logger, pause_flow_run, suspend_flow_run, task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.exceptions import FlowPauseTimeout
from prefect.runtime import deployment, flow_run
from prefect.states import Running

from steward.ledger import APPROVAL_REQUESTED, Ledger
from steward.params import GovernanceParams
from steward.registry import ModelVersion, Registry, State
from steward.settings import Settings
from steward.storage import Storage
from tasks import evidence
from tasks.signoff import (
    SIGNOFF_ACTOR,
    Approval,
    Request,
    Tally,
    now,
    record_answer,
    record_timeout,
    tally,
    unsatisfiable,
)

FORM = """### Sign-off: {model} ({tier} risk tier)

The gate passed. Review the evidence, then answer.

- **Evidence report:** [{page}](file://{page})
- **Evidence digest:** `{digest}` (answer with this digest; a stale one is refused)
- **Author (may not approve):** {author}
- **Needed:** {needed}
- **So far:** {progress}
- **Waiting until:** {deadline} (then: {on_timeout})
"""


class SignoffImpossible(ValueError):
    """The configured approvers can never complete this tier's sign-off."""


def _resource(model: str) -> dict[str, str]:
    return {"prefect.resource.id": f"steward.model.{model}", "prefect.resource.name": model}


@task(name="request-signoff", cache_policy=NO_CACHE)
def request_signoff(
    model: ModelVersion, *, governance: GovernanceParams, author: str, settings: Settings, ledger: Ledger
) -> Tally:
    """Freeze the evidence, lay it out for reviewers, record the request and emit `steward.approval.requested`."""
    storage = Storage.from_settings(settings)
    snap = evidence.snapshot(settings.project_dir, storage=storage)
    folder = settings.state_dir / "evidence" / f"{model.name}-v{model.version}-{snap.short}"
    if not (folder / evidence.EVIDENCE_PAGE).is_file():
        evidence.materialize(snap, folder, storage=storage)
    request = Request(
        model=model.ref,
        flow_run_id=str(flow_run.get_id()),
        author=author,
        tier=governance.risk_tier,
        policy=governance.policy.signoff,
        evidence_digest=snap.digest,
        evidence_page=str(folder / evidence.EVIDENCE_PAGE),
        requested_at=now(),
    )
    record = ledger.append(actor=author, action=APPROVAL_REQUESTED, subject=model.ref, payload=request.payload())
    emit_event(
        event="steward.approval.requested",
        resource=_resource(model.ref),
        payload={"flow_run_id": request.flow_run_id, "tier": request.tier, "evidence_digest": snap.digest},
    )
    return Tally(request=request, request_seq=record.seq)


def _form(current: Tally) -> type[Approval]:
    request, policy = current.request, current.request.policy
    needed = f"{policy.approvers} distinct approver(s)" + (
        f" covering {', '.join(policy.roles)}" if policy.roles else ""
    )
    description = FORM.format(
        model=request.model,
        tier=request.tier,
        page=request.evidence_page,
        digest=request.evidence_digest,
        author=request.author,
        needed=needed,
        progress=current.progress.summary(policy),
        deadline=f"{current.deadline:%Y-%m-%d %H:%M} UTC",
        on_timeout=policy.on_timeout,
    )
    return Approval.with_initial_data(description=description, evidence_digest=request.evidence_digest)


def _wait(current: Tally, *, settings: Settings) -> Approval | None:
    """One pause (or suspension) for one answer; None when the waiting period ran out first."""
    key = current.next_pause_key
    if deployment.get_id():  # no process waits: the run is rescheduled when someone answers
        return suspend_flow_run(wait_for_input=_form(current), key=key, timeout=None)
    seconds = (current.deadline - now()).total_seconds()
    if seconds <= 0:
        return None
    try:
        return pause_flow_run(
            wait_for_input=_form(current),
            key=key,
            timeout=math.ceil(seconds),
            poll_interval=max(1, round(settings.signoff_poll_seconds)),
        )
    except FlowPauseTimeout:
        # Prefect fails a pause that times out; the policy decides instead, so the run goes on running.
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(current.request.flow_run_id, Running(message="sign-off timed out"), force=True)
        return None


@task(name="settle-signoff", cache_policy=NO_CACHE)
def settle(model: ModelVersion, current: Tally, *, registry: Registry) -> ModelVersion:
    """Approve or reject the model as the sign-off ended (a re-run finds it already done)."""
    target = State.APPROVED if current.outcome == "approved" else State.REJECTED
    latest = registry.get(model.id)
    if latest.state is target:
        return latest
    settled = registry.transition(model.id, target, actor=SIGNOFF_ACTOR)
    emit_event(
        event="steward.approval.decided",
        resource=_resource(model.ref),
        payload={"outcome": current.outcome, "approvers": list(current.progress.granted), "state": target.value},
    )
    return settled


def _reread(current: Tally, *, ledger: Ledger) -> Tally:
    """The sign-off as the ledger now has it (the ledger, not memory, is the record)."""
    records = ledger.records(subject=current.request.model, since_seq=current.request_seq - 1)
    return tally(records, subject=current.request.model, flow_run_id=current.request.flow_run_id) or current


def sign_off(
    model: ModelVersion,
    *,
    governance: GovernanceParams,
    author: str,
    settings: Settings,
    registry: Registry,
    ledger: Ledger,
) -> ModelVersion:
    """Wait for the tier's approvers; every answer, refusal and timeout goes to the ledger first."""
    logger = get_run_logger()
    if why := unsatisfiable(governance, author=author):
        raise SignoffImpossible(why)
    run_id = str(flow_run.get_id())
    current = tally(ledger.records(subject=model.ref), subject=model.ref, flow_run_id=run_id)
    if current is None:
        current = request_signoff(model, governance=governance, author=author, settings=settings, ledger=ledger)
        logger.info("waiting for sign-off of %s: evidence %s", model.ref, current.request.evidence_page)
    while current.outcome is None:
        key = current.next_pause_key
        answer = _wait(current, settings=settings)
        if answer is None:
            record = record_timeout(current, ledger=ledger, pause_key=key)
        else:
            record = record_answer(answer, current, governance=governance, ledger=ledger, pause_key=key)
        logger.info(
            "sign-off of %s: %s by %s %s", model.ref, record.action, record.actor, record.payload.get("reason", "")
        )
        if record.action == "approval.escalated":
            emit_event(event="steward.approval.escalated", resource=_resource(model.ref), payload=record.payload)
        current = _reread(current, ledger=ledger)
    return settle(model, current, registry=registry)


@flow(name="signoff-deadlines")
def signoff_deadlines_flow() -> list[str]:
    """Escalate or expire suspended sign-offs past their deadline (schedule it, e.g. every 15 minutes)."""
    from steward.db import make_engine
    from tasks.approvals import enforce_deadlines

    settings = Settings()
    engine = make_engine(settings.db_url)
    ledger = Ledger(engine)
    records = enforce_deadlines(ledger=ledger, registry=Registry(engine, ledger=ledger), at=now())
    for record in records:
        get_run_logger().info("%s: %s %s", record.subject, record.action, record.payload.get("reason", ""))
    return [f"{r.subject} {r.action}" for r in records]

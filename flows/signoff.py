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
from prefect.input.actions import read_flow_run_input
from prefect.input.run_input import keyset_from_base_key
from prefect.runtime import deployment, flow_run
from prefect.states import Running

from steward.errors import StewardError
from steward.layout import EVIDENCE_PAGE
from steward.ledger import APPROVAL_ESCALATED, APPROVAL_REQUESTED, Ledger
from steward.params import GovernanceParams
from steward.registry import ModelVersion, Registry, State
from steward.settings import Settings
from steward.signoff import Request, Tally, latest, now, open_sign_offs
from steward.storage import Storage
from tasks import evidence
from tasks.signoff import (
    SIGNOFF_ACTOR,
    Approval,
    record_answer,
    record_timeout,
    record_withdrawn,
    resource,
    unsatisfiable,
)

FORM = """### Sign-off: {model} ({tier} risk tier)

The gate passed. Review the evidence, then answer.

- **Evidence report:** [{page}](file://{page})
- **Evidence digest:** `{digest}` (copy it into the form to attest you reviewed this evidence; another is refused)
- **Author (may not approve):** {author}
- **Needed:** {needed}
- **So far:** {progress}
- **Waiting until:** {deadline} (then: {on_timeout})
"""


SUPERSEDED = "superseded: the project changed while the run waited, and it now trained {model}"


class SignoffImpossible(StewardError, ValueError):
    """The configured approvers can never complete this tier's sign-off."""


@task(name="request-signoff", cache_policy=NO_CACHE)
def request_signoff(
    model: ModelVersion, *, governance: GovernanceParams, author: str, settings: Settings, ledger: Ledger, demo: bool
) -> Tally:
    """Freeze the evidence, lay it out for reviewers, record the request and emit `steward.approval.requested`."""
    storage = Storage.from_settings(settings)
    snap = evidence.snapshot(settings.project_dir, storage=storage)
    folder = settings.state_dir / "evidence" / f"{model.name}-v{model.version}-{snap.short}"
    if not (folder / EVIDENCE_PAGE).is_file():
        evidence.materialize(snap, folder, storage=storage)
    request = Request(
        model=model.ref,
        flow_run_id=str(flow_run.get_id()),
        author=author,
        tier=governance.risk_tier,
        policy=governance.signoff_policy,
        evidence_digest=snap.digest,
        evidence_page=str(folder / EVIDENCE_PAGE),
        requested_at=now(),
        demo=demo,
    )
    record = ledger.append(actor=author, action=APPROVAL_REQUESTED, subject=model.ref, payload=request.payload())
    emit_event(
        event="steward.approval.requested",
        resource=resource(model.ref),
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
    return Approval.with_initial_data(description=description)


def _wait(current: Tally, *, settings: Settings) -> Approval | None:
    """One pause (or suspension) for one answer; None when the waiting period ran out first."""
    key = current.next_pause_key
    if deployment.get_id():  # no process waits: the run is rescheduled when someone answers
        return suspend_flow_run(wait_for_input=_form(current), key=key, timeout=None)
    seconds = max(1, math.ceil((current.deadline - now()).total_seconds()))
    poll = max(1, round(settings.signoff_poll_seconds))
    try:
        return pause_flow_run(wait_for_input=_form(current), key=key, timeout=seconds, poll_interval=poll)
    except FlowPauseTimeout:
        # Prefect fails a pause that times out; the policy decides instead, so the run goes on running,
        # and an answer that arrived after the last poll still counts.
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(current.request.flow_run_id, Running(message="sign-off timed out"), force=True)
        late = read_flow_run_input(keyset_from_base_key(f"paused-{key}")["response"])
        return Approval.model_validate(late) if late else None


@task(name="settle-signoff", cache_policy=NO_CACHE)
def settle(model: ModelVersion, current: Tally, *, registry: Registry) -> ModelVersion:
    """Approve or reject the model as the sign-off ended; changes requested leave it a candidate for the
    next run to submit again. A re-run finds it already done."""
    target = {"approved": State.APPROVED, "changes_requested": State.CANDIDATE}.get(
        current.outcome or "", State.REJECTED
    )
    latest_state = registry.get(model.id)
    if latest_state.state is not target:
        latest_state = registry.transition(model.id, target, actor=SIGNOFF_ACTOR)
    emit_event(
        event="steward.approval.decided",
        resource=resource(model.ref),
        payload={"outcome": current.outcome, "approvers": list(current.progress.granted), "state": target.value},
    )
    return latest_state


def _reread(current: Tally, *, ledger: Ledger) -> Tally:
    """The sign-off as the ledger now has it (the ledger, not memory, is the record)."""
    records = ledger.records(subject=current.request.model, since_seq=current.request_seq - 1)
    return latest(records, model=current.request.model, flow_run_id=current.request.flow_run_id) or current


def sign_off(
    model: ModelVersion,
    *,
    governance: GovernanceParams,
    author: str,
    settings: Settings,
    registry: Registry,
    ledger: Ledger,
    demo: bool = False,
) -> ModelVersion:
    """Wait for the tier's approvers; every answer, refusal and timeout goes to the ledger first."""
    logger = get_run_logger()
    if why := unsatisfiable(governance, author=author, demo=demo):
        raise SignoffImpossible(why)
    run_id = str(flow_run.get_id())
    records = ledger.records()
    for stale in open_sign_offs(records, flow_run_id=run_id):
        if stale.request.model != model.ref:  # resumed after the project changed: it trained another model
            record_withdrawn(stale, ledger=ledger, reason=SUPERSEDED.format(model=model.ref))
    current = latest(records, model=model.ref, flow_run_id=run_id)
    if current is None:
        current = request_signoff(
            model, governance=governance, author=author, settings=settings, ledger=ledger, demo=demo
        )
        logger.info("waiting for sign-off of %s: evidence %s", model.ref, current.request.evidence_page)
    while current.outcome is None:
        if now() >= current.deadline:  # e.g. a suspended run answered after its deadline
            record = record_timeout(current, ledger=ledger, pause_key=None)
        else:
            key = current.next_pause_key
            answer = _wait(current, settings=settings)
            if answer is None:
                record = record_timeout(current, ledger=ledger, pause_key=key)
            else:
                record = record_answer(answer, current, governance=governance, ledger=ledger, pause_key=key)
        logger.info(
            "sign-off of %s: %s by %s %s", model.ref, record.action, record.actor, record.payload.get("reason", "")
        )
        if record.action == APPROVAL_ESCALATED:
            emit_event(event="steward.approval.escalated", resource=resource(model.ref), payload=record.payload)
        current = _reread(current, ledger=ledger)
    return settle(model, current, registry=registry)


@flow(name="signoff-sweep")
def signoff_sweep_flow() -> list[str]:
    """Escalate or expire suspended sign-offs past their deadline, and withdraw those whose run ended
    (schedule it, e.g. every 15 minutes: nothing else watches a suspended run)."""
    from steward.db import make_engine
    from tasks.approvals import sweep

    settings = Settings()
    engine = make_engine(settings.db_url)
    ledger = Ledger(engine)
    records = sweep(ledger=ledger, registry=Registry(engine, ledger=ledger), at=now())
    for record in records:
        get_run_logger().info("%s: %s %s", record.subject, record.action, record.payload.get("reason", ""))
    return [f"{r.subject} {r.action}" for r in records]

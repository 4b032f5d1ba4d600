"""The sign-off step of the training flow: pause for approvers, record every answer, settle the registry.

Run by hand (`steward train`) the flow pauses in place and polls Prefect for an answer; run from a
deployment it suspends instead, so no process waits for days, and starts again from the top when
resumed (the pipeline stages are DVC no-ops then, and every sign-off fact is read back from the ledger).
"""

from __future__ import annotations

import math

from prefect import flow, get_client, get_run_logger, pause_flow_run, suspend_flow_run
from prefect.events import emit_event
from prefect.exceptions import FlowPauseTimeout
from prefect.input.actions import read_flow_run_input
from prefect.input.run_input import keyset_from_base_key
from prefect.runtime import deployment, flow_run
from prefect.states import Running

from steward.anchor import anchored
from steward.governance import GovernanceParams
from steward.ledger import APPROVAL_ESCALATED, Ledger
from steward.policy_in_force import GovernanceError, governing
from steward.registry import ModelVersion, Registry
from steward.settings import Settings
from steward.signoff import SIGNOFF_ACTIONS, Tally, latest, now, open_sign_offs
from steward.usecase import UseCase
from tasks.signoff.evidence_artifact import evidence_url, publish_evidence
from tasks.signoff.policy import Approval, SignoffImpossible, resource, unsatisfiable
from tasks.signoff.record import record_answer, record_timeout, record_withdrawn, request_signoff, settle

FORM = """### Sign-off: {model} ({tier} risk tier)

The gate passed. Review the evidence, then answer.

- **Evidence report:** [{link}]({link})
- **Evidence digest:** `{digest}` (copy it into the form to attest you reviewed this evidence; another is refused)
- **Author (may not approve):** {author}
- **Needed:** {needed}
- **So far:** {progress}
- **Waiting until:** {deadline} (then: {on_timeout})
"""


SUPERSEDED = "superseded: the project changed while the run waited, and it now trained {model}"


def _form(current: Tally) -> type[Approval]:
    request, policy = current.request, current.request.policy
    needed = f"{policy.approvers} distinct approver(s)" + (
        f" covering {', '.join(policy.roles)}" if policy.roles else ""
    )
    description = FORM.format(
        model=request.model,
        tier=request.tier,
        link=evidence_url(request),
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


def _reread(current: Tally, *, ledger: Ledger) -> Tally:
    """The sign-off as the ledger now has it (the ledger, not memory, is the record)."""
    records = ledger.records(subject=current.request.model, since_seq=current.request_seq - 1, actions=SIGNOFF_ACTIONS)
    return latest(records, model=current.request.model, flow_run_id=current.request.flow_run_id) or current


def sign_off(
    model: ModelVersion,
    *,
    run: GovernanceParams,
    usecase: UseCase,
    author: str,
    settings: Settings,
    registry: Registry,
    ledger: Ledger,
    demo: bool = False,
) -> ModelVersion:
    """Wait for the approvers the policy in force names for the tier `run` (the run's own params.yaml section)
    asks for; every answer, refusal and timeout goes to the ledger first."""
    logger = get_run_logger()
    try:
        governance, digest = governing(ledger.engine, run, usecase=usecase.name, declared=usecase.risk_tier, demo=demo)
    except GovernanceError as exc:
        raise SignoffImpossible(str(exc)) from None
    if why := unsatisfiable(governance, author=author, demo=demo):
        raise SignoffImpossible(why)
    run_id = str(flow_run.get_id())
    records = ledger.records(actions=SIGNOFF_ACTIONS)  # the action index: never the whole table
    for stale in open_sign_offs(records, flow_run_id=run_id):
        if stale.request.model != model.ref:  # resumed after the project changed: it trained another model
            record_withdrawn(stale, ledger=ledger, reason=SUPERSEDED.format(model=model.ref))
    current = latest(records, model=model.ref, flow_run_id=run_id)
    if current is None:
        current = request_signoff(
            model,
            governance=governance,
            policy_digest=digest,
            author=author,
            settings=settings,
            ledger=ledger,
            demo=demo,
        )
        link = publish_evidence(current.request)
        logger.info("waiting for sign-off of %s: evidence %s", model.ref, link)
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
    from tasks.signoff.approvals import sweep

    settings = Settings()
    engine = make_engine(settings.db_url)
    ledger = anchored(engine, settings)
    records = sweep(ledger=ledger, registry=Registry(engine, ledger=ledger), at=now())
    for record in records:
        get_run_logger().info("%s: %s %s", record.subject, record.action, record.payload.get("reason", ""))
    return [f"{r.subject} {r.action}" for r in records]

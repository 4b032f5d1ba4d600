"""What a waiting sign-off records, each a Prefect task the sign-off flow calls: the request with its frozen
evidence, every answer (refused with the rule it broke, granted or declined), a timeout (escalated or
expired), a withdrawal, and the registry state the sign-off settles on. The ledger is written first.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.runtime import flow_run

from steward.governance import GovernanceParams
from steward.governance import policy_digest as digest_of
from steward.layout import EVIDENCE_PAGE
from steward.ledger import (
    APPROVAL_DECLINED,
    APPROVAL_ESCALATED,
    APPROVAL_EXPIRED,
    APPROVAL_GRANTED,
    APPROVAL_REFUSED,
    APPROVAL_REQUESTED,
    APPROVAL_WITHDRAWN,
    Ledger,
    Record,
)
from steward.registry import ModelVersion, Registry, State
from steward.settings import Settings
from steward.signoff import OPENING, Request, Tally, now, parse_token
from steward.storage import Storage
from tasks.document import evidence
from tasks.signoff.keys import opening_key, pinned_keys
from tasks.signoff.policy import SIGNOFF_ACTOR, Approval, refusal, resource, signed_by


@task(name="request-signoff", cache_policy=NO_CACHE)
def request_signoff(
    model: ModelVersion,
    *,
    governance: GovernanceParams,
    author: str,
    settings: Settings,
    ledger: Ledger,
    demo: bool,
    policy_digest: str | None = None,
) -> Tally:
    """Freeze the evidence, lay it out for reviewers, record the request and emit `steward.approval.requested`.
    `policy_digest`: the digest of the policy in force `governance` was drawn from (default: its own)."""
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
        requested_at=now().replace(microsecond=0),
        demo=demo,
        keys=pinned_keys(governance, settings, demo=demo),
        policy_digest=policy_digest or digest_of(governance),
    )
    opener = opening_key(settings)
    request = replace(
        request, author_key=opener.public.openssh, author_signature=opener.sign(OPENING, request.opening())
    )
    record = ledger.append(actor=author, action=APPROVAL_REQUESTED, subject=model.ref, payload=request.payload())
    emit_event(
        event="steward.approval.requested",
        resource=resource(model.ref),
        payload={"flow_run_id": request.flow_run_id, "tier": request.tier, "evidence_digest": snap.digest},
    )
    return Tally(request=request, request_seq=record.seq)


def _answer_payload(answer: Approval, request: Request, *, pause_key: str) -> dict[str, Any]:
    return {
        "flow_run_id": request.flow_run_id,
        "pause_key": pause_key,
        "decision": answer.decision,
        "approver": answer.approver,
        "comment": answer.comment,
        "evidence_digest": answer.evidence_digest,
        "signature": answer.signature,
    }


@task(name="record-answer", cache_policy=NO_CACHE)
def record_answer(
    answer: Approval, current: Tally, *, governance: GovernanceParams, ledger: Ledger, pause_key: str
) -> Record:
    """Write an answer to the ledger: refused (with the rule it broke), granted, or declined."""
    payload = _answer_payload(answer, current.request, pause_key=pause_key)
    reason = refusal(answer, request=current.request, governance=governance, progress=current.progress)
    if reason is not None:
        return ledger.append(
            actor=answer.approver,
            action=APPROVAL_REFUSED,
            subject=current.request.model,
            payload={**payload, "reason": reason},
        )
    approver = governance.approvers[answer.approver]
    signed_at, signature = parse_token(answer.signature)
    payload |= {
        "roles": approver.roles,
        "approver_kind": "demo" if approver.demo else "human",
        "signed_at": signed_at,
        "signature": signature,
        "key": signed_by(answer, request=current.request),
    }
    if answer.decision == "approve":
        return ledger.append(
            actor=answer.approver, action=APPROVAL_GRANTED, subject=current.request.model, payload=payload
        )
    return ledger.append(
        actor=answer.approver, action=APPROVAL_DECLINED, subject=current.request.model, payload=payload
    )


@task(name="record-timeout", cache_policy=NO_CACHE)
def record_timeout(current: Tally, *, ledger: Ledger, pause_key: str | None) -> Record:
    """A waiting period ran out: escalate and keep waiting, or reject, as the tier's policy says."""
    policy = current.request.policy
    payload: dict[str, Any] = {
        "flow_run_id": current.request.flow_run_id,
        "deadline": current.deadline.isoformat(),
        "progress": current.progress.summary(policy),
    }
    if pause_key is not None:
        payload["pause_key"] = pause_key
    if policy.on_timeout == "escalate":
        escalated = current.escalations + 1
        payload |= {
            "escalation": escalated,
            "next_deadline": current.request.deadline(escalations=escalated).isoformat(),
        }
        return ledger.append(
            actor=SIGNOFF_ACTOR, action=APPROVAL_ESCALATED, subject=current.request.model, payload=payload
        )
    reason = f"no complete sign-off within {policy.timeout_hours:g} h ({current.progress.summary(policy)})"
    return ledger.append(
        actor=SIGNOFF_ACTOR,
        action=APPROVAL_EXPIRED,
        subject=current.request.model,
        payload={**payload, "reason": reason},
    )


@task(name="record-withdrawn", cache_policy=NO_CACHE)
def record_withdrawn(current: Tally, *, ledger: Ledger, reason: str) -> Record:
    """Close a sign-off whose run ended, or moved on, without a decision."""
    payload = {"flow_run_id": current.request.flow_run_id, "reason": reason}
    return ledger.append(actor=SIGNOFF_ACTOR, action=APPROVAL_WITHDRAWN, subject=current.request.model, payload=payload)


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

"""Sign-off: what an approver answers, and the policy that decides whether an answer counts.

The training flow pauses with `Approval` as its input form (Prefect UI, `steward approve`, `steward reject`).
An answer counts only if its approver is configured (params.yaml `governance.approvers`), is not the run's
author when approving (separation of duties), has not approved this run already, holds a role the tier
asks for, and names the digest of the evidence this sign-off is about. Anything else is refused with a
message saying which rule it broke, and the run keeps waiting.

The sign-off is complete when the tier's number of distinct approvers have approved and their roles cover
the tier's roles; one valid `reject` or `request_changes` ends it with the model rejected.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.input import RunInput
from pydantic import Field

from steward.ledger import (
    APPROVAL_DECLINED,
    APPROVAL_ESCALATED,
    APPROVAL_EXPIRED,
    APPROVAL_GRANTED,
    APPROVAL_REFUSED,
    APPROVAL_WITHDRAWN,
    Ledger,
    Record,
)
from steward.params import GovernanceParams
from steward.signoff import Progress, Request, Tally

Decision = Literal["approve", "reject", "request_changes"]
SIGNOFF_ACTOR = "steward-signoff"  # the ledger's actor for what the sign-off step itself records

UNKNOWN_APPROVER = "{name!r} is not an approver (params.yaml governance.approvers: {known})"
SELF_APPROVAL = "{name} started this run and may not approve it (separation of duties)"
ALREADY_APPROVED = "{name} has already approved this run; the tier needs {count} distinct approvers"
WRONG_ROLE = "{name} holds {held}; this {tier}-tier sign-off needs an approver from {needed}"
STALE_EVIDENCE = (
    "evidence digest {given} is not the evidence of this sign-off ({current}): "
    "review the current evidence ({page}) and answer with its digest"
)
DEMO_ONLY = "{name} is a demo identity: it answers only the demo sign-offs `steward run` opens"
NO_REASON = "a {decision} needs a reason (the comment) for the ledger and the run's author"
UNSATISFIABLE = (
    "the {tier}-tier sign-off can never complete: it needs {count} distinct approvers other than the run's "
    "author {author!r}{roles}, and params.yaml governance.approvers names {eligible} (demo identities count only "
    "for `steward run`)"
)


class Approval(RunInput):
    """An approver's answer to a paused sign-off."""

    decision: Decision = Field(description="approve, reject, or request_changes (the model is then not approved)")
    approver: str = Field(description="Your name as configured in params.yaml governance.approvers")
    comment: str = Field(default="", description="Why; required to reject or request changes")
    evidence_digest: str = Field(description="sha256 of the evidence you reviewed (shown with the request)")


def refusal(answer: Approval, *, request: Request, governance: GovernanceParams, progress: Progress) -> str | None:
    """Why `answer` does not count for `request`, or None when it does."""
    approver = governance.approvers.get(answer.approver)
    if approver is None:
        known = ", ".join(sorted(governance.approvers)) or "none configured"
        return UNKNOWN_APPROVER.format(name=answer.approver, known=known)
    if approver.demo and not request.demo:
        return DEMO_ONLY.format(name=answer.approver)
    if answer.evidence_digest != request.evidence_digest:
        return STALE_EVIDENCE.format(
            given=answer.evidence_digest[:12] or "(none)",
            current=request.evidence_digest[:12],
            page=request.evidence_page,
        )
    if answer.decision != "approve":
        if not answer.comment.strip():
            return NO_REASON.format(decision=answer.decision.replace("_", " "))
        return None
    if answer.approver == request.author:
        return SELF_APPROVAL.format(name=answer.approver)
    if answer.approver in progress.granted:
        return ALREADY_APPROVED.format(name=answer.approver, count=request.policy.approvers)
    if request.policy.roles and not set(approver.roles) & set(request.policy.roles):
        return WRONG_ROLE.format(
            name=answer.approver,
            held=", ".join(approver.roles),
            tier=request.tier,
            needed=", ".join(request.policy.roles),
        )
    return None


def unsatisfiable(governance: GovernanceParams, *, author: str, demo: bool = False) -> str | None:
    """Why the active tier's sign-off could never complete with the configured approvers, or None."""
    policy = governance.signoff_policy
    # who may approve: not the author, a demo identity only in a demo run, and (as `refusal` insists) holding
    # one of the tier's roles when it names any
    eligible = {
        name: a
        for name, a in governance.approvers.items()
        if name != author and (demo or not a.demo) and (not policy.roles or set(a.roles) & set(policy.roles))
    }
    held = {role for a in eligible.values() for role in a.roles}
    if len(eligible) >= policy.approvers and set(policy.roles) <= held:
        return None
    roles = f" covering {', '.join(policy.roles)}" if policy.roles else ""
    return UNSATISFIABLE.format(
        tier=governance.risk_tier,
        count=policy.approvers,
        author=author,
        roles=roles,
        eligible=", ".join(sorted(eligible)) or "nobody else",
    )


# --- what the waiting run records (each a Prefect task the flow calls) -----------------------------------


def _answer_payload(answer: Approval, request: Request, *, pause_key: str) -> dict[str, Any]:
    return {
        "flow_run_id": request.flow_run_id,
        "pause_key": pause_key,
        "decision": answer.decision,
        "approver": answer.approver,
        "comment": answer.comment,
        "evidence_digest": answer.evidence_digest,
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
    payload |= {"roles": approver.roles, "approver_kind": "demo" if approver.demo else "human"}
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


def resource(model: str) -> dict[str, str]:
    """The Prefect event resource of a model version."""
    return {"prefect.resource.id": f"steward.model.{model}", "prefect.resource.name": model}

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

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
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
    APPROVAL_REQUESTED,
    Ledger,
    Record,
)
from steward.params import Approver, GovernanceParams, SignoffPolicy

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
NO_REASON = "a {decision} needs a reason (the comment) for the ledger and the run's author"
UNSATISFIABLE = (
    "the {tier}-tier sign-off can never complete: it needs {count} distinct approvers other than the run's "
    "author {author!r}{roles}, and params.yaml governance.approvers names {eligible}"
)


class Approval(RunInput):
    """An approver's answer to a paused sign-off."""

    decision: Decision = Field(description="approve, reject, or request_changes (the model is then not approved)")
    approver: str = Field(description="Your name as configured in params.yaml governance.approvers")
    comment: str = Field(default="", description="Why; required to reject or request changes")
    evidence_digest: str = Field(description="sha256 of the evidence you reviewed (shown with the request)")


@dataclass(frozen=True)
class Request:
    """One sign-off the flow is waiting for, as recorded in the ledger's `approval.requested` payload."""

    model: str
    flow_run_id: str
    author: str
    tier: str
    policy: SignoffPolicy
    evidence_digest: str
    evidence_page: str
    requested_at: datetime

    def payload(self) -> dict[str, Any]:
        return {
            "flow_run_id": self.flow_run_id,
            "author": self.author,
            "tier": self.tier,
            "policy": self.policy.model_dump(),
            "evidence_digest": self.evidence_digest,
            "evidence_page": self.evidence_page,
            "requested_at": self.requested_at.isoformat(),
        }

    @classmethod
    def from_payload(cls, model: str, payload: dict[str, Any]) -> Request:
        return cls(
            model=model,
            flow_run_id=payload["flow_run_id"],
            author=payload["author"],
            tier=payload["tier"],
            policy=SignoffPolicy.model_validate(payload["policy"]),
            evidence_digest=payload["evidence_digest"],
            evidence_page=payload["evidence_page"],
            requested_at=datetime.fromisoformat(payload["requested_at"]),
        )

    @property
    def timeout(self) -> timedelta:
        return timedelta(hours=self.policy.timeout_hours)


@dataclass(frozen=True)
class Progress:
    """The approvals a sign-off has gathered so far."""

    granted: tuple[str, ...] = ()
    roles: frozenset[str] = field(default_factory=frozenset)

    def add(self, name: str, approver: Approver) -> Progress:
        return Progress((*self.granted, name), self.roles | set(approver.roles))

    def missing_roles(self, policy: SignoffPolicy) -> list[str]:
        return [role for role in policy.roles if role not in self.roles]

    def complete(self, policy: SignoffPolicy) -> bool:
        return len(self.granted) >= policy.approvers and not self.missing_roles(policy)

    def summary(self, policy: SignoffPolicy) -> str:
        text = f"{len(self.granted)} of {policy.approvers} approvals"
        if missing := self.missing_roles(policy):
            text += f"; still needed from: {', '.join(missing)}"
        return text


def refusal(answer: Approval, *, request: Request, governance: GovernanceParams, progress: Progress) -> str | None:
    """Why `answer` does not count for `request`, or None when it does."""
    approver = governance.approvers.get(answer.approver)
    if approver is None:
        known = ", ".join(sorted(governance.approvers)) or "none configured"
        return UNKNOWN_APPROVER.format(name=answer.approver, known=known)
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


def unsatisfiable(governance: GovernanceParams, *, author: str) -> str | None:
    """Why the active tier's sign-off could never complete with the configured approvers, or None."""
    policy = governance.policy.signoff
    eligible = {name: a for name, a in governance.approvers.items() if name != author}
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


@dataclass(frozen=True)
class Tally:
    """Where one sign-off stands, read back from the ledger records written after its request.

    A waiting run derives everything from here (never from memory), so a run suspended from a deployment,
    which starts again from the top when resumed, picks up exactly where it was.
    """

    request: Request
    request_seq: int
    progress: Progress = Progress()
    escalations: int = 0
    pauses_used: int = 0  # pauses that ended (answered or timed out): the next pause needs a fresh key
    outcome: Literal["approved", "declined", "expired"] | None = None

    @property
    def next_pause_key(self) -> str:
        return f"signoff-{self.request_seq}-{self.pauses_used + 1}"

    @property
    def deadline(self) -> datetime:
        return deadline(self.request, escalations=self.escalations)


def open_requests(records: list[Record], *, flow_run_id: str | None = None) -> list[Tally]:
    """Every sign-off in `records` (ledger order) that has not ended, optionally of one flow run."""
    tallies: dict[str, Tally] = {}
    for record in records:
        if record.action == APPROVAL_REQUESTED:
            tallies[record.subject] = Tally(Request.from_payload(record.subject, record.payload), record.seq)
        elif record.subject in tallies:
            tallies[record.subject] = _step(tallies[record.subject], record)
    return [
        t
        for t in tallies.values()
        if t.outcome is None and (flow_run_id is None or t.request.flow_run_id == flow_run_id)
    ]


def tally(records: list[Record], *, subject: str, flow_run_id: str) -> Tally | None:
    """The latest sign-off of `subject` opened by `flow_run_id`, ended or not, or None."""
    found: Tally | None = None
    for record in records:
        if record.subject != subject:
            continue
        if record.action == APPROVAL_REQUESTED and record.payload.get("flow_run_id") == flow_run_id:
            found = Tally(Request.from_payload(subject, record.payload), record.seq)
        elif found is not None:
            found = _step(found, record)
    return found


def _step(t: Tally, record: Record) -> Tally:
    used = t.pauses_used + (1 if "pause_key" in record.payload else 0)
    if record.action == APPROVAL_GRANTED:
        approver = Approver(roles=record.payload["roles"])
        progress = t.progress.add(record.payload["approver"], approver)
        done = progress.complete(t.request.policy)
        return replace(t, progress=progress, pauses_used=used, outcome="approved" if done else None)
    if record.action == APPROVAL_DECLINED:
        return replace(t, pauses_used=used, outcome="declined")
    if record.action == APPROVAL_EXPIRED:
        return replace(t, pauses_used=used, outcome="expired")
    if record.action == APPROVAL_ESCALATED:
        return replace(t, pauses_used=used, escalations=t.escalations + 1)
    if record.action == APPROVAL_REFUSED:
        return replace(t, pauses_used=used)
    return t


def deadline(request: Request, *, escalations: int) -> datetime:
    """When the current waiting period ends: one timeout after the request, and one more per escalation."""
    return request.requested_at + request.timeout * (escalations + 1)


def now() -> datetime:
    return datetime.now(UTC)


# --- what the waiting run records (each a Prefect task the flow calls) -----------------------------------


def _answer_payload(answer: Approval, request: Request, *, pause_key: str | None) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "flow_run_id": request.flow_run_id,
        "decision": answer.decision,
        "approver": answer.approver,
        "comment": answer.comment,
        "evidence_digest": answer.evidence_digest,
    }
    return payload if pause_key is None else {**payload, "pause_key": pause_key}


@task(name="record-answer", cache_policy=NO_CACHE)
def record_answer(
    answer: Approval, current: Tally, *, governance: GovernanceParams, ledger: Ledger, pause_key: str | None
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
            "next_deadline": deadline(current.request, escalations=escalated).isoformat(),
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

"""Sign-off: what an approver answers, and the policy that decides whether an answer counts.

The training flow pauses with `Approval` as its input form (Prefect UI, `steward approve`, `steward reject`).
An answer counts only if its approver is configured (params.yaml `governance.approvers`), it is signed by a key
the sign-off pinned for that approver (over this model, run, policy, evidence digest, decision and comment,
after the sign-off opened: `steward.signoff.answer_statement`), neither the approver nor the signing key opened
the run when approving (separation of duties), neither has approved this run already, the approver holds a role
the tier asks for, and it names the digest of the evidence this sign-off is about. A name is only a label: what
counts is the key, so one person cannot approve twice under two names. Anything else is refused with a message
saying which rule it broke, and the run keeps waiting.

The sign-off is complete when the tier's number of distinct approvers have approved and their roles cover
the tier's roles; one valid `reject` or `request_changes` ends it with the model rejected.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from prefect.input import RunInput
from pydantic import Field

from steward.errors import StewardError
from steward.governance import GovernanceParams
from steward.keys import fingerprints
from steward.signoff import Progress, Request, answer_statement, now, parse_token, signer_of

Decision = Literal["approve", "reject", "request_changes"]
SIGNOFF_ACTOR = "steward-signoff"  # the ledger's actor for what the sign-off step itself records

UNKNOWN_APPROVER = "{name!r} is not an approver (params.yaml governance.approvers: {known})"
SELF_APPROVAL = "{name} started this run and may not approve it (separation of duties)"
SELF_KEY = "key {key} opened this run and may not approve it (separation of duties)"
ALREADY_APPROVED = "{name} has already approved this run; the tier needs {count} distinct approvers"
KEY_USED = "key {key} has already approved this run; the tier needs {count} distinct approvers' keys"
UNSIGNED = "an answer counts only signed by its approver's key: `steward approve` signs, `steward sign RUN` prints one"
BAD_SIGNATURE = (
    "the signature is not by a key registered to {name} ({keys}) over this answer "
    "(model, run, policy, evidence digest, decision and comment as given)"
)
SIGNED_OUTSIDE = (
    "signed at {signed_at}, outside this sign-off (opened {requested_at}, now {now}): sign this answer afresh"
)
CLOCK_SKEW = timedelta(minutes=5)
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


class SignoffImpossible(StewardError, ValueError):
    """The configured approvers can never complete this tier's sign-off."""


class Approval(RunInput):
    """An approver's answer to a paused sign-off."""

    decision: Decision = Field(description="approve, reject, or request_changes (the model is then not approved)")
    approver: str = Field(description="Your name as configured in params.yaml governance.approvers")
    comment: str = Field(default="", description="Why; required to reject or request changes")
    evidence_digest: str = Field(description="sha256 of the evidence you reviewed (shown with the request)")
    signature: str = Field(
        description="Your key's signature over this answer: `steward sign RUN --decision ... --evidence ...` prints it",
    )


def signed_by(answer: Approval, *, request: Request) -> str | None:
    """The fingerprint of the pinned key of `answer.approver` that signed `answer`, or None."""
    try:
        signed_at, signature = parse_token(answer.signature)
    except ValueError:
        return None
    statement = answer_statement(
        request,
        decision=answer.decision,
        comment=answer.comment,
        evidence_digest=answer.evidence_digest,
        signed_at=signed_at,
    )
    return signer_of(request, approver=answer.approver, statement=statement, signature=signature)


def refusal(
    answer: Approval,
    *,
    request: Request,
    governance: GovernanceParams,
    progress: Progress,
    at: datetime | None = None,
) -> str | None:
    """Why `answer` does not count for `request` (checked at `at`, default now), or None when it does."""
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
    if why := _signature_refusal(answer, request=request, at=at or now()):
        return why
    if answer.decision != "approve":
        if not answer.comment.strip():
            return NO_REASON.format(decision=answer.decision.replace("_", " "))
        return None
    key = signed_by(answer, request=request)
    if answer.approver == request.author:
        return SELF_APPROVAL.format(name=answer.approver)
    if key == request.author_fingerprint:
        return SELF_KEY.format(key=key)
    if answer.approver in progress.granted:
        return ALREADY_APPROVED.format(name=answer.approver, count=request.policy.approvers)
    if key in progress.keys:
        return KEY_USED.format(key=key, count=request.policy.approvers)
    if request.policy.roles and not set(approver.roles) & set(request.policy.roles):
        return WRONG_ROLE.format(
            name=answer.approver,
            held=", ".join(approver.roles),
            tier=request.tier,
            needed=", ".join(request.policy.roles),
        )
    return None


def _signature_refusal(answer: Approval, *, request: Request, at: datetime) -> str | None:
    if not answer.signature.strip():
        return UNSIGNED
    try:
        signed_at, _ = parse_token(answer.signature)
    except ValueError as exc:
        return str(exc)
    when = datetime.fromisoformat(signed_at)
    if when.tzinfo is None or not (request.requested_at - CLOCK_SKEW <= when <= at + CLOCK_SKEW):
        return SIGNED_OUTSIDE.format(
            signed_at=signed_at, requested_at=request.requested_at.isoformat(), now=at.isoformat(timespec="seconds")
        )
    if signed_by(answer, request=request) is None:
        keys = ", ".join(fingerprints(request.keys.get(answer.approver, []))) or "no key pinned"
        return BAD_SIGNATURE.format(name=answer.approver, keys=keys)
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


def resource(model: str) -> dict[str, str]:
    """The Prefect event resource of a model version."""
    return {"prefect.resource.id": f"steward.model.{model}", "prefect.resource.name": model}

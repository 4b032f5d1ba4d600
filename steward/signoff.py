"""Where a sign-off stands, read from the ledger: the one reading the flow, the approvers' tools, the
deadline sweep and the registry all share, so they cannot disagree.

A sign-off opens with an `approval.requested` record (its `Request`); every later record about the same
model *and the same flow run* moves it on, until one ends it: enough approvals (`approved`), a decline
(`rejected`, or `changes_requested` when the approver asked for changes), a deadline with
`on_timeout: reject` (`expired`), or its run ending without a decision (`withdrawn`). Records after the
end, and records of other runs about the same model, do not count.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from steward.governance import SignoffPolicy
from steward.keys import KeyFileError, PublicKey, readable
from steward.ledger import (
    APPROVAL_DECLINED,
    APPROVAL_ESCALATED,
    APPROVAL_EXPIRED,
    APPROVAL_GRANTED,
    APPROVAL_REFUSED,
    APPROVAL_REQUESTED,
    APPROVAL_WITHDRAWN,
    Record,
)

Outcome = Literal["approved", "rejected", "changes_requested", "expired", "withdrawn"]
ANSWER = "signoff-answer"  # the kind of statement an approver signs
OPENING = "signoff-opening"  # the kind of statement the author's key signs
# Every record a sign-off's tally reads: its readers ask the ledger for these (the action index), not for all.
SIGNOFF_ACTIONS = (
    APPROVAL_REQUESTED,
    APPROVAL_GRANTED,
    APPROVAL_DECLINED,
    APPROVAL_REFUSED,
    APPROVAL_ESCALATED,
    APPROVAL_EXPIRED,
    APPROVAL_WITHDRAWN,
)
NOT_A_TOKEN = "the signature is not `TIME SIGNATURE` as `steward sign` prints it"


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Request:
    """One sign-off a run asked for, as recorded in the ledger's `approval.requested` payload.

    `demo` marks the sign-offs `steward run` opens: only they accept the configured demo identities. `keys` pins
    each approver's public keys (OpenSSH lines) as they stood when the sign-off opened, and `policy_digest` the
    governance it was opened under, so every answer is verified later from the ledger alone. `author_key` is the
    public key (OpenSSH line) that opened it (signed: `author_signature`), which may not approve it.
    """

    model: str
    flow_run_id: str
    author: str
    tier: str
    policy: SignoffPolicy
    evidence_digest: str
    evidence_page: str
    requested_at: datetime
    demo: bool = False
    keys: dict[str, list[str]] = field(default_factory=dict)
    policy_digest: str = ""
    author_key: str = ""
    author_signature: str = ""

    @property
    def author_fingerprint(self) -> str:
        return PublicKey.from_text(self.author_key, source="the author's key").fingerprint if self.author_key else ""

    def opening(self) -> dict[str, Any]:
        """What the author's key signs when it opens this sign-off."""
        return {
            "model": self.model,
            "flow_run_id": self.flow_run_id,
            "evidence_digest": self.evidence_digest,
            "policy_digest": self.policy_digest,
            "requested_at": self.requested_at.isoformat(),
        }

    def payload(self) -> dict[str, Any]:
        return {
            "keys": self.keys,
            "policy_digest": self.policy_digest,
            "author_key": self.author_key,
            "author_signature": self.author_signature,
            "flow_run_id": self.flow_run_id,
            "author": self.author,
            "tier": self.tier,
            "policy": self.policy.model_dump(),
            "evidence_digest": self.evidence_digest,
            "evidence_page": self.evidence_page,
            "requested_at": self.requested_at.isoformat(),
            "demo": self.demo,
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
            demo=bool(payload.get("demo", False)),
            keys=payload.get("keys", {}),
            policy_digest=payload.get("policy_digest", ""),
            author_key=payload.get("author_key", ""),
            author_signature=payload.get("author_signature", ""),
        )

    def deadline(self, *, escalations: int) -> datetime:
        """When a waiting period ends: one timeout after the request, and one more per escalation."""
        return self.requested_at + timedelta(hours=self.policy.timeout_hours) * (escalations + 1)


@dataclass(frozen=True)
class Progress:
    """The approvals a sign-off has gathered so far: who, and which roles they cover."""

    granted: tuple[str, ...] = ()
    roles: frozenset[str] = field(default_factory=frozenset)
    keys: tuple[str, ...] = ()  # the fingerprints that signed the approvals

    def add(self, name: str, roles: list[str], key: str = "") -> Progress:
        return Progress((*self.granted, name), self.roles | set(roles), (*self.keys, key))

    def missing_roles(self, policy: SignoffPolicy) -> list[str]:
        return [role for role in policy.roles if role not in self.roles]

    def complete(self, policy: SignoffPolicy) -> bool:
        return len(self.granted) >= policy.approvers and not self.missing_roles(policy)

    def summary(self, policy: SignoffPolicy) -> str:
        text = f"{len(self.granted)} of {policy.approvers} approvals"
        if missing := self.missing_roles(policy):
            text += f"; still needed from: {', '.join(missing)}"
        return text


@dataclass(frozen=True)
class Tally:
    """One sign-off as the ledger has it. A waiting run derives everything from here, never from memory,
    so a run suspended from a deployment, which starts again from the top when resumed, picks up where it was.
    """

    request: Request
    request_seq: int
    progress: Progress = Progress()
    escalations: int = 0
    pauses_used: int = 0  # pauses that ended (answered or timed out): the next pause needs a fresh key
    outcome: Outcome | None = None

    @property
    def next_pause_key(self) -> str:
        return f"signoff-{self.request_seq}-{self.pauses_used + 1}"

    @property
    def deadline(self) -> datetime:
        return self.request.deadline(escalations=self.escalations)

    def step(self, record: Record) -> Tally:
        """This sign-off after `record` (records of other runs, or after the end, change nothing)."""
        if self.outcome is not None or record.payload.get("flow_run_id") != self.request.flow_run_id:
            return self
        used = self.pauses_used + (1 if "pause_key" in record.payload else 0)
        if record.action == APPROVAL_GRANTED:
            progress = self.progress.add(
                record.payload["approver"], record.payload["roles"], record.payload.get("key", "")
            )
            done = progress.complete(self.request.policy)
            return replace(self, progress=progress, pauses_used=used, outcome="approved" if done else None)
        if record.action == APPROVAL_DECLINED:
            outcome: Outcome = "changes_requested" if record.payload["decision"] == "request_changes" else "rejected"
            return replace(self, pauses_used=used, outcome=outcome)
        if record.action == APPROVAL_ESCALATED:
            return replace(self, pauses_used=used, escalations=self.escalations + 1)
        if record.action == APPROVAL_REFUSED:
            return replace(self, pauses_used=used)
        if record.action in (APPROVAL_EXPIRED, APPROVAL_WITHDRAWN):
            return replace(
                self, pauses_used=used, outcome="expired" if record.action == APPROVAL_EXPIRED else "withdrawn"
            )
        return self


def answer_statement(
    request: Request, *, decision: str, comment: str, evidence_digest: str, signed_at: str
) -> dict[str, Any]:
    """What an approver signs: this sign-off (model, run, the policy it runs under), the evidence they reviewed,
    their decision and its reason, and when. Another run, model, digest or policy makes another statement."""
    return {
        "model": request.model,
        "flow_run_id": request.flow_run_id,
        "policy_digest": request.policy_digest,
        "evidence_digest": evidence_digest,
        "decision": decision,
        "comment": comment,
        "signed_at": signed_at,
    }


def signature_token(signed_at: str, signature: str) -> str:
    """The text an approver pastes into the form's signature field."""
    return f"{signed_at} {signature}"


def parse_token(token: str) -> tuple[str, str]:
    """(signed_at, signature) of a token; ValueError naming the format otherwise."""
    parts = token.split()
    if len(parts) != 2:
        raise ValueError(NOT_A_TOKEN)
    try:
        datetime.fromisoformat(parts[0])
    except ValueError:
        raise ValueError(NOT_A_TOKEN) from None
    return parts[0], parts[1]


def signer_of(request: Request, *, approver: str, statement: dict[str, Any], signature: str) -> str | None:
    """The fingerprint of the key pinned for `approver` that signed `statement`, or None."""
    for key in readable(request.keys.get(approver, [])):
        if key.verifies(ANSWER, statement, signature):
            return key.fingerprint
    return None


@dataclass(frozen=True)
class Signature:
    """One signature in the sign-off records, checked offline: who signed what over which evidence, with which
    key (its fingerprint), and the `problem` when it does not verify (None when it does)."""

    seq: int
    action: str
    model: str
    signer: str
    fingerprint: str | None
    evidence_digest: str
    signed_at: str
    problem: str | None


def signatures(records: list[Record]) -> list[Signature]:
    """Every sign-off signature in `records`, each verified from the records alone: a request must be signed by
    its author's key, an answer (granted or declined) by a key its request pinned for that approver, over
    exactly what the record says was answered."""
    found: list[Signature] = []
    requests: dict[tuple[str, str], tuple[int, Request]] = {}
    for record in records:
        p = record.payload
        if record.action == APPROVAL_REQUESTED:
            request = Request.from_payload(record.subject, p)
            requests[(record.subject, request.flow_run_id)] = (record.seq, request)
            opened = _opened_by_author(request)
            found.append(
                Signature(
                    seq=record.seq,
                    action=record.action,
                    model=record.subject,
                    signer=request.author,
                    fingerprint=request.author_fingerprint if opened else None,
                    evidence_digest=request.evidence_digest,
                    signed_at=request.requested_at.isoformat(),
                    problem=None
                    if opened
                    else f"seq {record.seq}: {record.action} of {record.subject} is not signed by its author's key",
                )
            )
        elif record.action in (APPROVAL_GRANTED, APPROVAL_DECLINED):
            who = p.get("approver", "?")
            problem = None
            key = None
            pinned = requests.get((record.subject, p.get("flow_run_id", "")))
            if pinned is None:
                problem = f"seq {record.seq}: {record.action} by {who} answers no recorded request"
            else:
                seq, request = pinned
                statement = answer_statement(
                    request,
                    decision=p.get("decision", ""),
                    comment=p.get("comment", ""),
                    evidence_digest=p.get("evidence_digest", ""),
                    signed_at=p.get("signed_at", ""),
                )
                key = signer_of(request, approver=who, statement=statement, signature=p.get("signature", ""))
                if key is None or key != p.get("key"):
                    problem = (
                        f"seq {record.seq}: {record.action} by {who} is not signed by a key seq {seq} pinned for {who}"
                    )
                    key = None
            found.append(
                Signature(
                    seq=record.seq,
                    action=record.action,
                    model=record.subject,
                    signer=who,
                    fingerprint=key,
                    evidence_digest=str(p.get("evidence_digest", "")),
                    signed_at=str(p.get("signed_at", "")),
                    problem=problem,
                )
            )
    return found


def unverified(records: list[Record]) -> list[str]:
    """Every sign-off record whose signature does not verify, offline, from the records alone (`signatures`)."""
    return [s.problem for s in signatures(records) if s.problem]


def _opened_by_author(request: Request) -> bool:
    try:
        key = PublicKey.from_text(request.author_key, source="the author's key")
    except KeyFileError:
        return False
    return key.verifies(OPENING, request.opening(), request.author_signature)


def sign_offs(records: list[Record]) -> list[Tally]:
    """Every sign-off in `records` (ledger order), each moved on by the records after it."""
    tallies: dict[tuple[str, str], Tally] = {}
    for record in records:
        if record.action == APPROVAL_REQUESTED:
            request = Request.from_payload(record.subject, record.payload)
            tallies[(record.subject, request.flow_run_id)] = Tally(request, record.seq)
        elif (key := (record.subject, record.payload.get("flow_run_id", ""))) in tallies:
            tallies[key] = tallies[key].step(record)
    return sorted(tallies.values(), key=lambda t: t.request_seq)


def open_sign_offs(records: list[Record], *, flow_run_id: str | None = None) -> list[Tally]:
    """The sign-offs that have not ended, optionally of one flow run."""
    return [t for t in sign_offs(records) if t.outcome is None and flow_run_id in (None, t.request.flow_run_id)]


def latest(records: list[Record], *, model: str, flow_run_id: str | None = None) -> Tally | None:
    """The newest sign-off of `model` (of `flow_run_id`, if given), ended or not."""
    found = [t for t in sign_offs(records) if t.request.model == model and flow_run_id in (None, t.request.flow_run_id)]
    return found[-1] if found else None

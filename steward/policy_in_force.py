"""The governance policy in force: the signed copy of a policy (steward/governance.py) sign-offs run under.

A run never governs itself. params.yaml's `governance:` section is a proposal; what a sign-off runs under is
the policy in force: the newest `policy.adopted` ledger record, signed by an owner of the policy before it
(the first by an owner it names itself). Reading it re-verifies every adoption from the first, so a policy
written into the database without an owner's key, or a record edited after, stops every sign-off instead of
governing one. A run asks for a risk tier; it is refused below its use case's floor (the higher of what its
usecase.yaml declares and what the policy sets for it), and when the thresholds its gate ran with are
weaker than the policy's for that tier.

A demo home is a STEWARD_HOME whose policy in force was adopted as a demo policy (by `steward run`, signed
with the instance key): only there do demo identities answer, and a model they approved never reaches the
routing of a home whose policy is not a demo policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from pydantic import ValidationError
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from steward.errors import StewardError
from steward.governance import GovernanceParams, Tier, TierPolicy, policy_digest, rank
from steward.keys import KeyFileError, PublicKey, Signer, readable
from steward.ledger import APPROVAL_REQUESTED, POLICY_ADOPTED, Ledger, LedgerRow, Record

POLICY_STATEMENT: Final = "governance-policy"
POLICY_SUBJECT: Final = "governance"

NO_POLICY = (
    "no governance policy is in force in this STEWARD_HOME: a policy owner adopts one with "
    "`steward policy adopt --key OWNER_KEY` (params.yaml's governance section is only a proposal)"
)
DEMO_OUTSIDE_DEMO_HOME = (
    "demo identities answer only in a demo home (a STEWARD_HOME `steward run` set up); "
    "the policy in force here (ledger record {seq}) is not a demo policy"
)
DEMO_OVER_REAL = (
    "this STEWARD_HOME runs a real governance policy (ledger record {seq}): run the demo with another STEWARD_HOME"
)
TIER_BELOW_FLOOR = (
    "the run asks for risk tier {asked!r}, below its use case's floor {floor!r} "
    "({usecase}: usecase.yaml declares {declared!r}, the policy in force sets {set!r})"
)
WEAKER_GATE = (
    "the gate ran with thresholds weaker than the policy in force (ledger record {seq}) for tier {tier!r}: {fields}"
)
NOT_AN_OWNER = "ledger record {seq}: the policy is signed by {fingerprint}, not by an owner of the policy it replaces"
NO_OWNERS = "a governance policy needs at least one owner key (governance.owners) to be adopted"
BAD_POLICY_SIGNATURE = "ledger record {seq}: the policy's signature does not verify (edited, or signed over another)"
BAD_POLICY = "ledger record {seq}: not a governance policy: {error}"
DIGEST_MISMATCH = "ledger record {seq}: the adopted policy's digest is not the digest of its text (edited)"


class GovernanceError(StewardError, ValueError):
    """A policy that cannot be adopted or trusted, or a run it does not allow."""


@dataclass(frozen=True)
class PolicyInForce:
    """The policy a sign-off runs under, and the ledger record that adopted it."""

    governance: GovernanceParams
    digest: str
    seq: int
    signer: str  # the fingerprint of the owner key that adopted it
    demo: bool

    def floor(self, usecase: str, declared: Tier) -> Tier:
        """The lowest tier a run of `usecase` may ask for: what it declares, or what this policy sets, if higher."""
        set_here = self.governance.floors.get(usecase, self.governance.risk_tier)
        return max(declared, set_here, key=rank)

    def for_run(self, run: GovernanceParams, *, usecase: str, declared: Tier, demo: bool) -> GovernanceParams:
        """This policy at the tier `run` (a run's params.yaml section) asks for; refused below the use case's
        floor, with gate thresholds weaker than this policy's, or a demo sign-off outside a demo home."""
        if demo and not self.demo:
            raise GovernanceError(DEMO_OUTSIDE_DEMO_HOME.format(seq=self.seq))
        floor = self.floor(usecase, declared)
        if rank(run.risk_tier) < rank(floor):
            set_here = self.governance.floors.get(usecase, self.governance.risk_tier)
            raise GovernanceError(
                TIER_BELOW_FLOOR.format(
                    asked=run.risk_tier, floor=floor, usecase=usecase, declared=declared, set=set_here
                )
            )
        if weaker := weaker_fields(run.tiers[run.risk_tier], self.governance.tiers[run.risk_tier]):
            raise GovernanceError(WEAKER_GATE.format(seq=self.seq, tier=run.risk_tier, fields="; ".join(weaker)))
        return self.governance.model_copy(update={"risk_tier": run.risk_tier})


def weaker_fields(used: TierPolicy, required: TierPolicy) -> list[str]:
    """Each threshold `used` sets less strictly than `required` ("min_auc 0.6 < 0.7")."""
    found = [
        f"{name} {getattr(used, name)} < {getattr(required, name)}"
        for name in ("min_auc", "min_dp_ratio_lower")
        if getattr(used, name) < getattr(required, name)
    ]
    found += [
        f"{name} {getattr(used, name)} > {getattr(required, name)}"
        for name in ("max_eo_diff_upper", "max_robustness_flip_rate")
        if getattr(used, name) > getattr(required, name)
    ]
    if required.block_on_proxies and not used.block_on_proxies:
        found.append("block_on_proxies false, the policy blocks on proxies")
    return found


def statement(digest: str, *, previous: str | None, demo: bool) -> dict[str, Any]:
    """What a policy owner signs: the policy's digest, the digest it replaces, and whether it is a demo's."""
    return {"digest": digest, "previous": previous, "demo": demo}


def _accept(seq: int, payload: dict[str, Any], current: PolicyInForce | None) -> PolicyInForce:
    """The policy a `policy.adopted` record puts in force after `current`, if an owner of `current` (or, for
    the first, of itself) signed it; else GovernanceError naming the record."""
    try:
        governance = GovernanceParams.model_validate(payload.get("policy"))
        key = PublicKey.from_text(str(payload.get("key", "")), source=f"ledger record {seq}: key")
    except (ValidationError, KeyFileError) as exc:
        raise GovernanceError(BAD_POLICY.format(seq=seq, error=exc)) from None
    digest = policy_digest(governance)
    if digest != payload.get("digest"):
        raise GovernanceError(DIGEST_MISMATCH.format(seq=seq))
    owners = (current.governance if current else governance).owners
    if key.fingerprint not in {PublicKey.from_text(text).fingerprint for text in owners}:
        raise GovernanceError(NOT_AN_OWNER.format(seq=seq, fingerprint=key.fingerprint))
    demo = bool(payload.get("demo", False))
    fields = statement(digest, previous=current.digest if current else None, demo=demo)
    if not key.verifies(POLICY_STATEMENT, fields, str(payload.get("signature", ""))):
        raise GovernanceError(BAD_POLICY_SIGNATURE.format(seq=seq))
    return PolicyInForce(governance=governance, digest=digest, seq=seq, signer=key.fingerprint, demo=demo)


def in_force_within(session: Session) -> PolicyInForce | None:
    rows = session.scalars(select(LedgerRow).where(LedgerRow.action == POLICY_ADOPTED).order_by(LedgerRow.seq))
    current = None
    for row in rows:
        current = _accept(row.seq, Record._of(row).payload, current)
    return current


def in_force(engine: Engine) -> PolicyInForce | None:
    """The policy in force (None before the first adoption), every adoption re-verified from the first."""
    with Session(engine) as session:
        return in_force_within(session)


def adopt(
    engine: Engine,
    governance: GovernanceParams,
    key: Signer,
    *,
    actor: str,
    demo: bool = False,
    ledger: Ledger | None = None,
) -> PolicyInForce:
    """Put `governance` in force, signed by `key`: an owner of the policy in force (or, for the first policy,
    one of its own owners). A real policy never follows into a home whose policy is a demo's unless the
    demo's owner (the instance key) signs it; a demo policy never replaces a real one."""
    if not governance.owners:
        raise GovernanceError(NO_OWNERS)
    ledger = ledger or Ledger(engine)  # an anchored one (steward.anchor) checkpoints the adoption at once
    with Session(engine) as session, session.begin():
        ledger.lock(session)  # the policy read and the adoption after it are one step: no two owners interleave
        current = in_force_within(session)
        if demo and current is not None and not current.demo:
            raise GovernanceError(DEMO_OVER_REAL.format(seq=current.seq))
        owners = (current.governance if current else governance).owners
        if key.public.fingerprint not in {PublicKey.from_text(text).fingerprint for text in owners}:
            raise GovernanceError(NOT_AN_OWNER.format(seq="(new)", fingerprint=key.public.fingerprint))
        digest = policy_digest(governance)
        fields = statement(digest, previous=current.digest if current else None, demo=demo)
        payload = {
            "policy": governance.model_dump(mode="json", by_alias=True),
            "digest": digest,
            "previous": fields["previous"],
            "demo": demo,
            "key": key.public.openssh,
            "signature": key.sign(POLICY_STATEMENT, fields),
        }
        record = ledger.append(
            actor=actor, action=POLICY_ADOPTED, subject=POLICY_SUBJECT, payload=payload, session=session
        )
    return PolicyInForce(governance=governance, digest=digest, seq=record.seq, signer=key.public.fingerprint, demo=demo)


def governing(
    engine: Engine, run: GovernanceParams, *, usecase: str, declared: Tier, demo: bool
) -> tuple[GovernanceParams, str]:
    """The policy a run's sign-off follows, at the tier the run asks for, and the digest of the policy in force
    (what the sign-off records); GovernanceError when none is in force or the run asks for what it may not."""
    policy = in_force(engine)
    if policy is None:
        raise GovernanceError(NO_POLICY)
    return policy.for_run(run, usecase=usecase, declared=declared, demo=demo), policy.digest


def adopt_demo(
    engine: Engine, proposal: GovernanceParams, key: Signer, *, actor: str, ledger: Ledger | None = None
) -> PolicyInForce:
    """Make this home a demo home under `proposal` (its owner the instance `key`), or keep the demo policy in
    force if it is that already; refused where a real policy is in force."""
    governance = proposal.model_copy(update={"owners": [key.public.openssh]})
    current = in_force(engine)
    if current is not None and current.demo and current.digest == policy_digest(governance):
        return current
    return adopt(engine, governance, key, actor=actor, demo=True, ledger=ledger)


def policy_problems(records: list[Record]) -> list[str]:
    """What `steward ledger verify` says of the governance in `records` (policy adoptions and sign-off requests,
    in seq order): each adoption that does not verify, and each sign-off request not opened under the policy in
    force at its seq, or pinning a key that policy does not register for that approver (a request someone
    wrote into the database with keys of their own choosing). A demo identity's key, in a demo policy, is the
    demo home's own and not in the policy."""
    problems: list[str] = []
    current: PolicyInForce | None = None
    for record in records:
        if record.action == POLICY_ADOPTED:
            try:
                current = _accept(record.seq, record.payload, current)
            except GovernanceError as exc:
                problems.append(str(exc))
        elif record.action == APPROVAL_REQUESTED:
            problems += _request_problems(record, current)
    return problems


def _request_problems(record: Record, policy: PolicyInForce | None) -> list[str]:
    where = f"seq {record.seq}: the sign-off of {record.subject}"
    if policy is None:
        return [f"{where} was opened with no governance policy in force"]
    named = str(record.payload.get("policy_digest"))
    if named != policy.digest:
        return [f"{where} names policy {named[:16]}, not the one in force ({policy.digest[:16]}, seq {policy.seq})"]
    found = []
    for name, keys in dict(record.payload.get("keys") or {}).items():
        approver = policy.governance.approvers.get(name)
        if approver is None:
            found.append(f"{where} pins keys for {name}, who is no approver in the policy in force")
        elif not (approver.demo and policy.demo):
            registered = {PublicKey.from_text(text).fingerprint for text in approver.public_keys}
            pinned = {key.fingerprint for key in readable(list(keys))}
            if pinned - registered:
                found.append(f"{where} pins a key for {name} the policy in force does not register")
    return found

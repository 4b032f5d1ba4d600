"""The governance policy as a document: risk tiers and their gate thresholds, who signs off a model of each
tier, the approvers and their keys, the policy's owners and the use cases' tier floors.

params.yaml's `governance:` section is one, as a proposal: what a sign-off runs under is the signed copy in
force (steward/policy_in_force.py). This module reads no database, so the DVC stages that read params.yaml
depend on it alone.
"""

from __future__ import annotations

import hashlib
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from steward.canonical import canonical_json

Tier = Literal["minimal", "limited", "high"]
TIERS: Final[tuple[Tier, ...]] = ("minimal", "limited", "high")  # from least to most demanding


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Approver(_Section):
    """Someone who may answer a sign-off, and the roles they answer in."""

    roles: list[str] = Field(min_length=1)
    demo: bool = Field(
        default=False, description="A scripted identity (`steward run`'s demo approver), recorded as such."
    )
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    # `keys` in params.yaml; not the attribute's name, since a pydantic model with a `keys` attribute passes for
    # a mapping (dict(model) calls it), which Prefect does to every task argument
    public_keys: list[str] = Field(
        default=[],
        alias="keys",
        description="Public keys (`ssh-ed25519 AAAA...` lines): an answer counts only when signed by one of them. "
        "A demo identity has none here: its key lives in the demo's STEWARD_HOME.",
    )


class SignoffPolicy(_Section):
    """Who must approve a model of one risk tier before it is registered as approved, and by when."""

    approvers: int = Field(default=1, ge=1, le=10, description="Distinct approvers needed.")
    roles: list[str] = Field(default=[], description="Roles the approvers must cover between them.")
    timeout_hours: float = Field(default=72.0, gt=0, description="How long a sign-off waits before on_timeout.")
    on_timeout: Literal["escalate", "reject"] = Field(
        default="escalate",
        description="escalate: record it, emit steward.approval.escalated and keep waiting; reject: reject the model.",
    )


class TierPolicy(_Section):
    """Thresholds one risk tier applies to the audits' CI bounds."""

    min_auc: float = Field(default=0.65, ge=0, le=1)
    min_dp_ratio_lower: float = Field(ge=0, le=1, description="Lower CI bound of the demographic parity ratio.")
    max_eo_diff_upper: float = Field(ge=0, le=1, description="Upper CI bound of the equalized odds difference.")
    max_robustness_flip_rate: float = Field(default=0.1, ge=0, le=1)
    block_on_proxies: bool = False


class GovernanceParams(_Section):
    risk_tier: Tier = Field(
        default="high",
        description="The tier a run asks for; in the policy in force, the floor of use cases it does not name.",
    )
    tiers: dict[Tier, TierPolicy] = Field(
        default={
            "minimal": TierPolicy(min_auc=0.6, min_dp_ratio_lower=0.6, max_eo_diff_upper=0.3),
            "limited": TierPolicy(min_auc=0.65, min_dp_ratio_lower=0.7, max_eo_diff_upper=0.2),
            "high": TierPolicy(min_auc=0.7, min_dp_ratio_lower=0.8, max_eo_diff_upper=0.1),
        }
    )

    signoff: dict[Tier, SignoffPolicy] = Field(
        default={"minimal": SignoffPolicy(), "limited": SignoffPolicy(), "high": SignoffPolicy(approvers=2)},
        description="Who must approve a model of each tier, and by when (not a gate input: no DVC stage reads it).",
    )
    approvers: dict[str, Approver] = Field(
        default={}, description="Who may answer sign-offs (name → roles). The author of a run never approves it."
    )
    owners: list[str] = Field(
        default=[],
        description="Public keys of the policy's owners: only they adopt the policy that replaces this one.",
    )
    floors: dict[str, Tier] = Field(
        default={}, description="Use case name → the lowest tier its runs may ask for (default: risk_tier)."
    )
    decision_time_attributes: dict[str, dict[str, str]] = Field(
        default={},
        description="Use case name → the protected attributes its models may read when deciding, each with the "
        "reason the policy's owners accept (a ThresholdOptimizer mitigation needs one; nothing else may).",
    )

    @model_validator(mode="after")
    def _tier_defined(self) -> GovernanceParams:
        for section in ("tiers", "signoff"):
            if self.risk_tier not in getattr(self, section):
                raise ValueError(f"governance.risk_tier {self.risk_tier!r} has no entry in governance.{section}")
        _check_keys(self.approvers)
        from steward.keys import KeyFileError, PublicKey

        for i, text in enumerate(self.owners):
            try:
                PublicKey.from_text(text, source=f"governance.owners.{i}")
            except KeyFileError as exc:
                raise ValueError(str(exc)) from None
        for usecase, allowed in self.decision_time_attributes.items():
            for attribute, reason in allowed.items():
                if not reason.strip():
                    where = f"governance.decision_time_attributes.{usecase}.{attribute}"
                    raise ValueError(f"{where}: give the reason reading it at decision time is allowed")
        held = {role for approver in self.approvers.values() for role in approver.roles}
        for tier, policy in self.signoff.items():
            missing = sorted(set(policy.roles) - held)
            if missing:
                raise ValueError(f"governance.signoff.{tier}.roles: no approver holds {', '.join(missing)}")
        return self

    @property
    def signoff_policy(self) -> SignoffPolicy:
        return self.signoff[self.risk_tier]

    @property
    def policy(self) -> TierPolicy:
        return self.tiers[self.risk_tier]


def _check_keys(approvers: dict[str, Approver]) -> None:
    """Each person approves with keys of their own: a human approver has at least one, a demo identity none,
    and no key is registered under two names (one person would then count twice)."""
    from steward.keys import KeyFileError, PublicKey  # the cryptography import only where keys are configured

    owner: dict[str, str] = {}
    for name, approver in approvers.items():
        where = f"governance.approvers.{name}.keys"
        if approver.demo and approver.public_keys:
            raise ValueError(f"{where}: a demo identity's key lives in the demo's STEWARD_HOME, not here")
        if not approver.demo and not approver.public_keys:
            raise ValueError(f"{where}: a human approver needs a public key (an answer counts only signed by it)")
        for i, text in enumerate(approver.public_keys):
            try:
                fingerprint = PublicKey.from_text(text, source=f"{where}.{i}").fingerprint
            except KeyFileError as exc:
                raise ValueError(str(exc)) from None
            if owner.setdefault(fingerprint, name) != name:
                raise ValueError(f"{where}.{i}: key {fingerprint} is already {owner[fingerprint]}'s")


def policy_digest(governance: GovernanceParams) -> str:
    """sha256 of a policy's canonical JSON (tiers, sign-off rules, approvers and their keys, owners, floors)."""
    # a policy that allows no protected attribute at decision time digests as it did before the setting existed
    unset = set() if governance.decision_time_attributes else {"decision_time_attributes"}
    document = governance.model_dump(mode="json", by_alias=True, exclude=unset)
    return hashlib.sha256(canonical_json(document).encode()).hexdigest()


def rank(tier: Tier) -> int:
    """A tier's place from the least demanding (0) to the most."""
    return TIERS.index(tier)

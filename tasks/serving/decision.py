"""What the service decides: which model serves a person, and what a P(favourable) means as a decision.

Pure (no Bento, no database): /predict and /explain route through `assign` and decide through `decide`, so the
two endpoints, the counterfactual search and the reason codes cannot drift apart. The monitoring reference
(tasks/model/reference.py `approvals`) states the same rule vectorised, for whole test splits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, overload

from steward.routing import Routing
from tasks.serving.reasons import Decision as Verdict  # what the score says, the review band aside

# What the person is told. The codes are the same for every use case (the log, monitoring and the rollout
# analysis count `approve`): approve grants the use case's favourable outcome; its words say it in documents.
Decision = Literal["approve", "decline", "referred"]
Role = Literal["production", "canary"]  # who answers a request (the shadow never does)

REFERRED: Literal["referred"] = "referred"
REFUSING = "Steward is refusing decisions ({reason}); a person will handle requests until a model is restored"
NO_MODEL = "no production model is deployed"


@dataclass(frozen=True)
class Assignment:
    """The model that answers one person, in which role, and the production model (which answers instead if a
    canary fails)."""

    role: Role
    ref: str
    production: str


def assign(routing: Routing, subject_id: str) -> Assignment | None:
    """The model serving `subject_id` (the request's id column) under `routing` (sticky canary buckets), or None
    when the service refuses:
    the kill switch put it in `refuse` mode, or no production model is deployed."""
    if routing.mode == "refuse" or not routing.production:
        return None
    role = routing.role_of(subject_id)
    if role == "canary" and routing.canary:
        return Assignment("canary", routing.canary, routing.production)
    return Assignment("production", routing.production, routing.production)


def refusal(routing: Routing) -> str:
    """Why the service refuses under `routing` (the 503 answer's message)."""
    return REFUSING.format(reason=routing.reason or NO_MODEL)


@overload
def decide(probability: float, *, threshold: float, review_band: None = None) -> Verdict: ...
@overload
def decide(probability: float, *, threshold: float, review_band: tuple[float, float]) -> Decision: ...
def decide(probability: float, *, threshold: float, review_band: tuple[float, float] | None = None) -> Decision:
    """P(favourable) as a decision: approve at P(favourable) >= threshold, else decline; with a `review_band`
    [low, high), a probability inside it is `referred` to a person instead, whichever side of the threshold it
    lies."""
    if review_band is not None:
        low, high = review_band
        if low <= probability < high:
            return REFERRED
    return "approve" if probability >= threshold else "decline"

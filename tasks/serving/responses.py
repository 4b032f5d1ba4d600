"""What the service answers: one pydantic model per response body, success and error alike.

The endpoints return these (BentoML serialises them with `model_dump_json`), and the OpenAPI document at /docs.json
names them for every status (tasks/serving/openapi.py), so a client can be generated from it. Every model is closed
(`extra="forbid"`: additionalProperties false in the schema), so a field the service adds without documenting it
fails the conformance test (tests/integration/test_openapi_conformance.py).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from steward.routing import Mode
from tasks.serving.decision import Decision, Verdict

REQUEST_ID = r"^[0-9a-f]{32}$"
Probability = Annotated[
    float, Field(ge=0, le=1, description="P(favourable), of the use case's favourable outcome, rounded to 6 decimals")
]
RequestId = Annotated[str, Field(pattern=REQUEST_ID, description="The decision's id, for /feedback and /contest")]
Value = str | int | float


class Body(BaseModel):
    """A response body: closed, immutable, serialised by its field names' aliases."""

    model_config = ConfigDict(extra="forbid", frozen=True, serialize_by_alias=True, validate_by_name=True)


class Reason(Body):
    feature: str = Field(description="The column of the request this reason is about")
    text: str = Field(description="The reason, as the person decided about reads it")


class Prediction(Body):
    """A decision, with the model and data versions that made it and the reasons that drove it."""

    request_id: RequestId
    decision: Decision = Field(
        description="`approve` grants the use case's favourable outcome, `decline` does not; `referred`: a person "
        "decides (P(favourable) in the review band)"
    )
    probability: Probability
    model_version: str = Field(description="The registry ref of the model that decided (`name:vN`)")
    data_version: str = Field(description="The md5 of the data that model was trained on")
    reasons: list[Reason] = Field(description="The features that pushed the score toward the decision, strongest first")


class Change(Body):
    feature: str
    from_: Value | None = Field(alias="from", description="The person's value (null: they gave none)")
    to: Value = Field(description="The value that would change the decision")


class Counterfactual(Body):
    """The smallest change to what the person can act on that changes the decision."""

    decision: Verdict = Field(description="The decision the changes lead to")
    probability: Probability
    changes: list[Change]
    text: str = Field(description="The changes, as the person reads them")


class Explanation(Body):
    """What the model serving this person would decide and why; nothing is logged as a decision."""

    decision: Decision
    probability: Probability
    model_version: str
    reasons: list[Reason]
    counterfactual: Counterfactual | None = Field(description="None when no small enough change flips the decision")
    counterfactual_note: str


class OutcomeRecorded(Body):
    """The true outcome of a served decision, as recorded."""

    request_id: RequestId
    outcome: str = Field(description="One of the use case's label values, as its data writes them")


class ContestCase(Body):
    """The review case a contest opened: its number is the person's receipt."""

    case: int = Field(description="The review case number")
    request_id: RequestId
    status: str = Field(description="The case's state (`open` when just opened)")


class RoutingState(Body):
    """What the serving process routes to right now."""

    production: str | None
    canary: str | None
    canary_weight: float = Field(ge=0, le=1)
    shadow: str | None
    mode: Mode
    revision: int
    reason: str


class RollbackResult(Body):
    """What a rollback took out of routing, the model it restored, and the routing it left; `repeated`: the ledger
    seq of the same request done before (nothing changed this time)."""

    rolled_back: list[str]
    restored: str | None = None
    repeated: int | None = None
    routing: RoutingState


# --- errors --------------------------------------------------------------------------------------------------------


class Error(Body):
    """Any refusal or failure: one message, never an echo of what the client sent."""

    error: str


class Refusal(Error):
    """/predict while Steward refuses decisions (kill switch, or no production model): a person decides."""

    decision: Literal["referred"]


class FieldError(Body):
    field: str = Field(description="The dotted name of the field ('' for the body as a whole)")
    problem: str
    type: str = Field(description="pydantic's error type, e.g. `missing`, `extra_forbidden`, `literal_error`")


class InvalidRequest(Error):
    """A body that does not match the request schema: each field's problem (422)."""

    errors: list[FieldError]

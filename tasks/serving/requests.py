"""The request bodies of the endpoints other than /predict and /explain (whose body is the use case's `Application`,
tasks/serving/schema.py); /feedback's `Outcome` is narrowed to the served use case's label values by `outcome_model`.

Closed like `Application` (`extra="forbid"`: additionalProperties false in /docs.json): a misspelt field is refused
with a 422 naming it, never silently dropped (an `actr` key on /admin/rollback would otherwise leave the ledger
crediting the default actor).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from steward.usecase import UseCase
from tasks.serving.responses import RequestId


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoFields(Request):
    """An empty JSON object: the endpoint takes no arguments."""


class Outcome(Request):
    """The true outcome of a served decision, once known (it feeds the error-rate fairness checks)."""

    request_id: RequestId
    outcome: str = Field(description="One of the use case's label values, as its data writes them")


def label_values(usecase: UseCase) -> tuple[str, str]:
    """The outcomes /feedback accepts: the label's favourable and unfavourable values, as text in the data."""
    return str(usecase.label.favourable), str(usecase.label.unfavourable)


def outcome_model(usecase: UseCase) -> type[Outcome]:
    """`Outcome` accepting exactly the use case's label values; any other is refused naming them (a 422)."""
    favourable, unfavourable = label_values(usecase)
    described = Field(
        description=f"The {usecase.label.column} the {usecase.words.subject} turned out to have: {favourable!r} "
        f"({usecase.words.outcome}) or {unfavourable!r}"
    )
    allowed: Any = Literal[favourable, unfavourable]
    model: type[Outcome] = create_model("Outcome", __base__=Outcome, outcome=(allowed, described))
    return model


class Contest(Request):
    """A person contests a decision: someone reviews it."""

    request_id: RequestId
    reason: str = Field(min_length=1, max_length=2000)


class Rollback(Request):
    """`steward rollback`: the canary and shadow out; with neither, production back to the standby; `to`: that former
    production model instead; `refuse_all`: the kill switch into refusal mode. A repeated request changes nothing."""

    reason: str = Field(min_length=1, max_length=500)
    actor: str = Field(default="admin-api", min_length=1, max_length=200)
    to: str | None = Field(default=None, min_length=1, max_length=300, description="A former production model")
    refuse_all: bool = Field(default=False, description="Take every model out: decisions are refused (503)")

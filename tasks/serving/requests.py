"""The request bodies of the endpoints other than /predict and /explain (whose body is `schema.Application`).

Closed like `Application` (`extra="forbid"`: additionalProperties false in /docs.json): a misspelt field is refused
with a 422 naming it, never silently dropped (an `actr` key on /admin/rollback would otherwise leave the ledger
crediting the default actor).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from tasks.serving.responses import OUTCOMES, RequestId


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoFields(Request):
    """An empty JSON object: the endpoint takes no arguments."""


class Outcome(Request):
    """The true outcome of a served decision, once known (it feeds the error-rate fairness checks)."""

    request_id: RequestId
    outcome: str = Field(pattern=OUTCOMES, description="`good` or `bad`, as the raw data's credit_risk")


class Contest(Request):
    """An applicant contests a decision: a person reviews it."""

    request_id: RequestId
    reason: str = Field(min_length=1, max_length=2000)


class Rollback(Request):
    """The kill switch: canary and shadow out; with neither, production too (refusal)."""

    reason: str = Field(min_length=1, max_length=500)
    actor: str = Field(default="admin-api", min_length=1, max_length=200)

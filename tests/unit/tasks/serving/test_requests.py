"""/feedback's body, narrowed to the served use case's label values."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tasks.serving.requests import label_values, outcome_model
from tests.usecases import SHIPPED, usecase

REQUEST_ID = "0" * 32
EXPECTED = {"german_credit": ("good", "bad"), "adult_income": (">50K", "<=50K")}  # as usecase.yaml writes them


@pytest.mark.parametrize("name", SHIPPED)
def test_feedback_accepts_exactly_the_use_cases_label_values(name: str):
    assert label_values(usecase(name)) == EXPECTED[name]
    model = outcome_model(usecase(name))
    for value in EXPECTED[name]:
        assert model.model_validate({"request_id": REQUEST_ID, "outcome": value}).outcome == value


@pytest.mark.parametrize("name", SHIPPED)
def test_another_outcome_is_refused_naming_the_allowed_values(name: str):
    model = outcome_model(usecase(name))
    others = [v for n in SHIPPED if n != name for v in EXPECTED[n]] + ["maybe", ""]
    for value in others:
        with pytest.raises(ValidationError) as refused:
            model.model_validate({"request_id": REQUEST_ID, "outcome": value})
        (error,) = refused.value.errors()
        assert error["loc"] == ("outcome",) and error["type"] == "literal_error"
        assert all(repr(allowed) in error["msg"] for allowed in EXPECTED[name])


@pytest.mark.parametrize("name", SHIPPED)
def test_the_published_schema_lists_the_allowed_outcomes(name: str):
    schema = outcome_model(usecase(name)).model_json_schema()
    assert schema["properties"]["outcome"]["enum"] == list(EXPECTED[name])
    assert schema["additionalProperties"] is False

"""The response models serialise to the JSON the service has always answered: same fields, same order, same values."""

import json

import pytest
from pydantic import ValidationError

from tasks.serving.responses import (
    Change,
    Counterfactual,
    Explanation,
    InvalidRequest,
    Prediction,
    Reason,
    Refusal,
    RollbackResult,
    RoutingState,
)

REQUEST_ID = "0123456789abcdef0123456789abcdef"
REASON = {"feature": "checking_status", "text": "checking account status '< 0 DM' lowered the score"}


def _json(model) -> dict:
    return json.loads(model.model_dump_json())


def test_a_prediction_is_the_dict_the_service_returned_before_in_the_same_order():
    before = {
        "request_id": REQUEST_ID,
        "decision": "decline",
        "probability": 0.123457,
        "model_version": "credit-risk:v3",
        "data_version": "d" * 32,
        "reasons": [REASON],
    }
    answer = _json(Prediction(**{**before, "reasons": [Reason(**REASON)]}))
    assert answer == before and list(answer) == list(before)


def test_an_explanation_keeps_from_as_the_changes_key_and_null_without_a_counterfactual():
    change = {"feature": "credit_amount", "from": 5000, "to": 2000}
    found = Counterfactual(decision="approve", probability=0.61, changes=[Change.model_validate(change)], text="t")
    with_one = _json(
        Explanation(
            decision="decline",
            probability=0.3,
            model_version="m:v1",
            reasons=[],
            counterfactual=found,
            counterfactual_note="n",
        )
    )
    assert with_one["counterfactual"] == {"decision": "approve", "probability": 0.61, "changes": [change], "text": "t"}
    assert list(with_one) == [
        "decision",
        "probability",
        "model_version",
        "reasons",
        "counterfactual",
        "counterfactual_note",
    ]
    without = Explanation(
        decision="referred",
        probability=0.5,
        model_version="m:v1",
        reasons=[],
        counterfactual=None,
        counterfactual_note="",
    )
    assert _json(without)["counterfactual"] is None


@pytest.mark.parametrize("value", ["own", 3, 2.5])
def test_a_change_keeps_the_type_of_the_value_it_was_given(value):
    assert _json(Change.model_validate({"feature": "f", "from": value, "to": value})) == {
        "feature": "f",
        "from": value,
        "to": value,
    }


def test_the_routing_state_is_the_routing_tables_dict_and_the_rollback_wraps_it():
    state = {
        "production": "m:v1",
        "canary": None,
        "canary_weight": 0.0,
        "shadow": None,
        "mode": "serve",
        "revision": 7,
        "reason": "",
    }
    assert _json(RoutingState(**state)) == state
    assert _json(RollbackResult(rolled_back=["m:v2"], routing=RoutingState(**state))) == {
        "rolled_back": ["m:v2"],
        "restored": None,
        "repeated": None,
        "routing": state,
    }
    restored = RollbackResult(rolled_back=[], restored="m:v1", repeated=12, routing=RoutingState(**state))
    assert _json(restored) | {"routing": None} == {
        "rolled_back": [],
        "restored": "m:v1",
        "repeated": 12,
        "routing": None,
    }


@pytest.mark.parametrize(
    ("model", "fields"),
    [
        (Prediction, {"request_id": "not-hex", "decision": "approve", "probability": 0.5}),
        (Prediction, {"request_id": REQUEST_ID, "decision": "maybe", "probability": 0.5}),
        (Prediction, {"request_id": REQUEST_ID, "decision": "approve", "probability": 1.5}),
        (Refusal, {"error": "x", "decision": "approve"}),
        (InvalidRequest, {"error": "x", "errors": [{"field": "age"}]}),
    ],
)
def test_a_body_outside_its_documented_shape_cannot_be_built(model, fields):
    complete = {"model_version": "m:v1", "data_version": "d", "reasons": []} if model is Prediction else {}
    with pytest.raises(ValidationError):
        model(**complete, **fields)


def test_bodies_are_closed_an_undocumented_field_is_refused():
    with pytest.raises(ValidationError, match="extra"):
        Refusal(error="x", decision="referred", request_id=REQUEST_ID)

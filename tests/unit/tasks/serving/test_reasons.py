import json

import numpy as np
import pytest

from tasks.serving.reasons import (
    BAD_DECISION,
    BAD_TOP_K,
    LOWERED,
    NOT_GIVEN,
    RAISED,
    never_cited,
    reason_codes,
    reason_text,
)
from tests.usecases import SHIPPED, usecase

PHRASES = usecase("german_credit").reasons

VALUES = {
    "credit_amount": np.int64(15000),
    "duration_months": 48,
    "checking_status": "< 0 DM",
    "savings": "unknown or none",
    "purpose": "new car",
    "housing": "own",
}
CONTRIBUTIONS = {
    "credit_amount": -0.9,
    "duration_months": -0.4,
    "checking_status": -1.2,
    "savings": 0.3,
    "purpose": 0.0,
    "housing": 0.7,
}


def test_a_decline_cites_the_features_pushing_most_toward_decline_strongest_first():
    reasons = reason_codes(CONTRIBUTIONS, VALUES, decision="decline", top_k=4, protected=(), phrases=PHRASES)
    # only the three negative contributions qualify, most negative first; positive and zero ones never
    assert [r["feature"] for r in reasons] == ["checking_status", "credit_amount", "duration_months"]
    assert [r["contribution"] for r in reasons] == [-1.2, -0.9, -0.4]
    assert all(r["text"].endswith(LOWERED) for r in reasons)


def test_an_approval_cites_the_features_pushing_most_toward_approval():
    reasons = reason_codes(CONTRIBUTIONS, VALUES, decision="approve", top_k=4, protected=(), phrases=PHRASES)
    assert [r["feature"] for r in reasons] == ["housing", "savings"]
    assert all(r["text"].endswith(RAISED) for r in reasons)


@pytest.mark.parametrize("top_k", [1, 2, 3])
def test_top_k_keeps_the_strongest(top_k):
    reasons = reason_codes(CONTRIBUTIONS, VALUES, decision="decline", top_k=top_k, protected=(), phrases=PHRASES)
    assert [r["feature"] for r in reasons] == ["checking_status", "credit_amount", "duration_months"][:top_k]


def test_ties_are_broken_by_feature_name_whatever_the_input_order():
    tied = {"savings": -0.5, "housing": -0.5, "purpose": -0.5, "credit_amount": -0.1}
    forward = reason_codes(tied, VALUES, decision="decline", top_k=3, protected=(), phrases=PHRASES)
    backward = reason_codes(
        dict(reversed(list(tied.items()))), VALUES, decision="decline", top_k=3, protected=(), phrases=PHRASES
    )
    assert [r["feature"] for r in forward] == ["housing", "purpose", "savings"]
    assert forward == backward


def test_protected_attributes_are_never_cited_even_with_the_largest_contribution():
    contributions = {"sex": -5.0, "age": -4.0, "age_group": -3.0, "foreign_worker": -2.0, "savings": -0.1}
    values = {"sex": "female", "age": 22, "age_group": "under 25", "foreign_worker": "yes", **VALUES}
    hidden = never_cited(usecase("german_credit"))
    reasons = reason_codes(contributions, values, decision="decline", top_k=5, protected=hidden, phrases=PHRASES)
    assert [r["feature"] for r in reasons] == ["savings"]
    custom = reason_codes(
        {"zip_code": -1.0}, {"zip_code": "12345"}, decision="decline", top_k=2, protected={"zip_code"}
    )
    assert custom == []


def test_text_is_readable_and_json_safe():
    reasons = reason_codes(CONTRIBUTIONS, VALUES, decision="decline", top_k=2, protected=(), phrases=PHRASES)
    assert reasons[1]["text"] == "credit amount of 15,000 DM lowered the score"
    assert reasons[1]["value"] == 15000 and type(reasons[1]["value"]) is int  # numpy scalar unwrapped
    said = reason_text("checking_status", "< 0 DM", -1.0, phrases=PHRASES)
    assert said == "checking account status '< 0 DM' lowered the score"
    assert reason_text("duration_months", 12.0, 0.2, phrases=PHRASES) == "loan duration of 12 months raised the score"
    assert reason_text("unlisted_column", 2.5, 0.2) == "unlisted_column of 2.5 raised the score"
    assert reason_text("unlisted_column", "x", 0.2) == "unlisted_column 'x' raised the score"
    assert reason_text("occupation", None, -0.2) == f"occupation '{NOT_GIVEN}' lowered the score"
    json.dumps(reasons, allow_nan=False)


@pytest.mark.parametrize("name", SHIPPED)
def test_the_phrases_are_the_use_cases_and_a_protected_or_proxy_column_is_never_cited(name):
    spec = usecase(name)
    columns = sorted({*spec.reasons, *spec.protected, *spec.groups, *spec.proxies, *spec.actionable})
    contributions = {c: -1.0 - i for i, c in enumerate(columns)}  # the protected ones among the strongest
    values = {c: 7 for c in columns}
    reasons = reason_codes(
        contributions, values, decision="decline", top_k=len(columns), protected=never_cited(spec), phrases=spec.reasons
    )
    cited = {r["feature"] for r in reasons}
    assert cited == set(columns) - {*spec.protected, *spec.groups, *spec.proxies}
    assert not cited & {"sex", "race", "age", "age_group", "relationship", "native_country", "personal_status"}
    for r in reasons:
        template = spec.reasons.get(r["feature"], "{feature} of {value}")
        assert r["text"] == template.replace("{feature}", r["feature"]).replace("{value}", "7") + " " + LOWERED


def test_non_finite_contributions_are_ignored_and_bad_options_refused():
    reasons = reason_codes(
        {"savings": float("nan"), "housing": -0.2}, VALUES, decision="decline", top_k=2, protected=()
    )
    assert [r["feature"] for r in reasons] == ["housing"]
    with pytest.raises(ValueError) as bad_decision:
        reason_codes(CONTRIBUTIONS, VALUES, decision="maybe", top_k=2, protected=())  # type: ignore[arg-type]
    assert str(bad_decision.value) == BAD_DECISION.format(decision="maybe")
    with pytest.raises(ValueError) as bad_top_k:
        reason_codes(CONTRIBUTIONS, VALUES, decision="approve", top_k=0, protected=(), phrases=PHRASES)
    assert str(bad_top_k.value) == BAD_TOP_K.format(top_k=0)

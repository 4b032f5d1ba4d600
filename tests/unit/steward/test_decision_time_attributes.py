"""A mitigation that reads a protected attribute when deciding (ThresholdOptimizer) runs only where the governance
policy allows it for that use case, with a reason; ExponentiatedGradient, which decides without it, is the default."""

import hashlib

import pytest

from steward.canonical import canonical_json
from steward.governance import GovernanceParams, policy_digest
from steward.params import FairnessParams, MitigationParams, ParamsError
from tests.usecases import SHIPPED, params_for, parse_for, usecase


@pytest.mark.parametrize("name", SHIPPED)
def test_a_threshold_optimizer_the_policy_does_not_allow_is_refused_naming_the_setting(name):
    attribute = usecase(name).sensitive[0]
    with pytest.raises(ParamsError) as refused:
        parse_for({"fairness": {"mitigation": {"method": "threshold_optimizer"}}}, name)
    assert (
        f"fairness.mitigation.method threshold_optimizer reads {attribute!r} when deciding, which the policy does "
        f"not allow for {name}: set governance.decision_time_attributes.{name}.{attribute} to the reason it is "
        "allowed, or use exponentiated_gradient, which decides without it"
    ) in str(refused.value)
    # another use case's allowance, or another attribute's, is not this one's
    other = {"someone_else": {attribute: "their reason"}, name: {"not-" + attribute: "x"}}
    with pytest.raises(ParamsError, match="does not allow"):
        parse_for(
            {
                "fairness": {"mitigation": {"method": "threshold_optimizer"}},
                "governance": {"decision_time_attributes": other},
            },
            name,
        )


@pytest.mark.parametrize("name", SHIPPED)
def test_an_allowance_with_its_reason_lets_it_run_and_the_mitigation_report_names_both(name):
    attribute = usecase(name).sensitive[0]
    why = "a court-ordered remedy for a documented disparity, reviewed yearly"
    raw = {
        "fairness": {"mitigation": {"method": "threshold_optimizer"}},
        "governance": {"decision_time_attributes": {name: {attribute: why}}},
    }
    assert parse_for(raw, name).decision_time_attribute() == (attribute, why)


def test_an_allowance_without_a_reason_is_refused():
    with pytest.raises(ParamsError, match=r"governance.decision_time_attributes.german_credit.sex: give the reason"):
        parse_for({"governance": {"decision_time_attributes": {"german_credit": {"sex": "  "}}}})


def test_exponentiated_gradient_is_the_default_and_reads_nothing_when_deciding():
    assert MitigationParams().method == "exponentiated_gradient"
    assert params_for().decision_time_attribute() is None
    disabled = FairnessParams(mitigation=MitigationParams(method="threshold_optimizer", enabled=False))
    assert params_for(fairness=disabled).decision_time_attribute() is None  # no mitigation runs: nothing to allow


def test_a_policy_allowing_nothing_digests_as_before_the_setting_existed():
    policy = GovernanceParams()
    before = policy.model_dump(mode="json", by_alias=True, exclude={"decision_time_attributes"})
    assert policy_digest(policy) == hashlib.sha256(canonical_json(before).encode()).hexdigest()
    allowing = GovernanceParams(decision_time_attributes={"german_credit": {"sex": "why"}})
    assert policy_digest(allowing) != policy_digest(policy)

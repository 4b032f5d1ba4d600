import re
from datetime import UTC, datetime, timedelta

import pytest

from steward.params import GovernanceParams, ParamsError, parse_params
from steward.signoff import Progress, Request
from tasks.signoff import Approval, refusal, unsatisfiable

DIGEST = "ab" * 32


@pytest.fixture
def governance():
    return GovernanceParams.model_validate(
        {
            "risk_tier": "high",
            "tiers": {"high": {"min_dp_ratio_lower": 0.8, "max_eo_diff_upper": 0.1}},
            "signoff": {"high": {"approvers": 2, "roles": ["model-risk", "compliance"], "timeout_hours": 2}},
            "approvers": {
                "alice": {"roles": ["model-risk"]},
                "bob": {"roles": ["compliance"]},
                "carol": {"roles": ["model-risk", "compliance"]},
                "dave": {"roles": ["auditor"]},
                "demo-risk": {"roles": ["model-risk"], "demo": True},
            },
        }
    )


def _request(governance, author="carol", demo=False):
    return Request(
        model="credit-risk:v1",
        flow_run_id="run-1",
        author=author,
        tier="high",
        policy=governance.signoff_policy,
        evidence_digest=DIGEST,
        evidence_page="/evidence/index.html",
        requested_at=datetime(2026, 1, 1, tzinfo=UTC),
        demo=demo,
    )


def _answer(approver, decision="approve", digest=DIGEST, comment=""):
    return Approval(decision=decision, approver=approver, evidence_digest=digest, comment=comment)


@pytest.mark.parametrize(
    ("answer", "progress", "message"),
    [
        (_answer("mallory"), Progress(), "'mallory' is not an approver .*alice, bob, carol, dave, demo-risk"),
        (_answer("demo-risk"), Progress(), "demo-risk is a demo identity: it answers only the demo sign-offs"),
        (_answer("carol"), Progress(), "carol started this run and may not approve it"),
        (_answer("alice", digest="cd" * 32), Progress(), "digest cdcdcdcdcdcd is not the evidence .*abababababab"),
        (_answer("alice"), Progress(("alice",)), "alice has already approved this run; the tier needs 2"),
        (_answer("dave"), Progress(), "dave holds auditor; this high-tier sign-off needs .*model-risk, compliance"),
        (_answer("bob", decision="reject"), Progress(), "a reject needs a reason"),
        (_answer("bob", decision="request_changes", comment=" "), Progress(), "a request changes needs a reason"),
    ],
)
def test_answers_that_break_the_policy_are_refused_with_the_rule_named(governance, answer, progress, message):
    reason = refusal(answer, request=_request(governance), governance=governance, progress=progress)
    assert reason is not None and re.search(message, reason), reason


def test_valid_answers_count_and_the_author_may_still_reject(governance):
    assert (
        refusal(
            _answer("demo-risk"), request=_request(governance, demo=True), governance=governance, progress=Progress()
        )
        is None
    )
    request = _request(governance)
    answers = (_answer("alice"), _answer("carol", "reject", comment="AUC low"), _answer("dave", "reject", comment="x"))
    for answer in answers:
        assert refusal(answer, request=request, governance=governance, progress=Progress()) is None


def test_completion_needs_the_count_and_every_role(governance):
    policy = governance.signoff_policy
    progress = Progress().add("alice", ["model-risk"])
    assert not progress.complete(policy) and progress.missing_roles(policy) == ["compliance"]
    assert progress.summary(policy) == "1 of 2 approvals; still needed from: compliance"
    two_risk = progress.add("erin", ["model-risk"])
    assert not two_risk.complete(policy)  # two people, but nobody from compliance
    assert progress.add("bob", ["compliance"]).complete(policy)


def test_a_policy_nobody_can_satisfy_is_named_before_anyone_waits(governance):
    assert unsatisfiable(governance, author="dave") is None
    assert unsatisfiable(governance, author="carol") is None  # alice and bob remain
    lone = governance.model_copy(update={"approvers": {k: governance.approvers[k] for k in ("alice", "demo-risk")}})
    message = unsatisfiable(lone, author="alice") or ""
    assert "needs 2 distinct approvers other than the run's author 'alice' covering model-risk, compliance" in message
    assert "names nobody else" in message


def test_each_escalation_extends_the_deadline_by_one_timeout(governance):
    request = _request(governance, demo=True)
    assert request.deadline(escalations=0) == request.requested_at + timedelta(hours=2)
    assert request.deadline(escalations=2) == request.requested_at + timedelta(hours=6)
    assert Request.from_payload(request.model, request.payload()) == request


def test_params_refuse_a_role_no_approver_holds():
    with pytest.raises(ParamsError, match=r"governance\.signoff\.high\.roles: no approver holds compliance"):
        parse_params(
            {
                "governance": {
                    "signoff": {"high": {"roles": ["compliance"]}},
                    "approvers": {"alice": {"roles": ["model-risk"]}},
                }
            }
        )

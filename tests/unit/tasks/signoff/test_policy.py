from datetime import UTC, datetime, timedelta

import pytest

from steward.db import make_engine
from steward.ledger import Ledger
from steward.params import GovernanceParams, ParamsError
from steward.signoff import Progress, Request, Tally
from tasks.signoff.policy import SIGNOFF_ACTOR, Approval, refusal, resource, unsatisfiable
from tasks.signoff.record import record_answer, record_timeout, record_withdrawn
from tests.usecases import parse_for

DIGEST = "ab" * 32
DECISIONS = ["approve", "reject", "request_changes"]
REQUESTED_AT = datetime(2026, 1, 1, tzinfo=UTC)


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


def _request(governance, author="carol", demo=False, policy=None):
    return Request(
        model="credit-risk:v1",
        flow_run_id="run-1",
        author=author,
        tier="high",
        policy=policy or governance.signoff_policy,
        evidence_digest=DIGEST,
        evidence_page="/evidence/index.html",
        requested_at=REQUESTED_AT,
        demo=demo,
    )


def _answer(approver, decision="approve", digest=DIGEST, comment=""):
    return Approval(decision=decision, approver=approver, evidence_digest=digest, comment=comment)


def _reason(decision):
    """A comment only where the decision needs one, so the rule under test is the only one broken."""
    return "" if decision == "approve" else "the AUC is too low"


def _refusal(governance, answer, *, progress=Progress(), **request):
    return refusal(answer, request=_request(governance, **request), governance=governance, progress=progress)


# --- rules that hold for every decision -----------------------------------------------------------------------


@pytest.mark.parametrize("decision", DECISIONS)
def test_an_unknown_approver_is_refused_whatever_they_answer(governance, decision):
    reason = _refusal(governance, _answer("mallory", decision, comment=_reason(decision)))
    assert reason == (
        "'mallory' is not an approver (params.yaml governance.approvers: alice, bob, carol, dave, demo-risk)"
    )


@pytest.mark.parametrize("decision", DECISIONS)
def test_with_no_approvers_configured_everybody_is_refused(decision):
    governance = GovernanceParams()
    answer = _answer("alice", decision, comment=_reason(decision))
    reason = _refusal(governance, answer)
    assert reason == "'alice' is not an approver (params.yaml governance.approvers: none configured)"


@pytest.mark.parametrize("decision", DECISIONS)
def test_a_demo_identity_answers_only_a_demo_sign_off(governance, decision):
    answer = _answer("demo-risk", decision, comment=_reason(decision))
    assert _refusal(governance, answer) == (
        "demo-risk is a demo identity: it answers only the demo sign-offs `steward run` opens"
    )
    assert _refusal(governance, answer, demo=True) is None


@pytest.mark.parametrize("decision", DECISIONS)
def test_a_person_answers_a_demo_sign_off_too(governance, decision):
    assert _refusal(governance, _answer("alice", decision, comment=_reason(decision)), demo=True) is None


@pytest.mark.parametrize("decision", DECISIONS)
@pytest.mark.parametrize(
    ("digest", "shown"),
    [("cd" * 32, "cdcdcdcdcdcd"), ("", "(none)"), (DIGEST[:-1] + "c", "abababababab")],
)
def test_an_answer_about_other_evidence_is_refused_whatever_it_says(governance, decision, digest, shown):
    reason = _refusal(governance, _answer("alice", decision, digest=digest, comment=_reason(decision)))
    assert reason == (
        f"evidence digest {shown} is not the evidence of this sign-off (abababababab): "
        "review the current evidence (/evidence/index.html) and answer with its digest"
    )


@pytest.mark.parametrize("decision", DECISIONS)
def test_the_first_rule_broken_is_the_one_named(governance, decision):
    stale = "cd" * 32
    unknown = _refusal(governance, _answer("mallory", decision, digest=stale))
    assert unknown is not None and unknown.startswith("'mallory' is not an approver")
    demo = _refusal(governance, _answer("demo-risk", decision, digest=stale))
    assert demo is not None and demo.startswith("demo-risk is a demo identity")
    evidence = _refusal(governance, _answer("carol", decision, digest=stale), progress=Progress(("carol",)))
    assert evidence is not None and evidence.startswith("evidence digest cdcdcdcdcdcd")


# --- approvals ---------------------------------------------------------------------------------------------


def test_the_author_may_not_approve_their_own_run(governance):
    assert _refusal(governance, _answer("carol"), author="carol") == (
        "carol started this run and may not approve it (separation of duties)"
    )
    assert _refusal(governance, _answer("demo-risk"), author="demo-risk", demo=True) == (
        "demo-risk started this run and may not approve it (separation of duties)"
    )


@pytest.mark.parametrize("decision", ["reject", "request_changes"])
def test_the_author_may_still_stop_their_own_run(governance, decision):
    # Separation of duties keeps an author from approving; withdrawing their own model needs no second pair of eyes.
    assert _refusal(governance, _answer("carol", decision, comment="found a leak"), author="carol") is None


def test_nobody_approves_twice(governance):
    progress = Progress().add("alice", ["model-risk"])
    assert _refusal(governance, _answer("alice"), progress=progress) == (
        "alice has already approved this run; the tier needs 2 distinct approvers"
    )
    assert _refusal(governance, _answer("bob"), progress=progress) is None
    # ... but who approved may still change their mind
    assert _refusal(governance, _answer("alice", "reject", comment="on second thought"), progress=progress) is None


@pytest.mark.parametrize(
    ("approver", "roles", "reason"),
    [
        (
            "dave",
            ["model-risk", "compliance"],
            "dave holds auditor; this high-tier sign-off needs an approver from model-risk, compliance",
        ),
        ("alice", ["compliance"], "alice holds model-risk; this high-tier sign-off needs an approver from compliance"),
        (
            "carol",
            ["auditor", "legal"],
            "carol holds model-risk, compliance; this high-tier sign-off needs an approver from auditor, legal",
        ),
        ("alice", ["model-risk", "compliance"], None),  # one role in common is enough
        ("carol", ["compliance"], None),
        ("dave", ["auditor"], None),
        ("dave", [], None),  # no roles asked: any approver
    ],
)
def test_an_approval_needs_a_role_the_tier_asks_for(governance, approver, roles, reason):
    policy = governance.signoff_policy.model_copy(update={"roles": roles})
    assert _refusal(governance, _answer(approver), author="erin", policy=policy) == reason


@pytest.mark.parametrize("approver", ["alice", "bob", "carol"])
def test_a_valid_approval_counts(governance, approver):
    assert _refusal(governance, _answer(approver, comment="looks good"), author="erin") is None


# --- declines ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("decision", "said"), [("reject", "reject"), ("request_changes", "request changes")])
@pytest.mark.parametrize("comment", ["", " ", "\n\t"])
def test_a_decline_needs_a_reason(governance, decision, said, comment):
    assert _refusal(governance, _answer("bob", decision, comment=comment)) == (
        f"a {said} needs a reason (the comment) for the ledger and the run's author"
    )


@pytest.mark.parametrize("decision", ["reject", "request_changes"])
@pytest.mark.parametrize("approver", ["alice", "bob", "dave"])  # any configured approver may decline
def test_a_decline_with_a_reason_counts(governance, decision, approver):
    assert _refusal(governance, _answer(approver, decision, comment="AUC low")) is None


# --- a policy nobody can satisfy -----------------------------------------------------------------------------


def _only(governance, *names, **policy):
    update = {"approvers": {k: governance.approvers[k] for k in names}}
    if policy:
        update["signoff"] = {"high": governance.signoff_policy.model_copy(update=policy)}
    return governance.model_copy(update=update)


@pytest.mark.parametrize("author", ["dave", "carol", "alice", "bob", "erin"])
def test_a_satisfiable_policy_passes(governance, author):
    assert unsatisfiable(governance, author=author) is None


def test_a_policy_nobody_can_satisfy_is_named_before_anyone_waits(governance):
    message = unsatisfiable(_only(governance, "alice", "demo-risk"), author="alice")
    assert message == (
        "the high-tier sign-off can never complete: it needs 2 distinct approvers other than the run's author "
        "'alice' covering model-risk, compliance, and params.yaml governance.approvers names nobody else (demo "
        "identities count only for `steward run`)"
    )


def test_too_few_approvers_without_roles(governance):
    lone = _only(governance, "alice", "bob", approvers=3, roles=[])
    assert unsatisfiable(lone, author="carol") == (
        "the high-tier sign-off can never complete: it needs 3 distinct approvers other than the run's author "
        "'carol', and params.yaml governance.approvers names alice, bob (demo identities count only for "
        "`steward run`)"
    )
    assert unsatisfiable(_only(governance, "alice", "bob", "dave", approvers=3, roles=[]), author="carol") is None


def test_exactly_enough_approvers_is_enough(governance):
    assert unsatisfiable(_only(governance, "alice", "bob"), author="carol") is None
    assert unsatisfiable(_only(governance, "alice", "bob", approvers=1, roles=["model-risk"]), author="bob") is None


def test_roles_must_be_covered_by_approvers_other_than_the_author(governance):
    assert unsatisfiable(_only(governance, "alice", "bob", "dave"), author="carol") is None
    # carol is the only other compliance approver: once she is the author, compliance cannot be covered
    message = unsatisfiable(_only(governance, "alice", "carol"), author="carol")
    assert message is not None and "names alice (demo" in message


def test_demo_identities_count_only_for_demo_runs(governance):
    demo_pair = _only(governance, "bob", "demo-risk")
    assert unsatisfiable(demo_pair, author="carol", demo=True) is None
    message = unsatisfiable(demo_pair, author="carol")
    assert message is not None and "names bob (demo" in message
    assert unsatisfiable(demo_pair, author="carol", demo=False) == message


def test_an_approver_without_a_role_the_tier_asks_for_cannot_complete_it(governance):
    # dave holds none of the tier's roles, so his approval is refused: carol alone can never make two approvers
    assert _refusal(governance, _answer("dave"), author="alice") is not None
    assert unsatisfiable(_only(governance, "carol", "dave"), author="alice") == (
        "the high-tier sign-off can never complete: it needs 2 distinct approvers other than the run's author "
        "'alice' covering model-risk, compliance, and params.yaml governance.approvers names carol (demo "
        "identities count only for `steward run`)"
    )
    # without roles asked, dave counts
    assert unsatisfiable(_only(governance, "carol", "dave", roles=[]), author="alice") is None


# --- what the waiting run records ---------------------------------------------------------------------------


@pytest.fixture
def ledger(tmp_path):
    return Ledger(make_engine(f"sqlite:///{tmp_path / 'steward.db'}"))


def _tally(governance, **policy):
    request = _request(governance, policy=governance.signoff_policy.model_copy(update=policy))
    return Tally(request, request_seq=1)


@pytest.mark.parametrize(
    ("answer", "action", "kind"),
    [
        (_answer("alice", comment="fine"), "approval.granted", "human"),
        (_answer("bob", "reject", comment="AUC low"), "approval.declined", "human"),
        (_answer("bob", "request_changes", comment="retrain"), "approval.declined", "human"),
    ],
)
def test_a_counted_answer_is_recorded_with_the_approvers_roles(governance, ledger, answer, action, kind):
    record = record_answer.fn(answer, _tally(governance), governance=governance, ledger=ledger, pause_key="k-1")
    assert (record.actor, record.action, record.subject) == (answer.approver, action, "credit-risk:v1")
    assert record.payload == {
        "flow_run_id": "run-1",
        "pause_key": "k-1",
        "decision": answer.decision,
        "approver": answer.approver,
        "comment": answer.comment,
        "evidence_digest": DIGEST,
        "roles": governance.approvers[answer.approver].roles,
        "approver_kind": kind,
    }
    assert ledger.records() == [record]


def test_a_demo_approval_is_recorded_as_such(governance, ledger):
    tally = Tally(_request(governance, demo=True), request_seq=1)
    record = record_answer.fn(_answer("demo-risk"), tally, governance=governance, ledger=ledger, pause_key="k-1")
    assert record.action == "approval.granted"
    assert (record.payload["approver_kind"], record.payload["roles"]) == ("demo", ["model-risk"])


@pytest.mark.parametrize("decision", DECISIONS)
def test_a_refused_answer_is_recorded_with_the_rule_it_broke(governance, ledger, decision):
    answer = _answer("mallory", decision, comment="x")
    record = record_answer.fn(answer, _tally(governance), governance=governance, ledger=ledger, pause_key="k-2")
    assert (record.actor, record.action, record.subject) == ("mallory", "approval.refused", "credit-risk:v1")
    assert record.payload == {
        "flow_run_id": "run-1",
        "pause_key": "k-2",
        "decision": decision,
        "approver": "mallory",
        "comment": "x",
        "evidence_digest": DIGEST,
        "reason": "'mallory' is not an approver (params.yaml governance.approvers: alice, bob, carol, dave, demo-risk)",
    }


@pytest.mark.parametrize("pause_key", ["signoff-1-3", None])
def test_a_timeout_escalates_and_moves_the_deadline_one_timeout_on(governance, ledger, pause_key):
    tally = Tally(_tally(governance).request, request_seq=1, escalations=1, progress=Progress(("alice",)).add("x", []))
    record = record_timeout.fn(tally, ledger=ledger, pause_key=pause_key)
    assert (record.actor, record.action, record.subject) == (SIGNOFF_ACTOR, "approval.escalated", "credit-risk:v1")
    expected = {
        "flow_run_id": "run-1",
        "deadline": (REQUESTED_AT + timedelta(hours=4)).isoformat(),  # 2 h, escalated once
        "progress": "2 of 2 approvals; still needed from: model-risk, compliance",
        "escalation": 2,
        "next_deadline": (REQUESTED_AT + timedelta(hours=6)).isoformat(),
    }
    if pause_key is not None:
        expected["pause_key"] = pause_key
    assert record.payload == expected
    assert SIGNOFF_ACTOR == "steward-signoff"


@pytest.mark.parametrize("pause_key", ["signoff-1-1", None])
def test_a_timeout_rejects_when_the_tier_says_so(governance, ledger, pause_key):
    tally = _tally(governance, on_timeout="reject", timeout_hours=1.5)
    tally = Tally(tally.request, request_seq=1, progress=Progress().add("bob", ["compliance"]))
    record = record_timeout.fn(tally, ledger=ledger, pause_key=pause_key)
    assert (record.actor, record.action) == ("steward-signoff", "approval.expired")
    expected = {
        "flow_run_id": "run-1",
        "deadline": "2026-01-01T01:30:00+00:00",
        "progress": "1 of 2 approvals; still needed from: model-risk",
        "reason": "no complete sign-off within 1.5 h (1 of 2 approvals; still needed from: model-risk)",
    }
    if pause_key is not None:
        expected["pause_key"] = pause_key
    assert record.payload == expected


def test_a_withdrawn_sign_off_is_recorded_with_why(governance, ledger):
    record = record_withdrawn.fn(_tally(governance), ledger=ledger, reason="the run crashed")
    assert (record.actor, record.action, record.subject) == ("steward-signoff", "approval.withdrawn", "credit-risk:v1")
    assert record.payload == {"flow_run_id": "run-1", "reason": "the run crashed"}


def test_a_model_is_a_prefect_event_resource():
    assert resource("credit-risk:v3") == {
        "prefect.resource.id": "steward.model.credit-risk:v3",
        "prefect.resource.name": "credit-risk:v3",
    }


def test_params_refuse_a_role_no_approver_holds():
    with pytest.raises(ParamsError, match=r"governance\.signoff\.high\.roles: no approver holds compliance"):
        parse_for(
            {
                "governance": {
                    "signoff": {"high": {"roles": ["compliance"]}},
                    "approvers": {"alice": {"roles": ["model-risk"]}},
                }
            }
        )

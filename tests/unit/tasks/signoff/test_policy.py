from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from steward.db import make_engine
from steward.governance import GovernanceParams, SignoffPolicy
from steward.keys import SigningKey
from steward.ledger import APPROVAL_REQUESTED, Ledger
from steward.params import ParamsError
from steward.signoff import ANSWER, OPENING, Progress, Request, Tally, answer_statement, signature_token, unverified
from tasks.signoff.policy import SIGNOFF_ACTOR, Approval, refusal, resource, unsatisfiable
from tasks.signoff.record import record_answer, record_timeout, record_withdrawn
from tests.usecases import parse_for

DIGEST = "ab" * 32
POLICY = "9f" * 32
DECISIONS = ["approve", "reject", "request_changes"]
REQUESTED_AT = datetime(2026, 1, 1, tzinfo=UTC)
SIGNED_AT = REQUESTED_AT + timedelta(minutes=3)
CHECKED_AT = REQUESTED_AT + timedelta(minutes=10)
PEOPLE = ("alice", "bob", "carol", "dave", "demo-risk", "erin", "mallory")
KEYS = {name: SigningKey(Ed25519PrivateKey.generate()) for name in PEOPLE}  # each person's own key


@pytest.fixture
def governance():
    def human(*roles):
        return {"roles": list(roles), "keys": []}

    approvers = {
        "alice": human("model-risk"),
        "bob": human("compliance"),
        "carol": human("model-risk", "compliance"),
        "dave": human("auditor"),
    }
    for name, approver in approvers.items():
        approver["keys"] = [KEYS[name].public.openssh + f" {name}@bank"]
    return GovernanceParams.model_validate(
        {
            "risk_tier": "high",
            "tiers": {"high": {"min_dp_ratio_lower": 0.8, "max_eo_diff_upper": 0.1}},
            "signoff": {"high": {"approvers": 2, "roles": ["model-risk", "compliance"], "timeout_hours": 2}},
            "approvers": {**approvers, "demo-risk": {"roles": ["model-risk"], "demo": True}},
        }
    )


def _request(governance=None, author="carol", demo=False, policy=None, run="run-1", author_key=None):
    """The sign-off as the run opens it: each approver's key pinned (a demo identity's only in a demo run), the
    author's key (by default the author's own) recorded."""
    pinned = {name: [KEYS[name].public.openssh] for name in ("alice", "bob", "carol", "dave")}
    pinned["demo-risk"] = [KEYS["demo-risk"].public.openssh] if demo else []
    opener = author_key or KEYS.get(author, KEYS["erin"])
    return Request(
        model="credit-risk:v1",
        flow_run_id=run,
        author=author,
        tier="high",
        policy=policy or (governance.signoff_policy if governance else SignoffPolicy()),
        evidence_digest=DIGEST,
        evidence_page="/evidence/index.html",
        requested_at=REQUESTED_AT,
        demo=demo,
        keys=pinned,
        policy_digest=POLICY,
        author_key=opener.public.openssh,
    )


def _answer(approver, decision="approve", digest=DIGEST, comment="", *, key=None, signed_at=SIGNED_AT, run="run-1"):
    """An answer signed as `steward sign` signs it: by the approver's own key unless `key` is given."""
    signer = key or KEYS.get(approver, KEYS["mallory"])
    stamp = signed_at.isoformat()
    statement = answer_statement(
        _request(run=run), decision=decision, comment=comment, evidence_digest=digest, signed_at=stamp
    )
    token = signature_token(stamp, signer.sign(ANSWER, statement))
    return Approval(decision=decision, approver=approver, evidence_digest=digest, comment=comment, signature=token)


def _reason(decision):
    """A comment only where the decision needs one, so the rule under test is the only one broken."""
    return "" if decision == "approve" else "the AUC is too low"


def _refusal(governance, answer, *, progress=Progress(), at=CHECKED_AT, **request):
    return refusal(answer, request=_request(governance, **request), governance=governance, progress=progress, at=at)


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
        "signed_at": SIGNED_AT.isoformat(),
        "signature": answer.signature.split()[1],
        "key": KEYS[answer.approver].public.fingerprint,
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
        "signature": answer.signature,
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
                    "approvers": {"alice": {"roles": ["model-risk"], "keys": [KEYS["alice"].public.openssh]}},
                }
            }
        )


# --- attacks on the signature: each must be refused ---------------------------------------------------------------


def test_an_unsigned_answer_is_refused(governance):
    answer = _answer("alice").model_copy(update={"signature": ""})
    assert _refusal(governance, answer) == (
        "an answer counts only signed by its approver's key: `steward approve` signs, `steward sign RUN` prints one"
    )
    garbled = _answer("alice").model_copy(update={"signature": "yesterday AAAA"})
    assert _refusal(governance, garbled) == "the signature is not `TIME SIGNATURE` as `steward sign` prints it"


def test_one_person_cannot_approve_under_two_names(governance):
    # alice signs bob's answer with her own key: a name is a label, the key is the identity
    reason = _refusal(governance, _answer("bob", key=KEYS["alice"]), progress=Progress().add("alice", ["model-risk"]))
    assert reason is not None and reason.startswith("the signature is not by a key registered to bob (SHA256:")
    # nor can one key be registered under a second name
    twice = governance.model_dump(by_alias=True)
    twice["approvers"]["bob"]["keys"] = [KEYS["alice"].public.openssh]
    with pytest.raises(ValueError, match=r"approvers\.bob\.keys\.0: key SHA256:\S+ is already alice's"):
        GovernanceParams.model_validate(twice)


def test_a_signature_by_an_unregistered_key_is_refused(governance):
    reason = _refusal(governance, _answer("alice", key=KEYS["mallory"]))
    assert reason == (
        f"the signature is not by a key registered to alice ({KEYS['alice'].public.fingerprint}) over this answer "
        "(model, run, policy, evidence digest, decision and comment as given)"
    )


def test_the_key_that_opened_the_run_may_not_approve_it_under_any_name(governance):
    # carol opens the run as 'erin' (a name anyone can type) with her own key, then approves as carol
    reason = _refusal(governance, _answer("carol"), author="erin", author_key=KEYS["carol"])
    assert (
        reason
        == f"key {KEYS['carol'].public.fingerprint} opened this run and may not approve it (separation of duties)"
    )


def test_a_signature_over_another_answer_does_not_carry_over(governance):
    signed = _answer("alice", digest="cd" * 32)  # signed over another digest, then the digest field swapped back
    swapped = signed.model_copy(update={"evidence_digest": DIGEST})
    assert _refusal(governance, swapped).startswith("the signature is not by a key registered to alice")
    rejected = _answer("bob", "reject", comment="AUC low")
    as_approval = rejected.model_copy(update={"decision": "approve", "comment": ""})
    assert _refusal(governance, as_approval).startswith("the signature is not by a key registered to bob")
    reworded = rejected.model_copy(update={"comment": "fine by me"})
    assert _refusal(governance, reworded).startswith("the signature is not by a key registered to bob")


def test_a_signature_replayed_from_another_run_is_refused(governance):
    replayed = _answer("alice", run="run-0")  # alice's genuine approval of another run
    assert _refusal(governance, replayed).startswith("the signature is not by a key registered to alice")
    before = _answer("alice", signed_at=REQUESTED_AT - timedelta(hours=1))  # made before this sign-off existed
    assert _refusal(governance, before) == (
        "signed at 2025-12-31T23:00:00+00:00, outside this sign-off (opened 2026-01-01T00:00:00+00:00, "
        "now 2026-01-01T00:10:00+00:00): sign this answer afresh"
    )


def test_a_key_counts_once(governance):
    progress = Progress().add("someone", ["model-risk"], KEYS["alice"].public.fingerprint)
    assert _refusal(governance, _answer("alice"), progress=progress) == (
        f"key {KEYS['alice'].public.fingerprint} has already approved this run; the tier needs 2 distinct "
        "approvers' keys"
    )


def test_params_refuse_a_human_approver_without_a_key_and_a_demo_identity_with_one(governance):
    keyless = governance.model_dump(by_alias=True)
    keyless["approvers"]["bob"]["keys"] = []
    with pytest.raises(ValueError, match=r"approvers\.bob\.keys: a human approver needs a public key"):
        GovernanceParams.model_validate(keyless)
    keyed = governance.model_dump(by_alias=True)
    keyed["approvers"]["demo-risk"]["keys"] = [KEYS["demo-risk"].public.openssh]
    with pytest.raises(ValueError, match=r"demo-risk\.keys: a demo identity's key lives in the demo's STEWARD_HOME"):
        GovernanceParams.model_validate(keyed)
    rsa = governance.model_dump(by_alias=True)
    rsa["approvers"]["bob"]["keys"] = ["ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC0"]
    with pytest.raises(ValueError, match=r"approvers\.bob\.keys\.0: not an Ed25519 public key"):
        GovernanceParams.model_validate(rsa)


def _opened(governance, ledger, author="erin"):
    """A request recorded as the run records it: signed by the key that opened it."""
    request = _request(governance, author=author)
    request = replace(request, author_signature=KEYS[author].sign(OPENING, request.opening()))
    record = ledger.append(actor=author, action=APPROVAL_REQUESTED, subject=request.model, payload=request.payload())
    return Tally(request, request_seq=record.seq)


def test_every_sign_off_signature_is_verified_again_from_the_ledger_alone(governance, ledger):
    tally = _opened(governance, ledger)
    record_answer.fn(_answer("alice"), tally, governance=governance, ledger=ledger, pause_key="k-1")
    record_answer.fn(
        _answer("bob", "reject", comment="AUC low"), tally, governance=governance, ledger=ledger, pause_key="k-2"
    )
    assert unverified(ledger.records()) == []


def test_a_rewritten_or_forged_sign_off_record_is_named(governance, ledger):
    tally = _opened(governance, ledger)
    granted = record_answer.fn(_answer("alice"), tally, governance=governance, ledger=ledger, pause_key="k-1")
    # someone with the database appends (or rewrites and re-hashes) records: the chain holds, the signatures do not
    forged = {**granted.payload, "approver": "bob", "roles": ["compliance"]}
    ledger.append(actor="bob", action="approval.granted", subject=granted.subject, payload=forged)
    reworded = {**granted.payload, "comment": "approved without reservations"}
    ledger.append(actor="alice", action="approval.granted", subject=granted.subject, payload=reworded)
    unsigned = {**tally.request.payload(), "flow_run_id": "run-2", "author_signature": ""}
    ledger.append(actor="erin", action=APPROVAL_REQUESTED, subject=granted.subject, payload=unsigned)
    assert ledger.verify().ok
    assert unverified(ledger.records()) == [
        "seq 3: approval.granted by bob is not signed by a key seq 1 pinned for bob",
        "seq 4: approval.granted by alice is not signed by a key seq 1 pinned for alice",
        "seq 5: approval.requested of credit-risk:v1 is not signed by its author's key",
    ]

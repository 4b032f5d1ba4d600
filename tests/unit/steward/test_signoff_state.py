"""Where a sign-off stands, read from ledger records: the reading the flow, the tools and the registry share."""

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from steward.db import make_engine
from steward.governance import SignoffPolicy
from steward.ledger import Ledger, Record
from steward.signoff import Progress, Request, Tally, latest, now, open_sign_offs, sign_offs

MODEL = "credit-risk:v1"


@pytest.fixture
def ledger(tmp_path):
    return Ledger(make_engine(f"sqlite:///{tmp_path / 'steward.db'}"))


def _request(ledger, run="run-1", *, model=MODEL, approvers=2, roles=("model-risk", "compliance")):
    request = Request(
        model=model,
        flow_run_id=run,
        author="carol",
        tier="high",
        policy=SignoffPolicy(approvers=approvers, roles=list(roles), timeout_hours=1),
        evidence_digest="ab" * 32,
        evidence_page="index.html",
        requested_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    ledger.append(actor="carol", action="approval.requested", subject=model, payload=request.payload())


def _answer(ledger, action, approver, *, run="run-1", roles=("model-risk",), key=True, decision="approve", model=MODEL):
    payload = {"flow_run_id": run, "approver": approver, "roles": list(roles), "decision": decision}
    if key:
        payload["pause_key"] = f"k-{len(ledger.records())}"
    ledger.append(actor=approver, action=action, subject=model, payload=payload)


def test_a_sign_off_completes_with_the_count_and_every_role(ledger):
    _request(ledger)
    _answer(ledger, "approval.granted", "alice", roles=["model-risk"])
    _answer(ledger, "approval.granted", "erin", roles=["model-risk"])
    state = latest(ledger.records(), model=MODEL)
    assert state.outcome is None and state.progress.granted == ("alice", "erin")
    assert state.progress.summary(state.request.policy) == "2 of 2 approvals; still needed from: compliance"
    _answer(ledger, "approval.granted", "bob", roles=["compliance"])
    assert latest(ledger.records(), model=MODEL).outcome == "approved"


def test_records_of_another_run_and_records_after_the_end_change_nothing(ledger):
    _request(ledger, "run-1", approvers=1, roles=())
    _request(ledger, "run-2", approvers=1, roles=())
    _answer(ledger, "approval.declined", "bob", run="run-1", decision="reject")
    _answer(ledger, "approval.granted", "alice", run="run-1")  # after the end: ignored
    first, second = sign_offs(ledger.records())
    assert (first.outcome, first.progress.granted) == ("rejected", ())
    assert second.outcome is None and [t.request.flow_run_id for t in open_sign_offs(ledger.records())] == ["run-2"]
    assert latest(ledger.records(), model=MODEL).request.flow_run_id == "run-2"
    assert latest(ledger.records(), model=MODEL, flow_run_id="run-1").outcome == "rejected"


@pytest.mark.parametrize(
    ("action", "decision", "outcome"),
    [
        ("approval.declined", "reject", "rejected"),
        ("approval.declined", "request_changes", "changes_requested"),
        ("approval.expired", None, "expired"),
        ("approval.withdrawn", None, "withdrawn"),
    ],
)
def test_each_way_a_sign_off_ends(ledger, action, decision, outcome):
    _request(ledger)
    _answer(ledger, action, "bob", decision=decision)
    assert latest(ledger.records(), model=MODEL).outcome == outcome
    assert open_sign_offs(ledger.records()) == []


def test_only_ended_pauses_use_up_pause_keys_and_escalations_move_the_deadline(ledger):
    _request(ledger)
    state = latest(ledger.records(), model=MODEL)
    assert state.next_pause_key == "signoff-1-1" and state.deadline == datetime(2026, 1, 1, 1, tzinfo=UTC)
    _answer(ledger, "approval.refused", "mallory")
    _answer(ledger, "approval.escalated", "steward-signoff", key=False)  # a sweep: the run still waits on its key
    state = latest(ledger.records(), model=MODEL)
    assert (state.next_pause_key, state.escalations) == ("signoff-1-2", 1)
    assert state.deadline == datetime(2026, 1, 1, 2, tzinfo=UTC)


# --- the same reading, on records built by hand (no database) ------------------------------------------------

REQUESTED_AT = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
RISK_AND_COMPLIANCE = SignoffPolicy(approvers=2, roles=["model-risk", "compliance"], timeout_hours=1.5)


def _plain_request(run="run-1", *, model=MODEL, policy=RISK_AND_COMPLIANCE, demo=False):
    return Request(
        model=model,
        flow_run_id=run,
        author="carol",
        tier="high",
        policy=policy,
        evidence_digest="ef" * 32,
        evidence_page="/evidence/run-1.html",
        requested_at=REQUESTED_AT,
        demo=demo,
    )


def _record(seq, action, payload, *, subject=MODEL):
    return Record(
        seq=seq, ts="", actor="someone", action=action, subject=subject, payload=payload, prev_hash="", hash=""
    )


def _requested(seq, request):
    return _record(seq, "approval.requested", request.payload(), subject=request.model)


def _granted(seq, approver, roles, *, run="run-1", key=True, subject=MODEL):
    payload = {"flow_run_id": run, "approver": approver, "roles": list(roles), "decision": "approve"}
    if key:
        payload["pause_key"] = f"signoff-x-{seq}"
    return _record(seq, "approval.granted", payload, subject=subject)


def _other(seq, action, *, run="run-1", key=True, decision=None, subject=MODEL):
    payload = {"flow_run_id": run}
    if decision is not None:
        payload["decision"] = decision
    if key:
        payload["pause_key"] = f"signoff-x-{seq}"
    return _record(seq, action, payload, subject=subject)


def _tally(request=None, seq=7):
    return Tally(request or _plain_request(), seq)


@pytest.mark.parametrize("demo", [False, True])
def test_a_request_is_recorded_as_plain_json_and_read_back_unchanged(demo):
    request = _plain_request(demo=demo)
    assert request.payload() == {
        "flow_run_id": "run-1",
        "author": "carol",
        "tier": "high",
        "policy": {
            "approvers": 2,
            "roles": ["model-risk", "compliance"],
            "timeout_hours": 1.5,
            "on_timeout": "escalate",
        },
        "evidence_digest": "ef" * 32,
        "evidence_page": "/evidence/run-1.html",
        "requested_at": "2026-03-01T09:30:00+00:00",
        "demo": demo,
        "keys": {},
        "policy_digest": "",
        "author_key": "",
        "author_signature": "",
    }
    assert Request.from_payload(MODEL, json.loads(json.dumps(request.payload()))) == request


def test_a_request_recorded_before_demo_sign_offs_existed_is_not_a_demo():
    payload = _plain_request(demo=True).payload()
    del payload["demo"]
    assert Request.from_payload(MODEL, payload).demo is False


@pytest.mark.parametrize(
    ("escalations", "deadline"),
    [
        (0, datetime(2026, 3, 1, 11, 0, tzinfo=UTC)),  # 09:30 + 1.5 h
        (1, datetime(2026, 3, 1, 12, 30, tzinfo=UTC)),  # + 3 h
        (3, datetime(2026, 3, 1, 15, 30, tzinfo=UTC)),  # + 6 h
    ],
)
def test_each_waiting_period_is_one_timeout_long(escalations, deadline):
    request = _plain_request()
    assert request.deadline(escalations=escalations) == deadline
    assert replace(_tally(request), escalations=escalations).deadline == deadline


def test_progress_collects_names_in_order_and_the_union_of_their_roles():
    progress = Progress().add("alice", ["model-risk"]).add("bob", ["compliance", "audit"])
    assert progress.granted == ("alice", "bob")
    assert progress.roles == {"model-risk", "compliance", "audit"}
    assert Progress().granted == () and Progress().roles == frozenset()


@pytest.mark.parametrize(
    ("approvals", "approvers", "roles", "missing", "complete"),
    [
        ([], 1, [], [], False),
        ([("alice", ["model-risk"])], 1, [], [], True),  # exactly the count, no roles asked
        ([("alice", ["model-risk"])], 2, [], [], False),  # one short
        ([("alice", ["model-risk"]), ("erin", ["x"])], 2, [], [], True),  # exactly two
        ([("alice", ["model-risk"]), ("erin", ["x"]), ("bob", ["y"])], 2, [], [], True),  # more than needed
        ([("alice", ["model-risk"]), ("erin", ["model-risk"])], 2, ["model-risk", "compliance"], ["compliance"], False),
        ([("alice", ["model-risk"]), ("bob", ["compliance"])], 2, ["model-risk", "compliance"], [], True),
        ([("carol", ["model-risk", "compliance"])], 2, ["model-risk", "compliance"], [], False),  # roles, not count
        ([("carol", ["model-risk", "compliance"])], 1, ["model-risk", "compliance"], [], True),
        ([], 1, ["model-risk", "compliance"], ["model-risk", "compliance"], False),
        ([("bob", ["compliance"])], 1, ["model-risk", "compliance"], ["model-risk"], False),
    ],
)
def test_completion_needs_the_count_and_roles_covered_between_the_approvers(
    approvals, approvers, roles, missing, complete
):
    policy = SignoffPolicy(approvers=approvers, roles=roles)
    progress = Progress()
    for name, held in approvals:
        progress = progress.add(name, held)
    assert progress.missing_roles(policy) == missing
    assert progress.complete(policy) is complete


@pytest.mark.parametrize(
    ("approvals", "summary"),
    [
        ([], "0 of 2 approvals; still needed from: model-risk, compliance"),
        ([("bob", ["compliance"])], "1 of 2 approvals; still needed from: model-risk"),
        ([("carol", ["model-risk", "compliance"])], "1 of 2 approvals"),
        ([("carol", ["model-risk", "compliance"]), ("dave", ["audit"])], "2 of 2 approvals"),
    ],
)
def test_progress_reads_as_a_sentence(approvals, summary):
    progress = Progress()
    for name, held in approvals:
        progress = progress.add(name, held)
    assert progress.summary(RISK_AND_COMPLIANCE) == summary


def test_a_fresh_sign_off_waits_on_its_first_pause_until_one_timeout_after_the_request():
    tally = _tally()
    assert (tally.progress, tally.escalations, tally.pauses_used, tally.outcome) == (Progress(), 0, 0, None)
    assert tally.next_pause_key == "signoff-7-1"
    assert tally.deadline == datetime(2026, 3, 1, 11, 0, tzinfo=UTC)


def test_approvals_move_a_sign_off_on_until_the_last_one_completes_it():
    first = _tally().step(_granted(8, "alice", ["model-risk"]))
    assert (first.progress.granted, first.outcome, first.pauses_used) == (("alice",), None, 1)
    assert first.next_pause_key == "signoff-7-2"
    second = first.step(_granted(9, "bob", ["compliance"]))
    assert (second.progress.granted, second.outcome, second.pauses_used) == (("alice", "bob"), "approved", 2)
    assert second.progress.roles == {"model-risk", "compliance"}


@pytest.mark.parametrize(
    ("record", "pauses_used", "escalations"),
    [
        (_other(8, "approval.refused"), 1, 0),
        (_other(8, "approval.refused", key=False), 0, 0),
        (_other(8, "approval.escalated"), 1, 1),
        (_other(8, "approval.escalated", key=False), 0, 1),  # the sweep escalated: the run's pause goes on
        (_granted(8, "alice", ["model-risk"], key=False), 0, 0),
    ],
)
def test_only_records_of_an_ended_pause_use_up_its_key(record, pauses_used, escalations):
    tally = _tally().step(record)
    assert (tally.pauses_used, tally.escalations, tally.outcome) == (pauses_used, escalations, None)
    assert tally.next_pause_key == f"signoff-7-{pauses_used + 1}"


def test_a_refused_answer_changes_nothing_but_the_pause():
    tally = _tally().step(_granted(8, "alice", ["model-risk"])).step(_other(9, "approval.refused"))
    assert tally.progress.granted == ("alice",) and tally.pauses_used == 2 and tally.outcome is None


def test_escalations_add_up_and_move_the_deadline():
    tally = _tally().step(_other(8, "approval.escalated")).step(_other(9, "approval.escalated", key=False))
    assert tally.escalations == 2
    assert tally.deadline == datetime(2026, 3, 1, 14, 0, tzinfo=UTC)  # 09:30 + 3 x 1.5 h


@pytest.mark.parametrize(
    ("record", "outcome"),
    [
        (_other(8, "approval.declined", decision="reject"), "rejected"),
        (_other(8, "approval.declined", decision="request_changes"), "changes_requested"),
        (_other(8, "approval.expired"), "expired"),
        (_other(8, "approval.expired", key=False), "expired"),
        (_other(8, "approval.withdrawn", key=False), "withdrawn"),
    ],
)
def test_a_decline_a_rejecting_timeout_or_a_withdrawal_ends_the_sign_off(record, outcome):
    ended = _tally().step(_granted(7, "alice", ["model-risk"])).step(record)
    assert ended.outcome == outcome
    assert ended.pauses_used == 1 + ("pause_key" in record.payload)
    assert ended.progress.granted == ("alice",)
    for later in (_granted(9, "bob", ["compliance"]), _other(9, "approval.escalated"), _other(9, "approval.refused")):
        assert ended.step(later) == ended


@pytest.mark.parametrize(
    "record",
    [
        _granted(8, "alice", ["model-risk"], run="run-2"),
        _other(8, "approval.declined", run="run-2", decision="reject"),
        _other(8, "approval.escalated", run="run-2"),
        _record(8, "approval.granted", {"approver": "alice", "roles": ["model-risk"], "pause_key": "k"}),
        _other(8, "registry.transition"),  # not a sign-off record
    ],
)
def test_records_of_another_run_or_of_another_kind_change_nothing(record):
    tally = _tally()
    assert tally.step(record) == tally


def test_sign_offs_lists_every_request_in_ledger_order_each_with_its_own_records():
    records = [
        _granted(1, "alice", ["model-risk"], run="run-0"),  # before any request: nothing to move on
        _requested(2, _plain_request("run-2")),
        _requested(3, _plain_request("run-1")),
        _requested(4, _plain_request("run-1", model="credit-risk:v2")),
        _granted(5, "alice", ["model-risk"], run="run-1"),
        _granted(6, "bob", ["compliance"], run="run-1", subject="credit-risk:v2"),
        _other(7, "approval.declined", run="run-2", decision="request_changes"),
        _other(8, "approval.escalated", run="run-9"),  # a run nobody asked about
        _record(9, "approval.refused", {"pause_key": "k"}),  # no run at all
    ]
    found = sign_offs(records)
    assert [(t.request.model, t.request.flow_run_id, t.request_seq) for t in found] == [
        (MODEL, "run-2", 2),
        (MODEL, "run-1", 3),
        ("credit-risk:v2", "run-1", 4),
    ]
    assert [(t.progress.granted, t.outcome, t.pauses_used) for t in found] == [
        ((), "changes_requested", 1),
        (("alice",), None, 1),
        (("bob",), None, 1),
    ]
    assert [t.request_seq for t in sign_offs(list(reversed(records[1:4])))] == [2, 3, 4]
    assert [t.request_seq for t in open_sign_offs(records)] == [3, 4]
    assert [t.request_seq for t in open_sign_offs(records, flow_run_id="run-1")] == [3, 4]
    assert open_sign_offs(records, flow_run_id="run-2") == []
    assert latest(records, model=MODEL).request_seq == 3
    assert latest(records, model=MODEL, flow_run_id="run-2").outcome == "changes_requested"
    assert latest(records, model="credit-risk:v2").request.flow_run_id == "run-1"
    assert latest(records, model="credit-risk:v2", flow_run_id="run-2") is None
    assert latest(records, model="credit-risk:v3") is None
    assert sign_offs([]) == [] and latest([], model=MODEL) is None


def test_a_request_asked_again_for_the_same_run_starts_over():
    records = [
        _requested(1, _plain_request()),
        _granted(2, "alice", ["model-risk"]),
        _requested(3, _plain_request()),
    ]
    (tally,) = sign_offs(records)
    assert (tally.request_seq, tally.progress.granted) == (3, ())


def test_now_is_the_current_time_in_utc():
    before = datetime.now(UTC)
    current = now()
    assert before <= current <= datetime.now(UTC)
    assert current.utcoffset() == timedelta(0)

"""Where a sign-off stands, read from ledger records: the reading the flow, the tools and the registry share."""

from datetime import UTC, datetime

import pytest

from steward.db import make_engine
from steward.ledger import Ledger
from steward.params import SignoffPolicy
from steward.signoff import Request, latest, open_sign_offs, sign_offs

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

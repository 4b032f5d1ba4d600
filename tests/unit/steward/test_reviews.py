"""The review queue: a case resolved once, its decision in the ledger, its resolution a label."""

from __future__ import annotations

import hashlib
import threading

import pytest

from steward.db import make_engine
from steward.ledger import Ledger
from steward.reviews import TOO_MANY_OPEN, ReviewError, ReviewQueue, edited_notes


@pytest.fixture
def queue(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'steward.db'}")
    return ReviewQueue(engine), Ledger(engine)


def test_a_resolution_closes_the_case_and_is_a_ledger_record_and_a_label(queue):
    reviews, ledger = queue
    referral = reviews.open(kind="referral", request_id="a" * 32, reason="P(good) 0.50 in band")
    contest = reviews.open(kind="contest", request_id="b" * 32, reason="my income is higher")
    done = reviews.resolve(contest.id, decision="approve", reviewer="kim", note="payslips checked", ledger=ledger)
    assert (done.request_id, done.decision, done.reviewer) == ("b" * 32, "approve", "kim")
    assert [c.id for c in reviews.list()] == [referral.id]
    record = ledger.records(actions=("review.decision",))[-1]
    with reviews._engine.connect() as connection:  # the salt is kept beside the note, never in the ledger
        salt = connection.exec_driver_sql("SELECT salt FROM review_decisions").scalar_one()
    committed = hashlib.sha256(bytes.fromhex(salt) + b"note\x00" + b'"payslips checked"').hexdigest()
    assert record.actor == "kim" and record.payload == {
        "case": contest.id,
        "kind": "contest",
        "request_id": "b" * 32,
        "decision": "approve",
        "note_commitment": committed,  # the note itself stays erasable, out of the ledger
    }
    assert "payslips" not in record.to_json() and salt not in record.to_json()
    assert [(r.request_id, r.decision) for r in reviews.resolutions()] == [("b" * 32, "approve")]
    assert ledger.verify().ok and edited_notes(reviews._engine, ledger) == []


def test_an_edited_note_no_longer_matches_its_commitment_and_an_erased_one_is_not_checked(queue):
    reviews, ledger = queue
    case = reviews.open(kind="contest", request_id="c" * 32, reason="r")
    reviews.resolve(case.id, decision="decline", reviewer="kim", note="arrears on two loans", ledger=ledger)
    with reviews._engine.begin() as connection:
        connection.exec_driver_sql("UPDATE review_decisions SET note = 'no arrears'")
    assert edited_notes(reviews._engine, ledger) == [
        f"review case {case.id} (ledger seq 1): its note does not match the commitment in the ledger: edited"
    ]
    with reviews._engine.begin() as connection:  # the salt dropped, so the forged note cannot be recomputed
        connection.exec_driver_sql("UPDATE review_decisions SET salt = NULL")
    assert edited_notes(reviews._engine, ledger) == [
        f"review case {case.id} (ledger seq 1): a note is held without its salt: edited"
    ]
    with reviews._engine.begin() as connection:  # what an erasure does: the note and its salt go
        connection.exec_driver_sql("UPDATE review_decisions SET note = '', salt = NULL")
    assert edited_notes(reviews._engine, ledger) == [] and ledger.verify().ok
    with reviews._engine.begin() as connection:  # the label retraining reads, turned around
        connection.exec_driver_sql("UPDATE review_decisions SET decision = 'approve'")
    assert edited_notes(reviews._engine, ledger) == [
        f"review case {case.id} (ledger seq 1): its decision is not the one recorded (decline): edited"
    ]


def test_a_case_is_resolved_once_and_the_refusal_names_the_first_resolution(queue):
    reviews, ledger = queue
    case = reviews.open(kind="referral", request_id="c" * 32, reason="band")
    reviews.resolve(case.id, decision="decline", reviewer="kim", note="arrears", ledger=ledger)
    with pytest.raises(ValueError, match=f"case {case.id} was already resolved: decline by kim"):
        reviews.resolve(case.id, decision="approve", reviewer="lee", note="second look", ledger=ledger)
    assert len(ledger.records(actions=("review.decision",))) == 1


@pytest.mark.parametrize(
    ("case", "reviewer", "note", "message"),
    [(999, "kim", "n", "no review case 999"), (1, " ", "n", "reviewer"), (1, "kim", "", "needs a note")],
)
def test_bad_resolutions_are_refused_and_write_nothing(queue, case, reviewer, note, message):
    reviews, ledger = queue
    reviews.open(kind="referral", request_id="d" * 32, reason="band")
    with pytest.raises(ValueError, match=message):
        reviews.resolve(case, decision="approve", reviewer=reviewer, note=note, ledger=ledger)
    assert ledger.records(actions=("review.decision",)) == [] and len(reviews.list()) == 1


def test_a_request_may_have_at_most_so_many_open_contests_and_a_resolved_one_frees_a_place(queue):
    reviews, ledger = queue
    opened = [reviews.open(kind="contest", request_id="e" * 32, reason=f"r{n}", at_most=3) for n in range(3)]
    reviews.open(kind="referral", request_id="e" * 32, reason="band", at_most=3)  # another kind: counted apart

    with pytest.raises(ReviewError) as refused:
        reviews.open(kind="contest", request_id="e" * 32, reason="r3", at_most=3)

    assert str(refused.value) == TOO_MANY_OPEN.format(request_id="e" * 32, open=3, kind="contest", limit=3)
    assert "at once (3)" in str(refused.value)
    assert [c.reason for c in reviews.list() if c.kind == "contest"] == ["r0", "r1", "r2"]
    assert reviews.open(kind="contest", request_id="f" * 32, reason="other", at_most=3).status == "open"
    reviews.resolve(opened[0].id, decision="approve", reviewer="kim", note="checked", ledger=ledger)
    assert reviews.open(kind="contest", request_id="e" * 32, reason="r3", at_most=3).status == "open"
    assert reviews.open(kind="contest", request_id="e" * 32, reason="r4").status == "open"  # no limit asked


def test_concurrent_contests_never_slip_past_the_limit(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'steward.db'}")
    reviews = ReviewQueue(engine)
    outcomes: list[str] = []
    start = threading.Barrier(8)

    def contest() -> None:
        start.wait()
        try:
            reviews.open(kind="contest", request_id="g" * 32, reason="why", at_most=3)
            outcomes.append("opened")
        except ReviewError:
            outcomes.append("refused")

    threads = [threading.Thread(target=contest) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["opened"] * 3 + ["refused"] * 5
    assert len(reviews.list()) == 3

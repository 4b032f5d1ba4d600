"""The review queue: a case resolved once, its decision in the ledger, its resolution a label."""

from __future__ import annotations

import pytest

from steward.db import make_engine
from steward.ledger import Ledger
from steward.reviews import ReviewQueue


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
    assert record.actor == "kim" and record.payload == {
        "case": contest.id,
        "kind": "contest",
        "request_id": "b" * 32,
        "decision": "approve",
        "note": "payslips checked",
    }
    assert [(r.request_id, r.decision) for r in reviews.resolutions()] == [("b" * 32, "approve")]
    assert ledger.verify().ok


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

"""Personal data in the prediction log: keyed pseudonyms, erasure and retention that leave `steward ledger verify`
passing, and the tampering they must not make possible (an edited part, a silent deletion, a salt destroyed to
hide an edit) caught."""

from __future__ import annotations

import hashlib
import hmac
import json
import stat
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from steward.db import make_engine
from steward.erasure import ErasureError, apply_retention, erase, erasure_problems, snapshot_files
from steward.errors import NotFound
from steward.ledger import Ledger
from steward.log_verify import unmatched_batches
from steward.params import RetentionParams
from steward.personal import PseudonymKeyError, Pseudonyms, check_key, commitment, pseudonym_key
from steward.predictions import Decision, PredictionLog
from steward.reviews import ReviewQueue, edited_notes
from steward.settings import Settings

KEY = "k" * 40
PSEUDONYM = Pseudonyms(KEY, model_name="credit-risk")
DAYS = {"decisions": 30, "inputs": 10, "groups": 20, "outcomes": 30, "reviews": 30}
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def test_a_pseudonym_is_the_keyed_hmac_of_model_name_and_id_and_differs_by_key_and_use_case():
    by_hand = hmac.new(KEY.encode(), b"credit-risk\x00G0001", hashlib.sha256).hexdigest()[:40]
    assert PSEUDONYM("G0001") == "p-" + by_hand
    assert Pseudonyms("j" * 40, model_name="credit-risk")("G0001") != PSEUDONYM("G0001")  # no key, no link
    assert Pseudonyms(KEY, model_name="adult-income")("G0001") != PSEUDONYM("G0001")  # ids of two use cases


def test_the_pseudonym_key_is_made_once_readable_by_its_owner_only_and_a_short_one_is_refused(tmp_path):
    settings = Settings(home=tmp_path, project_dir=tmp_path)
    made = pseudonym_key(settings)
    path = tmp_path / "keys" / "pseudonym.key"
    assert pseudonym_key(settings) == made and len(made) == 64 and stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(PseudonymKeyError, match="at least 32"):
        pseudonym_key(Settings(home=tmp_path, project_dir=tmp_path, pseudonym_key="short"))


def test_a_database_takes_one_pseudonym_key_and_refuses_another(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'steward.db'}")
    check_key(engine, Settings(home=tmp_path, project_dir=tmp_path, pseudonym_key=KEY))
    check_key(engine, Settings(home=tmp_path / "elsewhere", project_dir=tmp_path, pseudonym_key=KEY))  # same key
    with pytest.raises(PseudonymKeyError, match=r"not the one sqlite:///.*steward\.db was written with"):
        check_key(engine, Settings(home=tmp_path / "other", project_dir=tmp_path))  # a key file of its own


def _decision(i: int, subject: str, *, role: str = "production", ts: datetime = NOW) -> Decision:
    return Decision(
        request_id=f"r{i:04d}",
        role=role,
        ts=ts.isoformat(timespec="microseconds"),
        model_name="credit-risk",
        model="credit-risk:v1",
        data_md5="d" * 32,
        subject_id=PSEUDONYM(subject),
        decision="approve" if i % 2 else "decline",
        probability=i / 100,
        latency_ms=2.0,
        groups={"sex": f"sex-of-{subject}", "age_group": "under 25"},
        inputs={} if role == "shadow" else {"credit_amount": 1000 + i, "purpose": f"purpose-of-{subject}"},
    )


@pytest.fixture
def logged(tmp_path):
    """Two subjects, ALICE (decisions 1, 2 and a shadow answer) and BOB (3), sealed; an outcome, a resolved
    contest with a note, and a retraining snapshot for each."""
    engine = make_engine(f"sqlite:///{tmp_path / 'steward.db'}")
    ledger = Ledger(engine)
    log = PredictionLog(engine, ledger)
    for decision in (_decision(1, "ALICE"), _decision(1, "ALICE", role="shadow"), _decision(2, "ALICE")):
        log.add(decision)
    log.add(_decision(3, "BOB"))
    log.flush()
    log.seal()
    log.record_outcome("r0001", "bad", ts=NOW.isoformat())
    log.record_outcome("r0003", "good", ts=NOW.isoformat())
    queue = ReviewQueue(engine)
    for request, words in (("r0002", "ALICE-contest"), ("r0003", "BOB-contest")):
        case = queue.open(kind="contest", request_id=request, reason=f"{words}: my income is higher")
        queue.resolve(case.id, decision="approve", reviewer="kim", note=f"{words} payslips seen", ledger=ledger)
    (tmp_path / "retrain").mkdir()
    snapshot = tmp_path / "retrain" / "snapshot-1.csv"
    snapshot.write_text(f"applicant_id,credit_amount\nALICE,1000\n{PSEUDONYM('ALICE')},1001\nBOB,1003\n")
    return engine, ledger, tmp_path


def _dump(engine) -> str:
    """Every row of every table as text: where a trace of a person would show."""
    with engine.connect() as connection:
        tables = [r[0] for r in connection.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'"))]
        return "\n".join(str(row) for t in tables for row in connection.execute(text(f'SELECT * FROM "{t}"')))


def _verify(engine, ledger) -> list[str]:
    """What `steward ledger verify` checks of the log and personal data, problems only."""
    assert ledger.verify().ok
    return unmatched_batches(engine, ledger).problems + erasure_problems(engine, ledger) + edited_notes(engine, ledger)


def _erase(engine, ledger, home, subject="ALICE", reason="art. 17 request #4711"):
    return erase(
        engine,
        ledger,
        pseudonym=PSEUDONYM(subject),
        subject_id=subject,
        model_name="credit-risk",
        reason=reason,
        actor="dpo",
        id_column="applicant_id",
        snapshots=snapshot_files(home),
    )


def test_erasing_a_subject_leaves_no_trace_of_them_and_every_root_commitment_and_hash_verifiable(logged):
    engine, ledger, home = logged
    assert _verify(engine, ledger) == [] and "purpose-of-ALICE" in _dump(engine)
    removed, record = _erase(engine, ledger, home)
    assert removed.counts() == {
        "decisions": 3,  # two answers to ALICE and the shadow's
        "inputs": 2,
        "groups": 2,  # one row per request
        "outcomes": 1,
        "reviews": 1,
        "notes": 1,
        "snapshot_rows": 2,  # her id as sent and her pseudonym
    }
    assert (record.action, record.actor, record.payload["reason"]) == (
        "personal.erased",
        "dpo",
        "art. 17 request #4711",
    )
    dump = _dump(engine)
    for trace in ("ALICE", PSEUDONYM("ALICE"), "purpose-of-ALICE", "sex-of-ALICE", "1001", "1002"):
        assert trace not in dump, trace
    assert "ALICE" not in (home / "retrain" / "snapshot-1.csv").read_text()
    assert "purpose-of-BOB" in dump and "BOB-contest payslips seen" in dump  # the other subject is untouched
    assert _verify(engine, ledger) == []  # the chain, every interval root, every note commitment
    with pytest.raises(NotFound, match="no decision of credit-risk is about subject 'ALICE'"):
        _erase(engine, ledger, home)  # twice: nothing left to find


@pytest.mark.parametrize(
    ("reason", "message"),
    [("  ", "needs a reason"), ("ALICE asked on the phone", "names the subject's id")],
)
def test_an_erasure_without_a_proper_reason_is_refused_and_changes_nothing(logged, reason, message):
    engine, ledger, home = logged
    before = _dump(engine)
    with pytest.raises(ErasureError, match=message):
        _erase(engine, ledger, home, reason=reason)
    assert _dump(engine) == before and "ALICE" in (home / "retrain" / "snapshot-1.csv").read_text()


def test_an_edited_personal_field_is_caught_against_its_commitment(logged):
    engine, ledger, _ = logged
    with engine.begin() as connection:
        connection.execute(text('UPDATE prediction_inputs SET inputs = \'{"credit_amount": 5, "purpose": "x"}\''))
        connection.execute(text("UPDATE prediction_groups SET groups = '{\"sex\": \"male\"}' WHERE request_id='r0003'"))
    problems = _verify(engine, ledger)
    assert "decision r0001 (production): its inputs does not match the commitment sealed with it" in problems[0]
    assert any("decision r0003 (production): its groups does not match" in p for p in problems)


def test_replacing_or_dropping_a_salt_to_hide_an_edit_is_caught(logged):
    engine, ledger, _ = logged
    with engine.begin() as connection:  # edit BOB's inputs under a salt of the editor's choosing
        connection.execute(
            text("UPDATE prediction_inputs SET inputs = '{}', salt = :s WHERE request_id = 'r0003'"), {"s": "ab" * 32}
        )
        connection.execute(
            text("UPDATE predictions SET subject_salt = NULL WHERE request_id = 'r0001' AND role = 'shadow'")
        )
    assert _verify(engine, ledger) == [
        "decision r0001 (shadow) holds its subject without its salt: the log was edited",
        "decision r0003 (production): its inputs does not match the commitment sealed with it: the log was edited",
    ]


@pytest.mark.parametrize(
    ("statement", "problem"),
    [
        (
            "UPDATE predictions SET subject_id = '', subject_salt = NULL WHERE request_id = 'r0003'",
            "1 decision(s) lost their subject with no erasure or retention record naming it",
        ),
        (
            "DELETE FROM prediction_groups WHERE request_id = 'r0003'",
            "decision r0003 (production): its groups is gone, and no erasure or retention record removed it",
        ),
        (
            "DELETE FROM prediction_inputs WHERE request_id = 'r0003'",
            "decision r0003 (production): its inputs is gone, and no erasure or retention record removed it",
        ),
    ],
)
def test_personal_data_removed_off_the_record_is_named(logged, statement, problem):
    engine, ledger, _ = logged
    with engine.begin() as connection:
        connection.execute(text(statement))
    problems = _verify(engine, ledger)
    assert any(p.startswith(problem) for p in problems), problems


def test_a_removal_pinned_on_an_erasure_that_did_not_make_it_is_named(logged):
    engine, ledger, home = logged
    _, record = _erase(engine, ledger, home)
    with engine.begin() as connection:  # BOB unlinked too, blamed on ALICE's erasure
        connection.execute(
            text(
                "UPDATE predictions SET subject_id = '', subject_salt = NULL, erased_by = :s WHERE request_id = 'r0003'"
            ),
            {"s": record.seq},
        )
    assert _verify(engine, ledger) == [
        f"personal.erased record {record.seq} counts 3 decisions, but 4 name it as what removed them: personal data "
        "was removed off the record, or the record was forged"
    ]


def test_a_decision_cannot_be_changed_under_cover_of_its_erasure(logged):
    engine, ledger, home = logged
    _erase(engine, ledger, home)
    with engine.begin() as connection:  # the erased decision's public fields are still sealed
        connection.execute(text("UPDATE predictions SET decision = 'approve' WHERE request_id = 'r0002'"))
    assert any("the log was edited" in p for p in unmatched_batches(engine, ledger).problems)


def _aged(tmp_path):
    """ANNA decided 40 days ago (past every period), BEN 15 days ago (past inputs' only), CARL today."""
    engine = make_engine(f"sqlite:///{tmp_path / 'steward.db'}")
    ledger = Ledger(engine)
    log = PredictionLog(engine, ledger)
    for i, (subject, age) in enumerate((("ANNA", 40), ("BEN", 15), ("CARL", 0)), start=1):
        log.add(_decision(i, subject, ts=NOW - timedelta(days=age)))
        log.flush()
        log.record_outcome(f"r{i:04d}", "good", ts=(NOW - timedelta(days=age)).isoformat())
        case = ReviewQueue(engine).open(kind="contest", request_id=f"r{i:04d}", reason=f"{subject} contests")
        with engine.begin() as connection:
            when = (NOW - timedelta(days=age)).replace(tzinfo=None).isoformat(sep=" ")
            connection.execute(text("UPDATE reviews SET opened_at = :t WHERE id = :c"), {"t": when, "c": case.id})
    log.seal()
    return engine, ledger


def test_retention_retires_each_kind_past_its_period_and_records_the_counts(tmp_path):
    engine, ledger = _aged(tmp_path)
    removed, record = apply_retention(engine, ledger, model_name="credit-risk", days=DAYS, now=NOW)
    assert removed.counts() == {
        "decisions": 1,  # ANNA's
        "inputs": 2,  # ANNA's and BEN's
        "groups": 1,  # ANNA's (BEN's are within 20 days)
        "outcomes": 1,
        "reviews": 1,
        "notes": 0,
        "snapshot_rows": 0,
    }
    assert record.action == "retention.applied" and record.payload["days"] == DAYS
    dump = _dump(engine)
    assert "purpose-of-ANNA" not in dump and "sex-of-ANNA" not in dump and "ANNA contests" not in dump
    assert PSEUDONYM("ANNA") not in dump and "purpose-of-BEN" not in dump and "sex-of-BEN" in dump
    assert "purpose-of-CARL" in dump and "CARL contests" in dump
    assert _verify(engine, ledger) == []
    again, _ = apply_retention(engine, ledger, model_name="credit-risk", days=DAYS, now=NOW)
    assert set(again.counts().values()) == {0} and _verify(engine, ledger) == []


def test_no_salt_left_behind_opens_a_removed_part_to_guessing(tmp_path):
    engine, ledger = _aged(tmp_path)
    apply_retention(engine, ledger, model_name="credit-risk", days=DAYS, now=NOW)
    with engine.connect() as connection:  # BEN's inputs went (15 days > 10) while his subject stays linked
        committed = connection.execute(text("SELECT commitments FROM predictions WHERE request_id = 'r0002'")).scalar()
        salts = [
            r[0]
            for q in (
                "SELECT subject_salt FROM predictions",
                "SELECT salt FROM prediction_groups",
                "SELECT salt FROM prediction_inputs",
            )
            for r in connection.execute(text(q))
            if r[0]
        ]
    inputs = json.loads(committed)["inputs"]
    truth = {"credit_amount": 1002, "purpose": "purpose-of-BEN"}
    assert salts and all(commitment(salt, "inputs", truth) != inputs for salt in salts)  # even the true guess fails


def test_a_decision_retired_early_under_cover_of_retention_is_named(tmp_path):
    engine, ledger = _aged(tmp_path)
    young = (NOW - timedelta(days=1)).isoformat(timespec="microseconds")
    with engine.begin() as connection:  # CARL's decision back-dated for the run, then put back
        connection.execute(
            text("UPDATE predictions SET ts = :t WHERE request_id = 'r0003'"), {"t": "2020-01-01T00:00:00+00:00"}
        )
    _, record = apply_retention(engine, ledger, model_name="credit-risk", days=DAYS, now=NOW)
    with engine.begin() as connection:
        connection.execute(text("UPDATE predictions SET ts = :t WHERE request_id = 'r0003'"), {"t": young})
    problems = erasure_problems(engine, ledger)
    assert f"retention record {record.seq} removed 1 decisions logged after its cut-off" in problems[0], problems


def test_retention_leaves_other_use_cases_rows_alone(tmp_path):
    engine, ledger = _aged(tmp_path)
    removed, _ = apply_retention(engine, ledger, model_name="adult-income", days=DAYS, now=NOW)
    assert set(removed.counts().values()) == {0} and "purpose-of-ANNA" in _dump(engine)


def test_a_part_may_not_outlive_its_decisions_subject():
    with pytest.raises(ValueError, match=r"privacy.retention.inputs \(800 days\) must not exceed"):
        RetentionParams(decisions=730, inputs=800)
    with pytest.raises(ValueError, match=r"privacy.retention.reviews \(800 days\) must not exceed"):
        RetentionParams(decisions=730, reviews=800)


def test_a_decisions_proof_shows_its_public_fields_and_commitments_and_verifies_after_erasure(logged):
    from steward.log_verify import proof

    engine, ledger, home = logged
    before = proof(engine, "r0003")
    assert before.verify() and "BOB" not in before.to_json() and PSEUDONYM("BOB") not in before.to_json()
    assert set(before.decision) == {*asdict(_decision(3, "BOB")).keys(), "commitments"} - {
        "subject_id",
        "groups",
        "inputs",
    }
    _erase(engine, ledger, home, subject="BOB")
    after = proof(engine, "r0003")
    assert after.verify() and after.decision == before.decision  # the same leaf: the commitments stayed

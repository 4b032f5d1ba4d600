"""The ledger anchored outside its database: each attack by someone who can write the database (but not the
anchor) must be detected against the signed checkpoints, naming where the ledger first diverges."""

import hashlib
import json

import pytest
from sqlalchemy import text

from steward.anchor import (
    KIND,
    TRIGGERS,
    Checkpoint,
    Checkpoints,
    FileAnchor,
    anchor_from,
    sign_checkpoint,
    verifying_keys,
)
from steward.anchor_verify import Exported, verify
from steward.db import make_engine
from steward.keys import instance_key, new_key
from steward.ledger import ACTIONS, DECISIONS_BATCH, ROLLBACK, Ledger
from steward.settings import Settings


@pytest.fixture
def settings(tmp_path):
    return Settings(project_dir=tmp_path, home=tmp_path / "home")


@pytest.fixture
def engine(settings):
    return make_engine(settings.db_url)


@pytest.fixture
def anchor(settings):
    return anchor_from(None, settings=settings)


@pytest.fixture
def key(settings):
    return instance_key(settings)


@pytest.fixture
def ledger(engine, anchor, key):
    return Ledger(engine, checkpoints=Checkpoints(engine, anchor, key, every_seconds=3600))


def _note(ledger, n, action="gate.verdict"):
    """A record that triggers no checkpoint by itself (a gate verdict), or `action`."""
    return ledger.append(actor=f"user-{n}", action=action, subject="credit-risk:v1", payload={"n": n})


def _checkpoint(ledger):
    return ledger.checkpoints.write()


def _sql(engine, statement, **params):
    with engine.begin() as connection:
        connection.execute(text(statement), params)


def _recompute_from(engine, seq, *, payload):
    """The attack the chain alone cannot see: edit record `seq` and recompute its hash and every later one
    (sha256 done here, independently of steward.ledger), so the stored chain is valid again."""
    with engine.begin() as connection:
        rows = connection.execute(text("SELECT * FROM ledger ORDER BY seq")).mappings().all()
        prev = "0" * 64
        for row in rows:
            body = {k: row[k] for k in ("seq", "ts", "actor", "action", "subject")}
            body["payload"] = payload if row["seq"] == seq else json.loads(row["payload"])
            if row["seq"] >= seq:
                canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
                digest = hashlib.sha256((prev + canonical).encode()).hexdigest()
                connection.execute(
                    text("UPDATE ledger SET payload = :p, prev_hash = :prev, hash = :h WHERE seq = :s"),
                    {"p": json.dumps(body["payload"]), "prev": prev, "h": digest, "s": row["seq"]},
                )
                prev = digest
            else:
                prev = row["hash"]


@pytest.fixture
def history(ledger, engine):
    """Seven records, checkpointed after records 2, 5 and 7 (written without the hook, so only there)."""
    for n in range(1, 8):
        _note(Ledger(engine), n)
        if n in (2, 5, 7):
            _checkpoint(ledger)
    return ledger


def test_an_untouched_ledger_verifies_against_its_checkpoints(history, anchor, settings):
    report = verify(history, anchor, verifying_keys(settings))
    assert report.ok and report.checkpoints == 3 and report.first_divergence is None, report.problems
    assert "covers records 1..7 of 7" in report.summary
    lines = (settings.state_dir / "ledger-checkpoints.jsonl").read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [2, 5, 7]


def test_an_edited_record_is_named(history, anchor, settings, engine):
    _sql(engine, "UPDATE ledger SET payload = '{\"n\": 99}' WHERE seq = 4")
    report = verify(history, anchor, verifying_keys(settings))
    assert not report.ok and report.first_divergence == 4
    assert report.problems[0].startswith("the chain breaks at record 4")


def test_a_recomputed_chain_is_caught_by_the_first_checkpoint_after_the_edit(history, anchor, settings, engine):
    _recompute_from(engine, 4, payload={"n": 99})
    assert history.verify().ok  # the chain alone is fooled: that is the attack

    report = verify(history, anchor, verifying_keys(settings))

    assert not report.ok and report.first_divergence == 3  # record 2 still matches checkpoint 1: 3..5 diverge
    assert report.problems[0].startswith("rewritten: record 5's hash differs from checkpoint 2 of ")
    assert "a record in 3..5 was changed" in report.problems[0]
    assert "record 2 still matches checkpoint 1" in report.problems[0]


def test_a_recomputed_chain_from_the_first_record_is_named_from_the_start(history, anchor, settings, engine):
    _recompute_from(engine, 1, payload={"n": 0})
    report = verify(history, anchor, verifying_keys(settings))
    assert not report.ok and report.first_divergence == 1
    assert "a record in 1..2 was changed" in report.problems[0]


@pytest.mark.parametrize(("cut_after", "first"), [(6, 7), (4, 5), (0, 1)])
def test_a_truncated_tail_is_named(history, anchor, settings, engine, cut_after, first):
    _sql(engine, "DELETE FROM ledger WHERE seq > :n", n=cut_after)
    assert history.verify().ok  # a shorter chain is a valid chain
    report = verify(history, anchor, verifying_keys(settings))
    assert not report.ok and report.first_divergence == first
    assert report.problems[0].startswith(f"truncated: records {first}..")


def test_a_truncated_tail_with_new_records_in_its_place_is_a_rewrite(history, anchor, settings, engine):
    _sql(engine, "DELETE FROM ledger WHERE seq > 5")
    Ledger(engine).append(actor="mallory", action="gate.verdict", subject="credit-risk:v1", payload={"n": 6})
    Ledger(engine).append(actor="mallory", action="gate.verdict", subject="credit-risk:v1", payload={"n": 7})
    report = verify(history, anchor, verifying_keys(settings))
    assert not report.ok and report.first_divergence == 6
    assert report.problems[0].startswith("rewritten: record 7's hash differs from checkpoint 3")


@pytest.mark.parametrize(("deleted", "message"), [(1, "checkpoint(s) 2 missing"), (0, "checkpoint(s) 1 missing")])
def test_a_deleted_checkpoint_is_detected(history, anchor, settings, deleted, message):
    path = settings.state_dir / "ledger-checkpoints.jsonl"
    lines = path.read_text().splitlines()
    del lines[deleted]
    path.write_text("\n".join(lines) + "\n")
    report = verify(history, anchor, verifying_keys(settings))
    assert not report.ok and any(p.startswith(message) for p in report.problems), report.problems


def test_all_checkpoints_deleted_leaves_a_ledger_nothing_vouches_for(history, anchor, settings):
    (settings.state_dir / "ledger-checkpoints.jsonl").unlink()
    report = verify(history, anchor, verifying_keys(settings))
    assert not report.ok and "holds no checkpoint" in report.problems[0]


def test_a_replaced_or_forged_checkpoint_is_detected(history, anchor, settings, tmp_path):
    path = settings.state_dir / "ledger-checkpoints.jsonl"
    lines = path.read_text().splitlines()
    second = Checkpoint.from_json(lines[1])
    other = new_key(tmp_path / "mallory")  # someone else's key: a well-formed checkpoint, the wrong signer
    forged = sign_checkpoint(other, number=2, seq=second.seq, head="f" * 64, prev=second.prev, ts=second.ts)
    lines[1] = forged.to_json()
    path.write_text("\n".join(lines) + "\n")
    report = verify(history, anchor, verifying_keys(settings))
    assert not report.ok
    assert any(p.startswith("checkpoint 2 (seq 5) is not signed by the instance key") for p in report.problems)
    assert any(p.startswith("checkpoint(s) 2 missing") for p in report.problems)  # the forged one is not counted


def test_sign_offs_routing_changes_and_rollbacks_checkpoint_on_commit_and_batches_do_not(ledger, anchor):
    assert {"approval.granted", "approval.declined", "rollout.step", ROLLBACK, "registry.transition"} <= TRIGGERS
    assert DECISIONS_BATCH not in TRIGGERS and set(ACTIONS) >= TRIGGERS
    done = _note(ledger, 1, action=ROLLBACK)
    assert (anchor.newest().seq, anchor.newest().head) == (done.seq, done.hash)
    _note(ledger, 2, action=DECISIONS_BATCH)  # the newest checkpoint is fresh: the batch waits for the next
    assert anchor.newest().seq == 1
    done = _note(ledger, 3, action="approval.granted")
    assert (anchor.newest().number, anchor.newest().seq, anchor.newest().head) == (2, 3, done.hash)


def test_a_record_inside_a_callers_transaction_is_checkpointed_after_commit_and_never_if_rolled_back(
    ledger, anchor, engine
):
    from sqlalchemy.orm import Session

    with Session(engine) as session, session.begin():
        ledger.append(actor="a", action="rollout.step", subject="s", payload={}, session=session)
        assert anchor.newest() is None  # not before the commit
    assert anchor.newest().seq == 1
    with pytest.raises(RuntimeError), Session(engine) as session, session.begin():
        ledger.append(actor="a", action="rollout.step", subject="s", payload={}, session=session)
        raise RuntimeError("the caller's transaction fails")
    assert Ledger(engine).head()[0] == 1 and anchor.newest().seq == 1


def test_a_quiet_ledger_is_checkpointed_once_the_interval_passes(engine, anchor, key):
    ledger = Ledger(engine, checkpoints=Checkpoints(engine, anchor, key, every_seconds=1e-6))
    ledger.checkpoint_if_due()
    assert anchor.newest() is None  # an empty ledger: nothing to vouch for
    _note(ledger, 1, action=DECISIONS_BATCH)  # the first checkpoint is due at once: none exists
    first = anchor.newest()
    assert first.seq == 1
    _note(Ledger(engine), 2)  # written by a process without an anchor: only the heartbeat covers it
    ledger.checkpoints._quiet_until = 0.0
    ledger.checkpoint_if_due()
    assert anchor.newest().seq == 2 and anchor.newest().prev == first.digest


def test_a_checkpoint_that_cannot_be_written_keeps_the_record_and_says_why(engine, key, tmp_path, caplog):
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the anchor's folder should be")
    ledger = Ledger(engine, checkpoints=Checkpoints(engine, FileAnchor(blocked / "cp.jsonl"), key))
    record = ledger.append(actor="a", action="rollback", subject="s", payload={})
    assert Ledger(engine).records() == [record]
    assert ledger.checkpoints.last_error.startswith(f"ledger checkpoint not written to {blocked / 'cp.jsonl'}")
    assert ledger.checkpoints.last_error in caplog.text


def test_a_checkpoint_is_a_signed_statement_of_its_head(history, anchor, key):
    newest = anchor.newest()
    assert key.public.verifies(KIND, newest.statement(), newest.signature)
    assert newest.signer == key.public.fingerprint
    assert newest.digest == hashlib.sha256(newest.to_json().encode()).hexdigest()
    assert not key.public.verifies("approval", newest.statement(), newest.signature)  # domain-separated


def test_an_exported_copy_is_checked_against_the_same_anchor(history, anchor, settings, tmp_path):
    from steward.ledger import read_jsonl

    path = tmp_path / "ledger.jsonl"
    history.export_jsonl(path)
    assert verify(Exported(read_jsonl(path)), anchor, verifying_keys(settings)).ok
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:4]) + "\n")
    report = verify(Exported(read_jsonl(path)), anchor, verifying_keys(settings))
    assert report.first_divergence == 5 and report.problems[0].startswith("truncated: records 5..7")


def test_instances_sharing_an_anchor_each_sign_and_all_their_keys_are_needed(engine, anchor, key, tmp_path):
    other = new_key(tmp_path / "replica")  # a second instance (another STEWARD_HOME) writing to the same anchor
    ours, theirs = Checkpoints(engine, anchor, key), Checkpoints(engine, anchor, other)
    for n, writer in enumerate((ours, theirs, ours), start=1):
        _note(Ledger(engine), n)
        writer.write()
    ours_print, theirs_print = key.public.fingerprint, other.public.fingerprint
    assert [c.signer for c in anchor.read().checkpoints] == [ours_print, theirs_print, ours_print]
    assert verify(Ledger(engine), anchor, [key.public, other.public]).ok
    alone = verify(Ledger(engine), anchor, [key.public])
    assert not alone.ok and alone.problems[0].startswith("checkpoint 2 (seq 2) is not signed by the instance key(s)")
    assert not verify(Ledger(engine), anchor, []).ok  # no key: no checkpoint counts


def test_the_prediction_logs_flush_thread_is_the_heartbeat_of_a_quiet_service(engine, anchor, key):
    import time

    from steward.predictions import PredictionLog

    ledger = Ledger(engine, checkpoints=Checkpoints(engine, anchor, key, every_seconds=0.05))
    _note(ledger, 1)
    assert anchor.newest().seq == 1
    _note(Ledger(engine), 2)  # a record no hook anchored (another process, without an anchor)
    log = PredictionLog(engine, ledger, flush_seconds=0.01)
    log.start()
    try:
        deadline = time.monotonic() + 10
        while anchor.newest().seq < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        log.stop()
    assert anchor.newest().seq == 2  # written by the idle flush loop, with no decision served

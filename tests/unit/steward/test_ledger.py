import hashlib
import io
import json
import os
import re
import threading
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import event, text

from steward.db import make_engine
from steward.ledger import (
    ACTIONS,
    GENESIS_HASH,
    HASH_BROKEN,
    SEQ_BROKEN,
    UNKNOWN_ACTION,
    Ledger,
    LedgerError,
    Record,
    VerifyResult,
    read_jsonl,
    verify_records,
)
from steward.registry import Registry, State


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'steward.db'}"


@pytest.fixture
def ledger(url):
    return Ledger(make_engine(url))


def _fill(ledger, count=5):
    return [
        ledger.append(actor=f"user-{n}", action="gate.verdict", subject="credit-risk:v1", payload={"n": n, "ok": True})
        for n in range(1, count + 1)
    ]


def _sql(ledger, statement, **params):
    with ledger._engine.begin() as connection:
        connection.execute(text(statement), params)


def test_chain_matches_an_independent_sha256(ledger):
    payload = {"verdict": "pass", "auc": 0.81, "groups": ["a", "b"], "note": "déjà vu"}
    ledger.append(actor="alice", action="gate.verdict", subject="credit-risk:v1", payload=payload)
    ledger.append(actor="bob", action="approval.granted", subject="credit-risk:v1", payload={})
    records = ledger.records()

    prev = "0" * 64
    for seq, record in enumerate(records, start=1):
        body = {
            "seq": seq,
            "ts": record.ts,
            "actor": record.actor,
            "action": record.action,
            "subject": record.subject,
            "payload": record.payload,
        }
        text_ = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        assert record.seq == seq
        assert record.prev_hash == prev
        assert record.hash == hashlib.sha256((prev + text_).encode()).hexdigest()
        prev = record.hash
    assert records[0].payload == payload
    assert records[0].ts.endswith("+00:00") and len(records[0].ts.split(".")[1]) == len("123456+00:00")
    assert ledger.verify() == VerifyResult(ok=True, count=2, first_bad_seq=None, problem="chain intact: 2 records")


def test_records_filter_by_subject_and_seq(ledger):
    _fill(ledger, 3)
    ledger.append(actor="ops", action="rollback", subject="hiring:v2", payload={"reason": "breach"})
    assert [r.seq for r in ledger.records(subject="hiring:v2")] == [4]
    assert [r.seq for r in ledger.records(since_seq=2)] == [3, 4]
    assert [r.seq for r in ledger.records(subject="credit-risk:v1", since_seq=1)] == [2, 3]


def test_an_empty_ledger_verifies(ledger):
    assert ledger.verify() == VerifyResult(ok=True, count=0, first_bad_seq=None, problem="the ledger is empty")


EDITED = "record 3: its hash does not match its contents (edited)"
UNLINKED = "record 3: prev_hash does not match the hash of the record before it"


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        ('UPDATE ledger SET payload = \'{"n": 3, "ok": false}\' WHERE seq = 3', EDITED),
        ('UPDATE ledger SET payload = \'{"n": 3, "ok": tru\' WHERE seq = 3', EDITED),
        ("UPDATE ledger SET actor = 'mallory' WHERE seq = 3", EDITED),
        ("UPDATE ledger SET action = 'rollback' WHERE seq = 3", EDITED),
        ("UPDATE ledger SET subject = 'hiring:v1' WHERE seq = 3", EDITED),
        ("UPDATE ledger SET ts = '2020-01-01T00:00:00.000000+00:00' WHERE seq = 3", EDITED),
        ("UPDATE ledger SET hash = '" + "f" * 64 + "' WHERE seq = 3", EDITED),
        ("UPDATE ledger SET prev_hash = '" + "0" * 64 + "' WHERE seq = 3", UNLINKED),
        ("DELETE FROM ledger WHERE seq = 3", "record 3 is missing or out of order: found seq 4 in its place"),
    ],
    ids=[
        "edited-payload",
        "payload-no-longer-json",
        "edited-actor",
        "edited-action",
        "edited-subject",
        "edited-ts",
        "edited-hash",
        "edited-prev-hash",
        "deleted-middle",
    ],
)
def test_tampering_is_detected_at_the_first_bad_seq(ledger, tamper, problem):
    _fill(ledger)
    _sql(ledger, tamper)
    count = 4 if tamper.startswith("DELETE") else 5
    assert ledger.verify() == VerifyResult(ok=False, count=count, first_bad_seq=3, problem=problem)


@pytest.mark.parametrize("hashed_as", ["not json", None], ids=["its-text", "null"])
def test_a_payload_that_is_no_longer_json_fails_even_with_a_recomputed_hash(ledger, hashed_as):
    _fill(ledger, 2)
    first = ledger.records()[0]
    body = {"seq": 2, "ts": "t", "actor": "mallory", "action": "rollback", "subject": "s", "payload": hashed_as}
    forged = hashlib.sha256((first.hash + json.dumps(body, sort_keys=True, separators=(",", ":"))).encode()).hexdigest()
    _sql(
        ledger,
        "UPDATE ledger SET ts = 't', actor = 'mallory', action = 'rollback', subject = 's', payload = 'not json',"
        " hash = :forged WHERE seq = 2",
        forged=forged,
    )
    problem = "record 2: its hash does not match its contents (edited)"
    assert ledger.verify() == VerifyResult(ok=False, count=2, first_bad_seq=2, problem=problem)


def test_reading_records_refuses_a_payload_that_is_no_longer_json(ledger):
    _fill(ledger, 2)
    _sql(ledger, "UPDATE ledger SET payload = 'not json' WHERE seq = 2")
    with pytest.raises(ValueError):
        ledger.records()
    assert ledger.verify().first_bad_seq == 2


def test_swapped_records_are_detected(ledger):
    _fill(ledger)
    # Exchange the contents of records 2 and 3, each keeping its seq: the stored order is now 1, 3, 2, 4, 5.
    columns = ["ts", "actor", "action", "subject", "payload", "prev_hash", "hash"]
    rows = {r.seq: r for r in ledger.records()}
    _sql(ledger, "UPDATE ledger SET hash = 'tmp' WHERE seq = 2")  # hash is unique
    for seq, other in ((3, 2), (2, 3)):
        values = {c: getattr(rows[other], c) for c in columns}
        values["payload"] = json.dumps(values["payload"])
        _sql(ledger, f"UPDATE ledger SET {', '.join(f'{c} = :{c}' for c in columns)} WHERE seq = {seq}", **values)
    problem = "record 2: prev_hash does not match the hash of the record before it"
    assert ledger.verify() == VerifyResult(ok=False, count=5, first_bad_seq=2, problem=problem)


def test_deleting_the_first_record_is_detected(ledger):
    _fill(ledger, 3)
    _sql(ledger, "DELETE FROM ledger WHERE seq = 1")
    assert ledger.verify().first_bad_seq == 1


def test_renumbered_chain_after_a_deletion_is_still_detected(ledger):
    _fill(ledger)
    _sql(ledger, "DELETE FROM ledger WHERE seq = 3")
    _sql(ledger, "UPDATE ledger SET seq = seq - 1 WHERE seq > 3")
    assert ledger.verify() == VerifyResult(ok=False, count=4, first_bad_seq=3, problem=UNLINKED)


def test_unknown_actions_and_bad_payloads_are_refused(ledger):
    unknown = UNKNOWN_ACTION.format(action="gate.verdicts", allowed=", ".join(ACTIONS))
    with pytest.raises(LedgerError, match=re.escape(unknown)):
        ledger.append(actor="a", action="gate.verdicts", subject="s", payload={})  # type: ignore[arg-type]
    with pytest.raises(ValueError) as nan:
        json.dumps(float("nan"), allow_nan=False)
    bad = "a ledger payload must be a JSON object of strings, finite numbers, lists and objects: "
    with pytest.raises(LedgerError) as refused:
        ledger.append(actor="a", action="gate.verdict", subject="s", payload={"auc": float("nan")})
    assert str(refused.value) == bad + str(nan.value)
    with pytest.raises(LedgerError) as refused:
        ledger.append(actor="a", action="gate.verdict", subject="s", payload=[1, 2])  # type: ignore[arg-type]
    assert str(refused.value) == bad + "got list"
    assert ledger.records() == []


def test_concurrent_appenders_keep_one_chain(url):
    make_engine(url)
    errors = []
    barrier = threading.Barrier(2)

    def appender(name):
        try:
            own = Ledger(make_engine(url))  # its own engine and connections, like a second process
            barrier.wait()
            for n in range(100):
                own.append(actor=name, action="rollout.step", subject="credit-risk:v1", payload={"n": n})
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=appender, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    records = Ledger(make_engine(url)).records()
    assert [r.seq for r in records] == list(range(1, 201))
    assert Counter(r.actor for r in records) == {"a": 100, "b": 100}
    assert verify_records(records).ok
    assert len({r.prev_hash for r in records}) == 200


def test_export_jsonl_verifies_and_a_tampered_copy_does_not(ledger, tmp_path):
    _fill(ledger, 4)
    path = tmp_path / "out" / "ledger.jsonl"
    assert ledger.export_jsonl(path) == 4
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 4 and json.loads(lines[0])["prev_hash"] == GENESIS_HASH
    assert read_jsonl(path) == ledger.records()
    assert verify_records(read_jsonl(path)).ok

    edited = json.loads(lines[1])
    edited["payload"]["ok"] = False
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("\n".join([lines[0], json.dumps(edited), *lines[2:]]) + "\n", encoding="utf-8")
    result = verify_records(read_jsonl(tampered))
    assert (result.ok, result.first_bad_seq, result.problem) == (False, 2, HASH_BROKEN.format(seq=2))

    swapped = tmp_path / "swapped.jsonl"
    swapped.write_text("\n".join([lines[0], lines[2], lines[1], lines[3]]) + "\n", encoding="utf-8")
    result = verify_records(read_jsonl(swapped))
    assert (result.ok, result.first_bad_seq, result.problem) == (False, 2, SEQ_BROKEN.format(seq=2, found=3))


def test_a_malformed_export_line_is_named(ledger, tmp_path):
    _fill(ledger, 1)
    path = tmp_path / "bad.jsonl"
    ledger.export_jsonl(path)
    path.write_text(path.read_text(encoding="utf-8") + '{"seq": 2}\n', encoding="utf-8")
    with pytest.raises(LedgerError) as refused:
        read_jsonl(path)
    assert str(refused.value) == f"line 2 of {path} is not a ledger record: 'ts'"  # its first missing field


def test_blank_lines_in_an_export_are_skipped_not_the_end(ledger, tmp_path):
    _fill(ledger, 3)
    path = tmp_path / "ledger.jsonl"
    ledger.export_jsonl(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n" + lines[0] + "\n\n  \n" + "\n".join(lines[1:]) + "\n\n", encoding="utf-8")
    assert read_jsonl(path) == ledger.records()


def test_a_payload_edited_to_a_non_json_number_in_an_export_is_detected(ledger, tmp_path):
    _fill(ledger, 3)
    path = tmp_path / "ledger.jsonl"
    ledger.export_jsonl(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    edited = json.loads(lines[1])
    edited["payload"]["n"] = float("nan")  # json.loads reads NaN back; no canonical JSON (and so no hash) has it
    path.write_text("\n".join([lines[0], json.dumps(edited), lines[2]]) + "\n", encoding="utf-8")
    problem = "record 2: its hash does not match its contents (edited)"
    assert verify_records(read_jsonl(path)) == VerifyResult(ok=False, count=3, first_bad_seq=2, problem=problem)


def _register(registry, **kwargs):
    return registry.register(
        name="credit-risk",
        model_tag="credit-risk:abc",
        model_md5="m1",
        data_md5="d1",
        params_hash="p" * 64,
        git_commit=None,
        flow_run_id=None,
        metrics={},
        **kwargs,
    )


def test_registry_transitions_are_ledger_records(url):
    engine = make_engine(url)
    ledger = Ledger(engine)
    registry = Registry(engine, ledger=ledger)
    version = _register(registry, actor="trainer")
    registry.transition(version.id, State.REJECTED, actor="alice")
    records = ledger.records(subject="credit-risk:v1", actions=("registry.transition",))
    assert [(r.actor, r.action, r.payload["from"], r.payload["to"]) for r in records] == [
        ("trainer", "registry.transition", None, "candidate"),
        ("alice", "registry.transition", "candidate", "rejected"),
    ]
    assert records[0].payload == {"from": None, "to": "candidate", "model_tag": "credit-risk:abc", "data_md5": "d1"}
    assert ledger.verify().ok


def test_a_refused_transition_writes_no_record(url):
    engine = make_engine(url)
    ledger = Ledger(engine)
    registry = Registry(engine, ledger=ledger)
    version = _register(registry)
    with pytest.raises(ValueError, match="cannot become"):
        registry.transition(version.id, State.PRODUCTION)
    assert len(ledger.records()) == 1


class _FailingLedger(Ledger):
    """Writes its record, then fails: the caller's transaction must take both back."""

    def append(self, **kwargs):
        super().append(**kwargs)
        raise RuntimeError("ledger unavailable")


def test_a_failing_ledger_append_rolls_the_transition_back(url):
    engine = make_engine(url)
    plain = Registry(engine)
    version = _register(plain)
    failing = Registry(engine, ledger=_FailingLedger(engine))
    with pytest.raises(RuntimeError, match="ledger unavailable"):
        failing.transition(version.id, State.REJECTED, actor="alice")
    assert plain.get(version.id).state is State.CANDIDATE
    with pytest.raises(RuntimeError, match="ledger unavailable"):
        _register(failing)
    assert [v.version for v in plain.list()] == [1]
    assert Ledger(engine).records() == []


def test_export_creates_missing_folders_and_overwrites_an_earlier_export(ledger, tmp_path):
    _fill(ledger, 2)
    path = tmp_path / "a" / "b" / "ledger.jsonl"
    assert ledger.export_jsonl(path) == 2
    _fill(ledger, 1)
    assert ledger.export_jsonl(path) == 3
    assert read_jsonl(path) == ledger.records()
    assert sorted(p.name for p in path.parent.iterdir()) == ["ledger.jsonl"]


def test_export_is_utf8_with_unix_newlines_whatever_the_platform_default(ledger, tmp_path, monkeypatch):
    ledger.append(actor="zoë", action="gate.verdict", subject="credit-risk:v1", payload={"note": "déjà vu"})
    monkeypatch.setattr(io, "text_encoding", lambda encoding, stacklevel=2: encoding or "latin-1")
    path = tmp_path / "ledger.jsonl"
    ledger.export_jsonl(path)
    record = ledger.records()[0]
    expected = json.dumps(
        {
            "seq": 1,
            "ts": record.ts,
            "actor": "zoë",
            "action": "gate.verdict",
            "subject": "credit-risk:v1",
            "payload": {"note": "déjà vu"},
            "prev_hash": "0" * 64,
            "hash": record.hash,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    assert path.read_bytes() == (expected + "\n").encode("utf-8")
    assert read_jsonl(path) == [record]


class _Boom(Exception):
    pass


def test_a_failed_export_leaves_the_previous_export_and_no_partial_file(ledger, tmp_path, monkeypatch):
    _fill(ledger, 3)
    path = tmp_path / "out" / "ledger.jsonl"
    ledger.export_jsonl(path)
    before = path.read_bytes()
    _fill(ledger, 1)

    def broken(self):
        raise _Boom("disk full")

    monkeypatch.setattr(Record, "to_json", broken)
    with pytest.raises(_Boom, match="disk full"):
        ledger.export_jsonl(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["ledger.jsonl"]


def test_the_partial_file_is_a_hidden_sibling_renamed_into_place(ledger, tmp_path, monkeypatch):
    _fill(ledger, 2)
    path = tmp_path / "out" / "ledger.jsonl"
    real_replace = os.replace
    moves = []

    def spy(src, dst):
        moves.append((Path(src).parent, Path(src).name, Path(src).read_bytes(), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    ledger.export_jsonl(path)
    [(folder, name, content, target)] = moves
    assert (folder, target, content) == (path.parent, path, path.read_bytes())
    assert re.fullmatch(r"\.ledger\.jsonl\..+\.part", name), name


def test_an_export_error_is_not_hidden_by_the_cleanup(ledger, tmp_path, monkeypatch):
    _fill(ledger, 1)
    path = tmp_path / "ledger.jsonl"

    def vanishing(src, dst):  # the partial file disappeared before the rename (the folder was cleaned)
        Path(src).unlink()
        raise _Boom("partial file vanished")

    monkeypatch.setattr(os, "replace", vanishing)
    with pytest.raises(_Boom, match="partial file vanished"):
        ledger.export_jsonl(path)
    assert not path.exists()


class _Connection:
    def __init__(self, dialect):
        self.dialect = SimpleNamespace(name=dialect)
        self.statements = []

    def exec_driver_sql(self, statement):
        self.statements.append(statement.upper())


@pytest.mark.parametrize(
    ("dialect", "statements"),
    [("postgresql", ["LOCK TABLE LEDGER IN SHARE ROW EXCLUSIVE MODE"]), ("mysql", []), ("oracle", [])],
)
def test_the_write_lock_on_other_databases(dialect, statements):
    connection = _Connection(dialect)
    Ledger.lock(SimpleNamespace(connection=lambda: connection))
    assert connection.statements == statements


@pytest.fixture
def unordered_reversed(url):
    """An engine whose SQLite returns rows in reverse whenever a query does not say the order."""
    engine = make_engine(url)
    event.listen(engine, "connect", lambda dbapi, _: dbapi.execute("PRAGMA reverse_unordered_selects = ON"))
    engine.dispose()
    return engine


def test_records_come_in_seq_order_whatever_the_database_scans(unordered_reversed):
    ledger = Ledger(unordered_reversed)
    for n, action in enumerate(["rollback", "gate.verdict", "rollback", "gate.verdict"], start=1):
        ledger.append(actor="a", action=action, subject=f"s{n % 2}", payload={"n": n})
    assert [r.seq for r in ledger.records()] == [1, 2, 3, 4]
    assert [r.seq for r in ledger.records(actions=("rollback", "gate.verdict"))] == [1, 2, 3, 4]
    assert [r.seq for r in ledger.records(subject="s1")] == [1, 3]
    assert ledger.verify() == VerifyResult(ok=True, count=4, first_bad_seq=None, problem="chain intact: 4 records")


def test_verifying_an_export_that_is_not_there_names_the_path(tmp_path):
    from steward.errors import NotFound
    from steward.ledger import read_jsonl

    missing = tmp_path / "nowhere" / "ledger.jsonl"
    with pytest.raises(NotFound) as refused:
        read_jsonl(missing)
    assert str(refused.value) == f"no ledger export at {missing}"
    assert isinstance(refused.value, FileNotFoundError)


def test_every_filtered_ledger_read_goes_through_an_index_and_an_old_database_gets_the_indexes(tmp_path):
    import sqlite3

    from steward.db import make_engine

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:  # a ledger table as an older Steward made it: single-column indexes only
        old.execute(
            "CREATE TABLE ledger (seq INTEGER PRIMARY KEY, ts VARCHAR(40), actor VARCHAR(200), action VARCHAR(50),"
            " subject VARCHAR(300), payload TEXT, prev_hash VARCHAR(64), hash VARCHAR(64) UNIQUE)"
        )
        old.execute("CREATE INDEX ix_ledger_action ON ledger (action)")
    make_engine(f"sqlite:///{path}")
    plans = []
    with sqlite3.connect(path) as db:
        for sql in (
            "SELECT * FROM ledger WHERE seq > 0 AND action IN ('approval.requested', 'approval.granted') ORDER BY seq",
            "SELECT * FROM ledger WHERE seq > 7 AND subject = 'm:v1' AND action IN ('approval.granted') ORDER BY seq",
            "SELECT * FROM ledger WHERE action = 'decisions.interval' AND subject >= 'predictions:interval-1' "
            "ORDER BY subject LIMIT 1",
        ):
            plans.append(" ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql)))
    assert all("USING INDEX ix_ledger_" in plan or "USING COVERING INDEX" in plan for plan in plans), plans
    assert "ix_ledger_subject_action_seq" in plans[1] and not any(p.strip() == "SCAN ledger" for p in plans)

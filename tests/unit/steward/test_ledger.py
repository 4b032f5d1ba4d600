import hashlib
import json
import re
import threading
from collections import Counter

import pytest
from sqlalchemy import text

from steward.db import make_engine
from steward.ledger import (
    ACTIONS,
    BAD_PAYLOAD,
    GENESIS_HASH,
    HASH_BROKEN,
    PREV_HASH_BROKEN,
    SEQ_BROKEN,
    UNKNOWN_ACTION,
    Ledger,
    LedgerError,
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
    result = ledger.verify()
    assert (result.ok, result.count, result.first_bad_seq) == (True, 2, None)


def test_records_filter_by_subject_and_seq(ledger):
    _fill(ledger, 3)
    ledger.append(actor="ops", action="rollback", subject="hiring:v2", payload={"reason": "breach"})
    assert [r.seq for r in ledger.records(subject="hiring:v2")] == [4]
    assert [r.seq for r in ledger.records(since_seq=2)] == [3, 4]
    assert [r.seq for r in ledger.records(subject="credit-risk:v1", since_seq=1)] == [2, 3]


def test_an_empty_ledger_verifies(ledger):
    assert ledger.verify().ok and ledger.verify().count == 0


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        ('UPDATE ledger SET payload = \'{"n": 3, "ok": false}\' WHERE seq = 3', HASH_BROKEN),
        ("UPDATE ledger SET actor = 'mallory' WHERE seq = 3", HASH_BROKEN),
        ("UPDATE ledger SET hash = '" + "f" * 64 + "' WHERE seq = 3", HASH_BROKEN),
        ("DELETE FROM ledger WHERE seq = 3", SEQ_BROKEN),
    ],
    ids=["edited-payload", "edited-actor", "edited-hash", "deleted-middle"],
)
def test_tampering_is_detected_at_the_first_bad_seq(ledger, tamper, problem):
    _fill(ledger)
    _sql(ledger, tamper)
    result = ledger.verify()
    assert not result.ok
    assert result.first_bad_seq == 3
    assert result.problem == problem.format(seq=3, found=4)


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
    result = ledger.verify()
    assert (result.ok, result.first_bad_seq, result.problem) == (False, 2, PREV_HASH_BROKEN.format(seq=2))


def test_deleting_the_first_record_is_detected(ledger):
    _fill(ledger, 3)
    _sql(ledger, "DELETE FROM ledger WHERE seq = 1")
    assert ledger.verify().first_bad_seq == 1


def test_renumbered_chain_after_a_deletion_is_still_detected(ledger):
    _fill(ledger)
    _sql(ledger, "DELETE FROM ledger WHERE seq = 3")
    _sql(ledger, "UPDATE ledger SET seq = seq - 1 WHERE seq > 3")
    result = ledger.verify()
    assert (result.ok, result.first_bad_seq, result.problem) == (False, 3, PREV_HASH_BROKEN.format(seq=3))


def test_unknown_actions_and_bad_payloads_are_refused(ledger):
    unknown = UNKNOWN_ACTION.format(action="gate.verdicts", allowed=", ".join(ACTIONS))
    with pytest.raises(LedgerError, match=re.escape(unknown)):
        ledger.append(actor="a", action="gate.verdicts", subject="s", payload={})  # type: ignore[arg-type]
    with pytest.raises(LedgerError, match=BAD_PAYLOAD.split(":")[0]):
        ledger.append(actor="a", action="gate.verdict", subject="s", payload={"auc": float("nan")})
    with pytest.raises(LedgerError, match=BAD_PAYLOAD.split(":")[0]):
        ledger.append(actor="a", action="gate.verdict", subject="s", payload=[1, 2])  # type: ignore[arg-type]
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


def test_a_malformed_export_line_is_named(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"seq": 1}\n', encoding="utf-8")
    with pytest.raises(LedgerError, match="line 1 of"):
        read_jsonl(path)


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

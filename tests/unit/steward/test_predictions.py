import hashlib
import itertools
import json
import threading
import time
from dataclasses import asdict, fields, replace
from typing import ClassVar

import pandas as pd
import pytest

from steward.db import make_engine
from steward.journal import JournalInUse
from steward.ledger import Ledger
from steward.log_verify import batch_rows
from steward.predictions import (
    Decision,
    LogUnavailable,
    PredictionLog,
    batch_digest,
    ship_journals,
)
from steward.reviews import ReviewQueue
from steward.windows import served_pages, served_window, window


def _decision(i, role="production"):
    return Decision(
        request_id=f"r{i:04d}",
        role=role,
        ts=f"2026-01-01T00:00:{i % 60:02d}+00:00",
        model_name="credit-risk",
        model="credit-risk:v1",
        data_md5="d" * 32,
        subject_id=f"a{i}",
        decision="approve" if i % 2 else "decline",
        probability=i / 100,
        latency_ms=1.5,
        groups={"sex": "female" if i % 3 else "male"},
    )


@pytest.fixture
def engine(tmp_path):
    return make_engine(f"sqlite:///{tmp_path / 'steward.db'}")


def _json(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _salts(engine, decision) -> dict[str, bytes]:
    """Each part's salt as stored beside it (a request's groups and inputs share one row per request)."""
    with engine.connect() as connection:
        key = {"r": decision.request_id, "role": decision.role}
        found = {
            "subject": connection.exec_driver_sql(
                "SELECT subject_salt FROM predictions WHERE request_id = :r AND role = :role", key
            ).scalar_one(),
            "groups": connection.exec_driver_sql(
                "SELECT salt FROM prediction_groups WHERE request_id = :r", key
            ).scalar(),
            "inputs": connection.exec_driver_sql(
                "SELECT salt FROM prediction_inputs WHERE request_id = :r", key
            ).scalar(),
        }
    return {part: bytes.fromhex(salt) for part, salt in found.items() if salt}


def _leaf(decision, engine):
    """The leaf by hand: the public fields, and sha256(salt || part || 0x00 || JSON) of each personal part held."""
    salts = _salts(engine, decision)
    parts = {"subject": decision.subject_id, "groups": decision.groups}
    if decision.role != "shadow":
        parts["inputs"] = decision.inputs
    committed = {
        k: hashlib.sha256(salts[k] + k.encode() + b"\x00" + _json(v).encode()).hexdigest()
        for k, v in parts.items()
        if v
    }
    public = {k: v for k, v in asdict(decision).items() if k not in ("subject_id", "groups", "inputs")}
    return hashlib.sha256(_json(public | {"commitments": committed}).encode()).hexdigest()


def _root(hashes):
    """The Merkle root recomputed here with hashlib alone: node = sha256(0x01 || left || right), odd carried up."""
    while len(hashes) > 1:
        hashes = [
            hashlib.sha256(b"\x01" + bytes.fromhex(hashes[i]) + bytes.fromhex(hashes[i + 1])).hexdigest()
            if i + 1 < len(hashes)
            else hashes[i]
            for i in range(0, len(hashes), 2)
        ]
    return hashes[0]


def _expected_root(decisions, engine):
    return _root([_leaf(d, engine) for d in sorted(decisions, key=lambda d: (d.request_id, d.role))])


def test_each_batch_is_written_with_its_merkle_root_and_sealed_by_an_interval_record(engine):
    ledger = Ledger(engine)
    log = PredictionLog(engine, ledger, ledger_interval_seconds=0)  # every batch its own interval
    for i in range(5):
        log.add(_decision(i))
    log.add(_decision(4, role="shadow"))
    written = log.flush()
    assert log.flush() is None and log.pending() == 0
    rows = sorted(batch_rows(engine, 1), key=lambda d: (d.request_id, d.role))
    record = written.sealed
    assert (written.batch, written.count, written.root) == (1, 6, _expected_root(rows, engine))
    assert record.action == "decisions.interval" and record.payload["count"] == 6
    assert record.payload["root"] == written.root  # one batch: the interval's root is the batch's
    assert len(rows) == 6 and rows[0] == _decision(0)


def test_a_failed_write_keeps_the_batch_for_the_next_flush(engine):
    class Broken(Ledger):
        fail = True

        def append(self, **kwargs):
            if self.fail:
                raise RuntimeError("database is locked")
            return super().append(**kwargs)

    ledger = Broken(engine)
    log = PredictionLog(engine, ledger, ledger_interval_seconds=0)
    log.add(_decision(1))
    with pytest.raises(RuntimeError):
        log.flush()
    assert log.pending() == 1 and batch_rows(engine, 1) == []
    ledger.fail = False
    log.add(_decision(2))
    assert log.flush().sealed.payload["count"] == 2


def test_the_background_thread_writes_within_its_interval_and_stop_writes_the_rest(engine):
    log = PredictionLog(engine, Ledger(engine), flush_seconds=0.05)
    log.start()
    log.add(_decision(1))
    deadline = time.monotonic() + 5
    while log.pending() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert log.pending() == 0
    log.add(_decision(2))
    log.stop()
    assert [d.request_id for b in (1, 2) for d in batch_rows(engine, b)] == ["r0001", "r0002"]


def test_a_served_decision_is_known_before_and_after_its_batch_is_written_and_keeps_its_first_outcome(engine):
    log = PredictionLog(engine, Ledger(engine))
    log.add(_decision(7))
    log.add(_decision(8, role="shadow"))
    assert log.served("r0007") and not log.served("r0008")  # a shadow answer was never given to anyone
    log.flush()
    assert log.served("r0007") and not log.served("r0008") and not log.served("nope")
    assert log.record_outcome("r0007", "bad", ts="t1") == "bad"
    assert log.record_outcome("r0007", "good", ts="t2") == "bad"


def test_inputs_are_logged_once_per_request_and_covered_by_the_batch_digest(engine):
    ledger = Ledger(engine)
    log = PredictionLog(engine, ledger)
    sent = {"duration_months": 12, "purpose": "education"}
    log.add(Decision(**{**asdict(_decision(1)), "inputs": sent}))
    log.add(_decision(1, role="shadow"))
    written = log.flush()
    rows = batch_rows(engine, 1)
    assert {d.role: d.inputs for d in rows} == {"production": sent, "shadow": {}}
    assert written.root == _expected_root(rows, engine)
    window = served_window(engine, model="credit-risk:v1")
    assert window[["duration_months", "purpose", "sex", "decision"]].to_dict("records") == [
        {"duration_months": 12, "purpose": "education", "sex": "female", "decision": "approve"}
    ]


def test_an_error_is_logged_but_never_counts_as_a_served_decision(engine):
    log = PredictionLog(engine, Ledger(engine))
    log.add(Decision(**{**asdict(_decision(7)), "decision": "error", "probability": 0.0}))
    assert not log.served("r0007")
    log.flush()
    assert not log.served("r0007") and [d.decision for d in batch_rows(engine, 1)] == ["error"]


def _expected_digest(decisions):
    """sha256 of the JSON list of every field of every decision, ordered by (request id, role): by hand."""
    rows = sorted(
        ({f.name: getattr(d, f.name) for f in fields(d)} for d in decisions), key=lambda r: (r["request_id"], r["role"])
    )
    text = json.dumps(rows, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _changed(value):
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, float):
        return value + 0.25
    return {**value, "extra": 1}


BATCH = [_decision(1), _decision(1, role="shadow"), Decision(**{**asdict(_decision(2)), "inputs": {"amount": 900}})]


@pytest.mark.parametrize("name", [f.name for f in fields(Decision)])
def test_the_digest_covers_every_field_of_a_decision(name):
    assert _expected_digest(BATCH) == batch_digest(BATCH)
    edited = [BATCH[0], replace(BATCH[1], **{name: _changed(getattr(BATCH[1], name))}), BATCH[2]]
    assert batch_digest(edited) == _expected_digest(edited) != batch_digest(BATCH)


def test_the_digest_does_not_depend_on_the_order_decisions_arrive_in():
    batch = [*BATCH, _decision(0, role="shadow")]
    expected = _expected_digest(batch)
    assert {batch_digest(list(order)) for order in itertools.permutations(batch)} == {expected}


def test_the_digest_tells_which_answer_was_production_and_which_the_shadow():
    served = [replace(_decision(1), probability=0.7), replace(_decision(1, role="shadow"), probability=0.3)]
    swapped = [replace(_decision(1, role="shadow"), probability=0.7), replace(_decision(1), probability=0.3)]
    assert batch_digest(served) == _expected_digest(served)
    assert batch_digest(swapped) == _expected_digest(swapped)
    assert batch_digest(served) != batch_digest(swapped)


def test_batches_are_numbered_and_one_interval_record_seals_them_with_count_range_and_root(engine):
    ledger = Ledger(engine)
    log = PredictionLog(engine, ledger)  # a 60 s interval: these batches wait for their seal
    log.add(_decision(1))
    first = log.flush()
    assert (first.batch, first.sealed) == (1, None)
    second = [_decision(5), _decision(3, role="shadow"), _decision(4)]
    for d in second:
        log.add(d)
    assert log.flush().sealed is None and ledger.records() == []
    assert log.seal(force=False) is None  # not due yet
    record = log.seal()
    assert (record.actor, record.action, record.subject) == (
        "steward-serving",
        "decisions.interval",
        "predictions:interval-000000000002",
    )
    opened = record.payload.pop("opened")
    assert record.payload == {
        "first_batch": 1,
        "last_batch": 2,
        "batches": 2,
        "count": 4,
        "root": _root([_expected_root([_decision(1)], engine), _expected_root(second, engine)]),
        "tree": "sha256-merkle/v2",
    }
    assert opened <= record.ts and log.seal() is None  # nothing left to seal
    assert sorted(d.request_id for d in batch_rows(engine, 2)) == ["r0003", "r0004", "r0005"]
    assert Ledger(engine).verify().ok and [r.seq for r in ledger.records()] == [1]


def test_a_failed_write_keeps_its_batch_ahead_of_decisions_added_meanwhile(engine):
    class AddsThenFails(Ledger):
        def append(self, **kwargs):
            log.add(_decision(9))  # served while the batch was being written
            raise RuntimeError("database is locked")

    log = PredictionLog(engine, AddsThenFails(engine), ledger_interval_seconds=0)
    log.add(_decision(1))
    log.add(_decision(2))
    with pytest.raises(RuntimeError, match="database is locked"):
        log.flush()
    log._ledger = Ledger(engine)
    assert log.flush().count == 3
    assert [d.request_id for d in batch_rows(engine, 1)] == ["r0001", "r0002", "r0009"]


def test_stop_without_start_writes_what_is_buffered(engine):
    log = PredictionLog(engine, Ledger(engine))
    log.add(_decision(1))
    log.stop()
    assert log.pending() == 0 and [d.request_id for d in batch_rows(engine, 1)] == ["r0001"]


class _FakeThread:
    made: ClassVar[list["_FakeThread"]] = []

    def __init__(self, *, target, name, daemon):
        self.target, self.name, self.daemon, self.joined = target, name, daemon, []
        _FakeThread.made.append(self)

    def start(self):
        pass

    def join(self, timeout=None):
        self.joined.append(timeout)


class _ScriptedStop:
    """The stop event of the flush loop: `wait` answers from a script and records its timeout."""

    def __init__(self):
        self.script, self.waited, self.stopped = [], [], False

    def wait(self, timeout):
        self.waited.append(timeout)
        return self.script.pop(0) if self.script else True

    def set(self):
        self.stopped = True


def test_the_flush_loop_runs_every_interval_survives_a_failed_write_and_stop_joins_it(engine, monkeypatch):
    class FailsOnce(Ledger):
        failed = False

        def append(self, **kwargs):
            if not self.failed:
                self.failed = True
                raise RuntimeError("database is locked")
            return super().append(**kwargs)

    _FakeThread.made = []
    with monkeypatch.context() as patch:
        patch.setattr(threading, "Thread", _FakeThread)
        patch.setattr(threading, "Event", _ScriptedStop)
        log = PredictionLog(engine, FailsOnce(engine), ledger_interval_seconds=0)  # each write appends
        log.start()
        log.start()
    [thread] = _FakeThread.made
    assert (thread.name, thread.daemon) == ("prediction-log", True)
    log.add(_decision(1))
    log._stop.script = [False, False]  # two intervals pass, then the loop is stopped
    thread.target()
    assert log._stop.waited == [0.1, 0.1, 0.1]  # the default interval
    assert log.pending() == 0 and [d.request_id for d in batch_rows(engine, 1)] == ["r0001"]
    log.add(_decision(2))
    log.stop()
    assert log._stop.stopped and thread.joined == [10]
    assert [d.request_id for d in batch_rows(engine, 2)] == ["r0002"]


def _records(frame, key):
    """The frame's rows as dicts, sorted by `key`, a missing value as None (pandas shows it as NaN)."""
    rows = [{k: None if pd.isna(v) else v for k, v in r.items()} for r in frame.to_dict("records")]
    return sorted(rows, key=lambda r: tuple(r[k] for k in key))


def _served(engine):
    """Decisions of two models over an hour, outcomes for some, a resolved review for one."""
    ledger = Ledger(engine)
    log = PredictionLog(engine, ledger)
    rows = [
        ("r1", "production", "2026-01-01T00:00:00+00:00", "credit-risk:v1"),
        ("r1", "shadow", "2026-01-01T00:00:00+00:00", "credit-risk:v2"),
        ("r2", "canary", "2026-01-01T00:30:00+00:00", "credit-risk:v2"),
        ("r3", "shadow", "2026-01-01T00:40:00+00:00", "credit-risk:v1"),
        ("r4", "production", "2026-01-01T01:00:00+00:00", "credit-risk:v1"),
        ("r5", "production", "2025-12-31T23:59:59+00:00", "credit-risk:v1"),
        ("r6", "production", "2026-01-01T00:10:00+00:00", "hiring:v1"),
        ("r7", "canary", "2026-01-01T00:20:00+00:00", "credit-risk:v1"),
    ]
    for n, (request_id, role, ts, model) in enumerate(rows, start=1):
        log.add(
            Decision(
                request_id=request_id,
                role=role,
                ts=ts,
                model_name=model.partition(":v")[0],
                model=model,
                data_md5="d",
                subject_id=f"a{request_id}",
                decision="approve" if n % 2 else "decline",
                probability=n / 10,
                latency_ms=float(n),
                groups={"sex": "female", "age_band": int(request_id[1:])},  # one request, one applicant
                inputs={} if role == "shadow" else {"amount": n * 100},
            )
        )
    log.flush()
    log.record_outcome("r1", "good", ts="t")
    log.record_outcome("r2", "bad", ts="t")
    log.record_outcome("r6", "bad", ts="t")
    queue = ReviewQueue(engine)
    queue.resolve(
        queue.open(kind="contest", request_id="r7", reason="why").id,
        decision="approve",
        reviewer="rita",
        note="ok",
        ledger=ledger,
    )
    queue.resolve(
        queue.open(kind="contest", request_id="r6", reason="why").id,
        decision="decline",
        reviewer="rita",
        note="ok",
        ledger=ledger,
    )


def test_served_window_has_what_a_model_served_in_the_half_open_interval(engine):
    _served(engine)
    frame = served_window(
        engine, model="credit-risk:v1", since="2026-01-01T00:00:00+00:00", until="2026-01-01T01:00:00+00:00"
    )
    assert _records(frame, ["request_id"]) == [
        {
            "amount": 100,
            "sex": "female",
            "age_band": "1",
            "request_id": "r1",
            "ts": "2026-01-01T00:00:00+00:00",
            "decision": "approve",
            "probability": 0.1,
            "latency_ms": 1.0,
            "outcome": "good",
            "review": None,
        },
        {
            "amount": 800,
            "sex": "female",
            "age_band": "7",
            "request_id": "r7",
            "ts": "2026-01-01T00:20:00+00:00",
            "decision": "decline",
            "probability": 0.8,
            "latency_ms": 8.0,
            "outcome": None,
            "review": "approve",
        },
    ]
    everything = served_window(engine, model="credit-risk:v1")
    assert sorted(everything["request_id"]) == ["r1", "r4", "r5", "r7"]


def test_served_pages_are_the_window_in_time_order_a_page_at_a_time(engine):
    _served(engine)
    pages = list(served_pages(engine, model="credit-risk:v1", page_rows=3))
    assert [len(page) for page in pages] == [3, 1]
    whole = served_window(engine, model="credit-risk:v1")
    assert _records(pd.concat(pages, ignore_index=True), ["ts"]) == _records(whole, ["ts"])
    assert whole["ts"].is_monotonic_increasing


def test_window_has_every_answer_of_the_models_since_a_time_oldest_first_with_outcomes_and_groups(engine):
    _served(engine)
    frame = window(engine, models=["credit-risk:v1", "credit-risk:v2"], since="2026-01-01T00:00:00+00:00")
    got = [{k: None if pd.isna(v) else v for k, v in r.items()} for r in frame.to_dict("records")]
    assert [(r["request_id"], r["role"], r["ts"][11:16], r["outcome"]) for r in got] == [
        ("r1", "production", "00:00", "good"),
        ("r1", "shadow", "00:00", "good"),
        ("r7", "canary", "00:20", None),
        ("r2", "canary", "00:30", "bad"),
        ("r3", "shadow", "00:40", None),
        ("r4", "production", "01:00", None),
    ]
    assert got[3] == {
        "request_id": "r2",
        "role": "canary",
        "ts": "2026-01-01T00:30:00+00:00",
        "model": "credit-risk:v2",
        "subject_id": "ar2",
        "decision": "approve",
        "probability": 0.3,
        "latency_ms": 3.0,
        "outcome": "bad",
        "outcome_ts": "t",
        "sex": "female",
        "age_band": "2",
    }
    assert sorted(window(engine, models=["credit-risk:v1"])["request_id"]) == ["r1", "r3", "r4", "r5", "r7"]


def test_an_empty_window_still_has_its_columns(engine):
    _served(engine)
    frame = window(engine, models=["nobody:v1"])
    assert len(frame) == 0
    assert list(frame.columns) == [
        "request_id",
        "role",
        "ts",
        "model",
        "subject_id",
        "decision",
        "probability",
        "latency_ms",
        "outcome",
        "outcome_ts",
    ]


def test_the_readers_of_one_model_name_never_see_another_model_names_rows(engine):
    log = PredictionLog(engine, Ledger(engine))
    for n, name in enumerate(["credit-risk", "adult-income"] * 3):
        log.add(replace(_decision(n), model_name=name, model=f"{name}:v1", inputs={"x": n}))
    log.flush()
    for name in ("credit-risk", "adult-income"):
        ours = sorted(f"r{n:04d}" for n in range(6) if n % 2 == (name == "adult-income"))
        assert sorted(served_window(engine, model=f"{name}:v1")["request_id"]) == ours
        assert sorted(window(engine, models=[f"{name}:v1"])["request_id"]) == ours
    rows = batch_rows(engine, 1)
    assert {(d.model_name, d.model.partition(":")[0]) for d in rows} == {
        ("credit-risk", "credit-risk"),
        ("adult-income", "adult-income"),
    }


def test_a_prediction_log_of_an_older_steward_is_refused_with_a_message(tmp_path):
    import sqlite3

    from steward.errors import SchemaError

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:  # the log before it was keyed by model name
        old.execute("CREATE TABLE predictions (request_id VARCHAR(64), role VARCHAR(12), applicant_id VARCHAR(200))")
    with pytest.raises(SchemaError, match=r"table predictions lacks ts, model_name, model, data_md5, subject_id"):
        make_engine(f"sqlite:///{path}")


# --- with a journal: answered only once durable, shipped exactly once ---------------------------------------


def _logged(engine):
    with engine.connect() as db:
        return sorted(r for (r,) in db.exec_driver_sql("SELECT request_id FROM predictions"))


def test_a_journalled_decision_survives_a_crash_before_its_batch_and_is_shipped_once(engine, tmp_path):
    log = PredictionLog(engine, Ledger(engine), journal=tmp_path / "journal")
    for i in range(5):
        log.add(_decision(i))
    log.flush()
    for i in range(5, 8):
        log.add(_decision(i))  # acknowledged; the process dies before its batch
    log.journal.close()  # what a kill leaves: the journal's lock let go, nothing flushed
    assert _logged(engine) == [f"r{i:04d}" for i in range(5)]
    after = PredictionLog(engine, Ledger(engine), journal=tmp_path / "journal")
    assert after.pending() == 8  # everything the journal holds, until the database says what it has
    after.flush()
    assert _logged(engine) == [f"r{i:04d}" for i in range(8)] and after.pending() == 0
    after.stop()
    third = PredictionLog(engine, Ledger(engine), journal=tmp_path / "journal")
    assert third.flush() is None and len(_logged(engine)) == 8  # the position was written with the rows
    third.stop()


def test_shipped_decisions_leave_a_quiet_journal_and_one_a_restart_found(engine, tmp_path):
    def held() -> str:
        return "".join(p.read_text() for p in (tmp_path / "journal").glob("*/*.jsonl"))

    log = PredictionLog(engine, Ledger(engine), journal=tmp_path / "journal", journal_segment_seconds=60)
    log.add(_decision(1))
    log.flush()  # in the database; its segment is young, so the journal keeps the copy for now
    log.add(_decision(2))
    log.journal.close()  # killed: r0002 is in the journal only
    assert "r0001" in held()
    after = PredictionLog(
        engine, Ledger(engine), journal=tmp_path / "journal", flush_seconds=0.05, journal_segment_seconds=60
    )
    after.start()
    wait = time.monotonic() + 5
    while ("r000" in held() or _logged(engine) != ["r0001", "r0002"]) and time.monotonic() < wait:
        time.sleep(0.05)
    assert _logged(engine) == ["r0001", "r0002"] and "r000" not in held()  # shipped, then let go: no copy left
    after.stop()
    third = PredictionLog(engine, Ledger(engine), journal=tmp_path / "journal", flush_seconds=0.05)
    third.add(_decision(3))
    third.flush()
    third.journal.close()  # killed once its decision was shipped: only the journal's copy is left to go
    assert "r0003" in held()
    fourth = PredictionLog(engine, Ledger(engine), journal=tmp_path / "journal", flush_seconds=0.05)
    fourth.start()
    wait = time.monotonic() + 5
    while "r0003" in held() and time.monotonic() < wait:
        time.sleep(0.05)
    assert "r0003" not in held() and len(_logged(engine)) == 3
    fourth.stop()


def test_a_referral_opens_its_review_case_with_its_batch_not_on_the_response_path(engine, tmp_path):
    log = PredictionLog(engine, Ledger(engine), journal=tmp_path / "journal")
    log.add(_decision(1), review="P(favourable) 0.500 in band")
    assert ReviewQueue(engine).list() == []
    log.flush()
    [case] = ReviewQueue(engine).list()
    assert (case.kind, case.request_id, case.reason) == ("referral", "r0001", "P(favourable) 0.500 in band")
    log.stop()


class _Down(Ledger):
    down = True

    def append(self, **kwargs):
        if self.down:
            from sqlalchemy.exc import OperationalError

            raise OperationalError("INSERT", {}, Exception("could not connect to server"))
        return super().append(**kwargs)


def test_a_database_out_of_reach_makes_the_log_refuse_until_it_is_back_and_loses_nothing(engine, tmp_path):
    ledger = _Down(engine)
    log = PredictionLog(engine, ledger, journal=tmp_path / "journal", stall_seconds=0.2, ledger_interval_seconds=0)
    log.add(_decision(1))
    with pytest.raises(Exception, match="could not connect"):
        log.flush()
    assert log.unready() is None  # a short outage: the journal holds it
    time.sleep(0.25)
    assert "has not reached the database for" in log.unready()
    with pytest.raises(LogUnavailable, match="has not reached the database"):
        log.add(_decision(2))
    log.add(_decision(3, role="shadow"), durable=False)  # nobody waits for a shadow's answer
    deadline = time.monotonic() + 5
    while log.pending() < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    ledger.down = False
    log.flush()
    assert log.unready() is None and _logged(engine) == ["r0001", "r0003"]
    log.stop()


def test_past_its_backlog_the_log_refuses_naming_how_far_behind_it_is(engine, tmp_path):
    log = PredictionLog(engine, Ledger(engine), journal=tmp_path / "journal", backlog=3)
    for i in range(3):
        log.add(_decision(i))
    with pytest.raises(LogUnavailable, match="3 decisions behind the database \\(at most 3 may wait\\)"):
        log.add(_decision(3))
    log.flush()
    log.add(_decision(3))
    log.stop()
    assert len(_logged(engine)) == 4


def test_a_stop_with_the_database_away_keeps_the_decisions_in_the_journal(engine, tmp_path):
    ledger = _Down(engine)
    log = PredictionLog(engine, ledger, journal=tmp_path / "journal")
    log.add(_decision(1))
    log.stop()  # SIGTERM during an outage: nothing raised, nothing lost
    ledger.down = False
    after = PredictionLog(engine, ledger, journal=tmp_path / "journal")
    after.flush()
    after.stop()
    assert _logged(engine) == ["r0001"]


def test_replicas_take_journals_of_their_own_and_a_dead_ones_is_shipped_by_a_live_one(engine, tmp_path):
    base = tmp_path / "journal"
    first = PredictionLog(engine, Ledger(engine), journal=base)
    second = PredictionLog(engine, Ledger(engine), journal=base)
    assert (first.journal.path.name, second.journal.path.name) == ("0", "1")
    with pytest.raises(JournalInUse, match="needs a journal of its own \\(STEWARD_REPLICA\\)"):
        PredictionLog(engine, Ledger(engine), journal=base, replica="1")
    second.add(_decision(1))
    second.journal.close()  # replica 1 dies and does not come back
    assert ship_journals(engine, Ledger(engine), base) == 1  # replica 0's own journal is held: left alone
    assert _logged(engine) == ["r0001"] and ship_journals(engine, Ledger(engine), base) == 0
    first.stop()


def test_a_decision_proves_its_place_in_its_interval_record_without_the_other_decisions(engine):
    from steward.log_verify import proof
    from steward.merkle import verify_proof

    ledger = Ledger(engine)
    log = PredictionLog(engine, ledger)
    sent = {"duration_months": 12}
    for batch in range(3):  # three batches, one interval: the tree of trees
        for i in range(batch * 5, batch * 5 + 2 + batch):
            log.add(Decision(**{**asdict(_decision(i)), "inputs": sent}))
            log.add(_decision(i, role="shadow"))
        log.flush()
    record = log.seal()
    for request_id, role in [("r0000", "production"), ("r0006", "shadow"), ("r0013", "production")]:
        shown = proof(engine, request_id, role)
        assert shown.verify() and shown.record == record and shown.root == record.payload["root"]
        # recomputed here with hashlib alone: the leaf from the decision, then up the path
        value = hashlib.sha256(
            json.dumps(shown.decision, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        ).hexdigest()
        for side, sibling in shown.path:
            pair = (sibling, value) if side == "left" else (value, sibling)
            value = hashlib.sha256(b"\x01" + bytes.fromhex(pair[0]) + bytes.fromhex(pair[1])).hexdigest()
        assert value == record.payload["root"]
        assert verify_proof(json.loads(json.dumps(shown.decision)), shown.path, record.payload["root"])
        assert not verify_proof({**shown.decision, "decision": "approve!"}, shown.path, record.payload["root"])
    decisions = [d for b in (1, 2, 3) for d in batch_rows(engine, b)]
    by_batch = [_expected_root(batch_rows(engine, b), engine) for b in (1, 2, 3)]
    assert len(decisions) == 18 and record.payload["root"] == _root(by_batch)


def test_a_proof_of_a_decision_not_yet_sealed_says_so(engine):
    from steward.errors import NotFound
    from steward.log_verify import proof

    log = PredictionLog(engine, Ledger(engine))
    log.add(_decision(1))
    log.flush()
    with pytest.raises(NotFound, match="logged but not yet sealed"):
        proof(engine, "r0001")
    with pytest.raises(NotFound, match="no logged decision r0002"):
        proof(engine, "r0002")


def test_batches_a_crash_left_unsealed_are_sealed_by_the_next_write_once_due_and_verify_meanwhile(engine, tmp_path):
    from steward.log_verify import unmatched_batches

    ledger = Ledger(engine)
    crashed = PredictionLog(engine, ledger, journal=tmp_path / "journal", ledger_interval_seconds=0.2)
    crashed.add(_decision(1))
    crashed.flush()  # written with its unsealed entry; the process dies before the interval ends
    crashed.journal.close()
    check = unmatched_batches(engine, ledger)
    assert check.problems == [] and "1 decision(s) in 1 batch(es) from 1 are not yet sealed" in check.unsealed
    other = PredictionLog(engine, ledger, ledger_interval_seconds=0.2)  # another replica, or the next start
    other.add(_decision(2))
    assert other.flush().sealed is None  # the first batch's interval is still open
    time.sleep(0.25)
    other.add(_decision(3))
    record = other.flush().sealed
    assert (record.payload["first_batch"], record.payload["last_batch"], record.payload["count"]) == (1, 3, 3)
    check = unmatched_batches(engine, ledger)
    assert check.problems == [] and check.unsealed is None and (check.checked, check.intervals) == (3, 1)


def test_a_quiet_log_seals_when_its_interval_ends_and_stop_seals_the_rest(engine):
    ledger = Ledger(engine)
    log = PredictionLog(engine, ledger, ledger_interval_seconds=0.1)
    log.add(_decision(1))
    log.flush()
    assert log.seal(force=False) is None
    time.sleep(0.12)
    assert log.seal(force=False).payload["last_batch"] == 1  # what the flush loop's quiet tick does
    log.add(_decision(2))
    log.stop()
    assert [r.payload["last_batch"] for r in ledger.records()] == [1, 2]

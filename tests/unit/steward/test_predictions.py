import hashlib
import json
import time
from dataclasses import asdict

import pytest

from steward.db import make_engine
from steward.ledger import Ledger
from steward.predictions import Decision, PredictionLog, batch_digest, batch_rows


def _decision(i, role="production"):
    return Decision(
        request_id=f"r{i:04d}",
        role=role,
        ts=f"2026-01-01T00:00:{i % 60:02d}+00:00",
        model="credit-risk:v1",
        data_md5="d" * 32,
        applicant_id=f"a{i}",
        decision="approve" if i % 2 else "decline",
        probability=i / 100,
        latency_ms=1.5,
        groups={"sex": "female" if i % 3 else "male"},
    )


@pytest.fixture
def engine(tmp_path):
    return make_engine(f"sqlite:///{tmp_path / 'steward.db'}")


def test_each_batch_is_written_with_a_ledger_record_of_its_count_and_digest(engine):
    ledger = Ledger(engine)
    log = PredictionLog(engine, ledger)
    for i in range(5):
        log.add(_decision(i))
    log.add(_decision(4, role="shadow"))
    record = log.flush()
    assert log.flush() is None and log.pending() == 0
    rows = sorted(batch_rows(engine, 1), key=lambda d: (d.request_id, d.role))
    expected = hashlib.sha256(
        json.dumps([asdict(d) for d in rows], sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()
    assert record.action == "decisions.batch" and record.payload["count"] == 6
    assert record.payload["digest"] == expected == batch_digest(rows)
    assert len(rows) == 6 and rows[0] == _decision(0)


def test_a_failed_write_keeps_the_batch_for_the_next_flush(engine):
    class Broken(Ledger):
        fail = True

        def append(self, **kwargs):
            if self.fail:
                raise RuntimeError("database is locked")
            return super().append(**kwargs)

    ledger = Broken(engine)
    log = PredictionLog(engine, ledger)
    log.add(_decision(1))
    with pytest.raises(RuntimeError):
        log.flush()
    assert log.pending() == 1 and batch_rows(engine, 1) == []
    ledger.fail = False
    log.add(_decision(2))
    assert log.flush().payload["count"] == 2


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
    from steward.predictions import served_window

    ledger = Ledger(engine)
    log = PredictionLog(engine, ledger)
    sent = {"duration_months": 12, "purpose": "education"}
    log.add(Decision(**{**asdict(_decision(1)), "inputs": sent}))
    log.add(_decision(1, role="shadow"))
    record = log.flush()
    rows = batch_rows(engine, 1)
    assert {d.role: d.inputs for d in rows} == {"production": sent, "shadow": {}}
    assert record.payload["digest"] == batch_digest(rows)
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

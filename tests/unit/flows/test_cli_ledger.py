"""`steward ledger verify`: the chain against the configured anchor (or `--against` another), sign-off
signatures and decision batches; every attack exits 1 naming where the ledger first diverges."""

import json
import shutil

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from flows.cli import app
from steward.anchor import anchored
from steward.db import make_engine
from steward.ledger import Ledger
from steward.predictions import Decision, PredictionLog
from steward.settings import Settings


@pytest.fixture
def home(steward_home):
    """A home whose ledger went through an anchored writer: routing-like records, then a batch of decisions."""
    settings = Settings()
    engine = make_engine(settings.db_url)
    ledger = anchored(engine, settings)
    for n in range(1, 5):
        ledger.append(actor="rollout", action="rollout.step", subject="m:v1", payload={"n": n})
    log = PredictionLog(engine, ledger)
    for n in range(3):
        log.add(
            Decision(f"r{n}", "production", "2026-12-01T00:00:00+00:00", "m", "m:v1", "d", f"s{n}", "approve", 0.8, 1.0)
        )
    log.flush()
    log.seal()  # the interval's record (seq 5), as its end or the service's stop writes it
    ledger.append(actor="oncall", action="rollback", subject="m:v1", payload={"n": 6})
    return settings, engine


def _verify(*args):
    result = CliRunner().invoke(app, ["ledger", "verify", *args])
    return result.exit_code, " ".join(result.output.split())


def test_an_untouched_ledger_verifies_against_the_configured_anchor(home):
    settings, _ = home
    code, output = _verify()
    assert code == 0, output
    assert "ledger ok: 6 records" in output
    assert f"anchor {settings.state_dir / 'ledger-checkpoints.jsonl'}: anchored:" in output
    assert "covers records 1..6 of 6" in output and "1 decision batches match the prediction log" in output


def test_a_recomputed_chain_exits_1_naming_the_first_divergence(home):
    _, engine = home
    with engine.begin() as connection:  # replace record 6 by another with a valid hash: the chain is valid again
        row = connection.execute(text("SELECT * FROM ledger WHERE seq = 6")).mappings().one()
        forged = Ledger(engine)  # the attacker's own writer: appends a valid record after deleting the real one
        connection.execute(text("DELETE FROM ledger WHERE seq = 6"))
    forged.append(actor=row["actor"], action="rollback", subject="m:v1", payload={"n": 666})
    code, output = _verify()
    assert code == 1
    assert "ledger diverges from its anchor" in output and "at seq 5:" in output  # checkpoint 4 vouches for 1..4
    assert "rewritten: record 6's hash differs from checkpoint" in output


def test_a_truncated_tail_exits_1(home):
    _, engine = home
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM ledger WHERE seq > 3"))
    code, output = _verify()
    assert code == 1 and "at seq 4: truncated: records 4..6 are missing" in output


def test_against_names_another_anchor(home, tmp_path):
    settings, _ = home
    other = tmp_path / "elsewhere.jsonl"
    shutil.copy(settings.state_dir / "ledger-checkpoints.jsonl", other)
    lines = other.read_text().splitlines()
    other.write_text(lines[0] + "\n" + "\n".join(lines[2:]) + "\n")  # its second checkpoint deleted
    code, output = _verify("--against", str(other))
    assert code == 1 and f"ledger diverges from its anchor {other}" in output
    assert "checkpoint(s) 2 missing" in output
    assert _verify()[0] == 0  # the configured anchor is untouched


def test_an_edited_decision_in_the_prediction_log_exits_1(home):
    _, engine = home
    with engine.begin() as connection:
        connection.execute(text("UPDATE predictions SET decision = 'decline' WHERE request_id = 'r1'"))
    code, output = _verify()
    assert code == 1 and "decisions broken: decisions interval of batches 1..1 (ledger seq 5)" in output


def test_a_batch_written_around_the_ledger_exits_1(home):
    _, engine = home
    with engine.begin() as connection:
        connection.execute(text("UPDATE predictions SET batch = 9 WHERE request_id = 'r2'"))
    code, output = _verify()
    assert code == 1 and "prediction log batch 9 is in no decisions.interval" in output
    assert "written around the ledger" in output


def _unsealed(engine, *, interval):
    log = PredictionLog(engine, Ledger(engine), ledger_interval_seconds=interval)
    log.add(Decision("r9", "production", "2026-12-01T00:00:09+00:00", "m", "m:v1", "d", "s9", "approve", 0.7, 1.0))
    log.flush()  # written; its interval is open, nothing seals it


def test_a_batch_within_its_interval_is_reported_as_not_yet_sealed_and_verifies(home):
    _, engine = home
    _unsealed(engine, interval=3600)
    code, output = _verify()
    assert code == 0, output
    assert "1 decision(s) in 1 batch(es) from 2 are not yet sealed" in output


def test_a_batch_past_its_seal_time_exits_1_as_overdue(home):
    _, engine = home
    _unsealed(engine, interval=3600)
    with engine.begin() as connection:  # a writer that died before sealing, an hour ago
        connection.execute(text("UPDATE unsealed_batches SET seal_by = '2026-01-01T00:00:00+00:00'"))
    code, output = _verify()
    assert code == 1 and "1 batch(es) from 2" in output and "are not" in output and "around the ledger" in output


def test_an_edited_unsealed_decision_exits_1(home):
    _, engine = home
    _unsealed(engine, interval=3600)
    with engine.begin() as connection:
        connection.execute(text("UPDATE predictions SET decision = 'decline' WHERE request_id = 'r9'"))
    code, output = _verify()
    assert code == 1 and "unsealed batch 2: its decisions do not match the root written with them" in output


def test_a_malformed_anchor_uri_is_a_message(home):
    code, output = _verify("--against", "ftp://somewhere/x")
    assert code == 1 and "not a ledger anchor: 'ftp://somewhere/x'" in output


def test_the_checkpoint_file_holds_one_signed_line_per_checkpoint(home):
    settings, _ = home
    lines = (settings.state_dir / "ledger-checkpoints.jsonl").read_text().splitlines()
    seqs = [json.loads(line)["seq"] for line in lines]
    assert seqs == [1, 2, 3, 4, 6]  # every routing step and the rollback; the batch (seq 5) waited for the next

"""Replicas' heartbeats: who serves which routing revision, who is gone, and a bounded wait for the rest."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from steward.db import make_engine
from steward.replicas import ReplicaRow, beat, live, wait_for


@pytest.fixture
def engine(tmp_path):
    return make_engine(f"sqlite:///{tmp_path / 'steward.db'}")


def _age(engine, replica: str, seconds: float) -> None:
    with Session(engine) as session, session.begin():
        then = datetime.now(UTC) - timedelta(seconds=seconds)
        session.execute(update(ReplicaRow).where(ReplicaRow.replica == replica).values(seen_at=then))


def test_a_replica_reports_the_revision_it_serves_and_one_not_heard_from_is_gone(engine):
    beat(engine, "m", "0", revision=3, pid=1)
    beat(engine, "m", "1", revision=2, pid=2)
    beat(engine, "m", "0", revision=4, pid=1)  # its newest report replaces the last
    beat(engine, "n", "0", revision=9, pid=3)
    _age(engine, "1", 11)
    assert [(r.replica, r.revision, r.pid) for r in live(engine, "m")] == [("0", 4, 1)]
    assert [(r.replica, r.revision) for r in live(engine, "m", within=60)] == [("0", 4), ("1", 2)]


def test_the_wait_ends_once_every_live_replica_serves_the_revision_or_names_those_that_do_not(engine):
    beat(engine, "m", "0", revision=5, pid=1)
    beat(engine, "m", "1", revision=4, pid=2)
    beat(engine, "m", "2", revision=1, pid=3)
    _age(engine, "2", 30)  # gone: not waited for
    serving, behind = wait_for(engine, "m", 5, timeout=0.3)
    assert [r.replica for r in serving] == ["0"] and [(r.replica, r.revision) for r in behind] == [("1", 4)]
    beat(engine, "m", "1", revision=6, pid=2)  # a later revision counts too
    serving, behind = wait_for(engine, "m", 5, timeout=0.3)
    assert [r.replica for r in serving] == ["0", "1"] and behind == []

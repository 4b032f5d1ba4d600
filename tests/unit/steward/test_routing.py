import hashlib

import pytest

from steward.db import make_engine
from steward.ledger import Ledger
from steward.routing import Routing, RoutingTable, bucket, newest


@pytest.fixture
def table(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'steward.db'}")
    return RoutingTable(engine, Ledger(engine))


def test_the_bucket_is_the_first_eight_bytes_of_sha256_as_a_fraction():
    expected = int(hashlib.sha256(b"applicant-42").hexdigest()[:16], 16) / 2**64
    assert bucket("applicant-42") == expected


def test_routing_is_sticky_and_raising_the_weight_only_moves_applicants_to_the_canary():
    ids = [f"a{i}" for i in range(20000)]
    low = Routing(production="m:v1", canary="m:v2", canary_weight=0.1)
    high = Routing(production="m:v1", canary="m:v2", canary_weight=0.5)
    at_low = {i for i in ids if low.role_of(i) == "canary"}
    at_high = {i for i in ids if high.role_of(i) == "canary"}
    assert at_low <= at_high
    # binomial(20000, p) stays within 5 standard deviations of its mean
    for share, weight in ((len(at_low), 0.1), (len(at_high), 0.5)):
        sd = (20000 * weight * (1 - weight)) ** 0.5
        assert abs(share - 20000 * weight) < 5 * sd
    assert {low.role_of(i) for i in ids[:50]} == {low.role_of(i) for i in ids[:50]}
    assert Routing(production="m:v1").role_of("a1") == "production"


def test_every_change_is_a_new_revision_and_a_ledger_record(table, tmp_path):
    assert table.get() == Routing() and newest(table._engine) == 0
    first = table.set(Routing(production="m:v1"), actor="rollout", reason="first production")
    second = table.set(
        Routing(production="m:v1", canary="m:v2", canary_weight=0.05), actor="rollout", reason="canary 5%"
    )
    back = table.set(Routing(production="m:v1"), actor="alice", reason="kill switch", rollback=True)
    assert (first.revision, second.revision, back.revision) == (1, 2, 3) and newest(table._engine) == 3
    records = table._ledger.records()
    assert [(r.actor, r.action, r.subject) for r in records] == [
        ("rollout", "rollout.step", "m:v1"),
        ("rollout", "rollout.step", "m:v2"),
        ("alice", "rollback", "m:v1"),
    ]
    assert records[2].payload["before"]["canary_weight"] == 0.05 and records[2].payload["reason"] == "kill switch"
    assert table._ledger.verify().ok


@pytest.mark.parametrize(
    ("routing", "message"),
    [
        (Routing(production="m:v1", canary="m:v2", canary_weight=1.5), "must be in \\[0, 1\\], got 1.5"),
        (Routing(production="m:v1", canary_weight=0.2), "needs a canary model"),
    ],
)
def test_impossible_routings_are_refused_and_change_nothing(table, routing, message):
    with pytest.raises(ValueError, match=message):
        table.set(routing, actor="x", reason="y")
    assert table.get() == Routing() and table._ledger.records() == []

"""Rollout leases on a real SQLite database: one live lease per model name, renewals refused once it lapsed, and
`expire` withdrawing only lapsed holders still in shadow or canary (a `rollback` record naming the lease),
leaving production and other use cases alone."""

from datetime import UTC, datetime, timedelta

import pytest

from steward.db import make_engine
from steward.leases import LeaseError, LeaseHeld, LeaseLost, Leases, expire
from steward.ledger import Ledger
from steward.params import RolloutParams
from steward.registry import State
from steward.rollouts import Rollouts
from tests.unit.steward.test_routing import _model_in

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def moves(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'steward.db'}")
    return Rollouts(engine, Ledger(engine))


def _in_canary(moves, name="m"):
    """(production, canary at 20%) of `name`."""
    production = _model_in(moves.registry, moves.ledger, State.APPROVED, name=name)
    canary = _model_in(moves.registry, moves.ledger, State.APPROVED, name=name)
    moves.promote(production, actor="t", reason="first")
    moves.to_shadow(canary, actor="t")
    moves.to_canary(canary, 0.2, actor="t")
    return production, canary


def test_a_second_rollout_of_the_model_name_is_refused_naming_the_holder_while_the_lease_is_live(moves):
    leases = Leases(moves.engine)
    held = leases.acquire("m", "m:v2", 10, now=T0)
    with pytest.raises(LeaseHeld, match="m:v2 holds its lease"):
        leases.acquire("m", "m:v3", 10, now=_at(9))
    other = leases.acquire("n", "n:v2", 10, now=_at(9))  # another use case: its own lease
    assert other.holder == "n:v2" and leases.get("m") == held
    leases.release(held)
    assert leases.acquire("m", "m:v3", 10, now=_at(9)).holder == "m:v3"


def test_a_lapsed_lease_is_never_renewed_and_can_be_taken_over(moves):
    leases = Leases(moves.engine)
    lease = leases.acquire("m", "m:v2", 10, now=T0)
    lease = leases.renew(lease, now=_at(8))
    assert lease.expires_at == _at(18) and leases.get("m") == lease
    with pytest.raises(LeaseLost, match="lapsed"):
        leases.renew(lease, now=_at(18))
    newer = leases.acquire("m", "m:v3", 10, now=_at(19))
    with pytest.raises(LeaseLost, match="gone"):
        leases.renew(lease, now=_at(19))  # the old holder's token no longer names the lease
    leases.release(lease)  # a stale release leaves the new holder's lease
    assert leases.get("m") == newer


def test_expire_withdraws_a_lapsed_canary_records_why_and_leaves_production_and_live_leases(moves):
    production, canary = _in_canary(moves)
    other_production, other_canary = _in_canary(moves, name="n")
    leases = Leases(moves.engine)
    leases.acquire("m", canary, 5, now=T0)
    live = leases.acquire("n", other_canary, 60, now=T0)

    assert expire(moves, now=_at(4.9)) == []  # not lapsed yet: nothing happens
    (done,) = expire(moves, now=_at(5))

    assert done.withdrew and done.lease.holder == canary
    routing = moves.table.get("m")
    assert (routing.production, routing.canary, routing.canary_weight) == (production, None, 0.0)
    assert moves.registry.get(canary).state is State.ROLLED_BACK
    assert moves.registry.get(production).state is State.PRODUCTION
    record = moves.ledger.records(subject=canary, actions=("rollback",))[-1]
    assert record.actor == "steward-lease" and "stopped renewing its lease of m (5 s" in record.payload["reason"]
    assert leases.get("m") is None and leases.get("n") == live  # the other use case: untouched
    assert moves.table.get("n").canary == other_canary and moves.table.get("n").production == other_production
    assert expire(moves, now=_at(6)) == []  # done once


def test_expire_leaves_a_holder_that_reached_production_and_drops_its_lease(moves):
    _, canary = _in_canary(moves)
    leases = Leases(moves.engine)
    leases.acquire("m", canary, 5, now=T0)
    moves.promote(canary, actor="t", reason="passed")  # then the rollout died before releasing
    before = moves.table.get("m")
    (done,) = expire(moves, model_name="m", now=_at(6))
    assert not done.withdrew and moves.table.get("m") == before and leases.get("m") is None
    assert moves.registry.get(canary).state is State.PRODUCTION


def test_expire_withdraws_a_lapsed_shadow_and_only_the_model_name_asked_for(moves):
    production = _model_in(moves.registry, moves.ledger, State.APPROVED)
    shadow = _model_in(moves.registry, moves.ledger, State.APPROVED)
    moves.promote(production, actor="t", reason="first")
    moves.to_shadow(shadow, actor="t")
    _, other_canary = _in_canary(moves, name="n")
    leases = Leases(moves.engine)
    leases.acquire("m", shadow, 5, now=T0)
    leases.acquire("n", other_canary, 5, now=T0)
    (done,) = expire(moves, model_name="m", now=_at(10))  # the service of m expires only m's lease
    assert done.withdrew and moves.table.get("m").shadow is None
    assert moves.table.get("n").canary == other_canary and leases.get("n") is not None


def test_a_renewal_after_expire_fails_so_the_rollout_never_moves_again(moves):
    _, canary = _in_canary(moves)
    leases = Leases(moves.engine)
    lease = leases.acquire("m", canary, 5, now=T0)
    expire(moves, now=_at(5))
    with pytest.raises(LeaseLost):
        leases.renew(lease, now=_at(5))


def test_a_lease_lasts_a_positive_time_and_the_setting_leaves_the_watch_time_to_renew():
    with pytest.raises(LeaseError):
        Leases.acquire(Leases(None), "m", "m:v2", 0)  # type: ignore[arg-type]  # refused before any query
    with pytest.raises(ValueError, match="lease_seconds"):
        RolloutParams(poll_seconds=2, lease_seconds=5)
    assert RolloutParams().lease_seconds == 60

import hashlib

import pytest

from scripts.serving_fixture import WALK, sign_off
from steward.db import make_engine
from steward.ledger import Ledger
from steward.registry import Registry, RegistryError, State
from steward.routing import Rollouts, Routing, RoutingTable, bucket, newest


def _model_in(registry, ledger, state, *, name="m"):
    """A registered, signed-off model walked to `state` along the state machine."""
    version = registry.register(
        name=name,
        model_tag=f"{name}:t",
        model_md5=state.value,
        data_md5="d",
        params_hash="p",
        git_commit=None,
        flow_run_id=None,
        metrics={},
    )
    sign_off(ledger, version.ref)
    for step in WALK[: WALK.index(state) + 1]:
        registry.transition(version.id, step)
    return version.ref


def _candidate(registry):
    """A registered model nobody signed off."""
    return registry.register(
        name="m",
        model_tag="m:t",
        model_md5="x",
        data_md5="d",
        params_hash="p",
        git_commit=None,
        flow_run_id=None,
        metrics={},
    ).ref


@pytest.fixture
def table(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'steward.db'}")
    ledger = Ledger(engine)
    table = RoutingTable(engine, ledger)
    registry = Registry(engine, ledger=ledger)
    table.models = {s: _model_in(registry, ledger, s) for s in (State.PRODUCTION, State.CANARY, State.SHADOW)}
    table.count = len(ledger.records())
    return table


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
    prod, canary = table.models[State.PRODUCTION], table.models[State.CANARY]
    assert table.get() == Routing() and newest(table._engine) == 0
    first = table.set(Routing(production=prod), actor="rollout", reason="first production")
    second = table.set(Routing(production=prod, canary=canary, canary_weight=0.05), actor="rollout", reason="5%")
    back = table.set(Routing(production=prod), actor="alice", reason="kill switch", rollback=True)
    assert (first.revision, second.revision, back.revision) == (1, 2, 3) and newest(table._engine) == 3
    records = table._ledger.records()[table.count :]
    assert [(r.actor, r.action, r.subject) for r in records] == [
        ("rollout", "rollout.step", prod),
        ("rollout", "rollout.step", canary),
        ("alice", "rollback", prod),
    ]
    assert records[2].payload["before"]["canary_weight"] == 0.05 and records[2].payload["reason"] == "kill switch"
    assert table._ledger.verify().ok


@pytest.mark.parametrize(
    ("routing", "message"),
    [
        (Routing(production="m:v1", canary="m:v2", canary_weight=1.5), r"must be in \[0, 1\], got 1.5"),
        (Routing(production="m:v1", canary_weight=0.2), "needs a canary model"),
        (Routing(production="m:v2"), "production must be a model in state production; m:v2 is canary"),
        (Routing(production="m:v1", shadow="m:v1"), "shadow must be a model in state shadow; m:v1 is production"),
        (Routing(production="nobody:v9"), "nobody:v9 is unknown"),
    ],
)
def test_impossible_routings_are_refused_and_change_nothing(table, routing, message):
    with pytest.raises(ValueError, match=message):
        table.set(routing, actor="x", reason="y")
    assert table.get() == Routing() and len(table._ledger.records()) == table.count


def test_a_model_that_was_never_approved_cannot_take_any_role(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'steward.db'}")
    ref = _candidate(Registry(engine, ledger=Ledger(engine)))
    for role in ("production", "canary", "shadow"):
        routing = Routing(**{role: ref, "canary_weight": 0.1 if role == "canary" else 0.0})
        with pytest.raises(RegistryError, match=f"{role} must be a model in state {role}; m:v1 is candidate"):
            RoutingTable(engine, Ledger(engine)).set(routing, actor="anyone", reason="try")


@pytest.fixture
def moves(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'steward.db'}")
    return Rollouts(engine, Ledger(engine))


def _approved(moves, name="m"):
    return _model_in(moves.registry, moves.ledger, State.APPROVED, name=name)


def test_a_first_model_walks_to_production_and_a_second_retires_it_after_shadow_and_canary(moves):
    first, second = _approved(moves), _approved(moves)
    moves.promote(first, actor="t", reason="first")
    assert moves.table.get().production == first and moves.registry.get(first).state is State.PRODUCTION
    moves.to_shadow(second, actor="t")
    assert moves.table.get().shadow == second
    moves.to_canary(second, 0.2, actor="t")
    routing = moves.table.get()
    assert (routing.canary, routing.canary_weight, routing.shadow) == (second, 0.2, None)
    moves.to_canary(second, 0.5, actor="t")  # a later weight: the state stays canary
    moves.promote(second, actor="t", reason="passed")
    routing = moves.table.get()
    assert (routing.production, routing.canary, routing.canary_weight) == (second, None, 0.0)
    assert moves.registry.get(first).state is State.RETIRED
    assert moves.registry.get(second).state is State.PRODUCTION


def test_withdraw_takes_the_canary_out_first_and_records_the_rollback_about_it(moves):
    first, second = _approved(moves), _approved(moves)
    moves.promote(first, actor="t", reason="first")
    moves.to_shadow(second, actor="t")
    moves.to_canary(second, 0.2, actor="t")
    done = moves.withdraw(second, actor="t", reason="breach")
    assert (done.production, done.canary, done.canary_weight) == (first, None, 0.0)
    assert moves.registry.get(second).state is State.ROLLED_BACK
    record = moves.ledger.records(subject=second, actions=("rollback",))[-1]
    assert record.payload["before"]["canary"] == second and record.payload["reason"] == "breach"
    again = moves.withdraw(second, actor="t", reason="again")  # a second call finds it done
    assert again.revision == done.revision


def test_the_kill_switch_pulls_the_canary_then_production(moves):
    first, second = _approved(moves), _approved(moves)
    moves.promote(first, actor="t", reason="first")
    moves.to_shadow(second, actor="t")
    moves.to_canary(second, 0.2, actor="t")
    pulled, done = moves.kill_switch(actor="t", reason="stop")
    assert pulled == [second] and done.production == first and done.mode == "serve"
    pulled, done = moves.kill_switch(actor="t", reason="stop everything")
    assert pulled == [first] and done.production is None and done.mode == "refuse"
    assert moves.registry.get(first).state is State.ROLLED_BACK


def test_an_unapproved_model_cannot_enter_shadow(moves):
    candidate = _candidate(moves.registry)
    with pytest.raises(RegistryError):
        moves.to_shadow(candidate, actor="t")
    assert moves.table.get().shadow is None

import hashlib
import math
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

import steward.routing as routing_module
from scripts.serving_fixture import WALK, sign_off
from steward.db import make_engine
from steward.ledger import Ledger
from steward.registry import Registry, RegistryError, State
from steward.routing import BAD_WEIGHT, NO_CANARY, Routing, RoutingError, RoutingRow, RoutingTable, bucket, newest

IDS = [f"applicant-{i}" for i in range(2000)]
# The routing row as it reads before anything was ever set.
NEVER_SET = {
    "production": None,
    "canary": None,
    "canary_weight": 0.0,
    "shadow": None,
    "mode": "serve",
    "revision": 0,
    "reason": "",
}


def _bucket(applicant_id: str) -> float:
    """The applicant's place in [0, 1), computed here: the first 8 bytes of sha256(id), big-endian, / 2**64."""
    return int.from_bytes(hashlib.sha256(applicant_id.encode("utf-8")).digest()[:8], "big") / 2**64


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


def _stored(engine) -> RoutingRow:
    """The routing row as the database holds it (not as the module reads it back)."""
    with Session(engine) as session:
        row = session.get(RoutingRow, "m")
        session.expunge(row)
        return row


@pytest.fixture
def table(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'steward.db'}")
    ledger = Ledger(engine)
    table = RoutingTable(engine, ledger)
    registry = Registry(engine, ledger=ledger)
    table.models = {s: _model_in(registry, ledger, s) for s in (State.PRODUCTION, State.CANARY, State.SHADOW)}
    table.count = len(ledger.records())
    return table


# --- bucketing: sticky by applicant ---------------------------------------------------------------------------


def test_the_bucket_is_the_first_eight_bytes_of_sha256_as_a_fraction():
    expected = int(hashlib.sha256(b"applicant-42").hexdigest()[:16], 16) / 2**64
    assert bucket("applicant-42") == expected


@pytest.mark.parametrize("weight", [0.01, 0.1, 0.5, 0.9, 0.99])
def test_the_canary_takes_exactly_the_applicants_whose_bucket_is_below_its_weight(weight):
    routing = Routing(production="m:v1", canary="m:v2", canary_weight=weight)

    roles = {i: routing.role_of(i) for i in IDS}

    assert roles == {i: "canary" if _bucket(i) < weight else "production" for i in IDS}
    assert "canary" in roles.values() and "production" in roles.values()  # both sides of the rule were met


def test_an_applicant_whose_bucket_equals_the_weight_stays_in_production():
    at = _bucket("applicant-7")  # a weight exactly on this applicant's bucket
    assert Routing(production="m:v1", canary="m:v2", canary_weight=at).role_of("applicant-7") == "production"
    above = math.nextafter(at, 1.0)  # the smallest weight that takes it
    assert Routing(production="m:v1", canary="m:v2", canary_weight=above).role_of("applicant-7") == "canary"


def test_the_role_is_sticky_across_calls_and_routing_objects_with_the_same_weight():
    first = Routing(production="m:v1", canary="m:v2", canary_weight=0.3)
    again = Routing(production="m:v1", canary="m:v2", canary_weight=0.3, revision=9, reason="re-read")
    expected = {i: "canary" if _bucket(i) < 0.3 else "production" for i in IDS[:200]}

    for _ in range(3):
        assert {i: first.role_of(i) for i in IDS[:200]} == expected
        assert {i: again.role_of(i) for i in IDS[:200]} == expected


def test_raising_the_weight_only_moves_applicants_from_production_to_the_canary():
    weights = [0.0, 0.05, 0.2, 0.5, 0.8, 1.0]
    routings = [Routing(production="m:v1", canary="m:v2", canary_weight=w) for w in weights]

    for applicant in IDS:
        roles = [r.role_of(applicant) for r in routings]
        switched = roles.index("canary")  # weight 1 takes everyone, so each applicant switches once...
        assert roles == ["production"] * switched + ["canary"] * (len(roles) - switched)  # ...and never back
        assert weights[switched - 1] <= _bucket(applicant) < weights[switched]


@pytest.mark.parametrize(
    ("routing", "role"),
    [
        (Routing(production="m:v1", canary="m:v2", canary_weight=0.0), "production"),
        (Routing(production="m:v1", canary="m:v2", canary_weight=1.0), "canary"),
        (Routing(production="m:v1", canary_weight=1.0), "production"),  # a weight with no canary serves nobody
        (Routing(production="m:v1", shadow="m:v3"), "production"),
        (Routing(canary="m:v2", canary_weight=1.0, shadow="m:v3"), "canary"),
    ],
)
def test_weight_zero_serves_nobody_weight_one_everybody_and_the_shadow_never_serves(routing, role):
    assert {routing.role_of(i) for i in IDS} == {role}


def test_a_shadow_only_mirrors_it_never_changes_who_is_served():
    plain = Routing(production="m:v1", canary="m:v2", canary_weight=0.4)
    shadowed = Routing(production="m:v1", canary="m:v2", canary_weight=0.4, shadow="m:v3")

    assert [shadowed.role_of(i) for i in IDS] == [plain.role_of(i) for i in IDS]


def test_as_dict_names_every_field():
    routing = Routing(
        production="m:v1", canary="m:v2", canary_weight=0.25, shadow="m:v3", mode="refuse", revision=4, reason="r"
    )

    assert routing.as_dict() == {
        "production": "m:v1",
        "canary": "m:v2",
        "canary_weight": 0.25,
        "shadow": "m:v3",
        "mode": "refuse",
        "revision": 4,
        "reason": "r",
    }


# --- the routing table ----------------------------------------------------------------------------------------


def test_every_change_is_a_new_revision_and_a_ledger_record(table, tmp_path):
    prod, canary = table.models[State.PRODUCTION], table.models[State.CANARY]
    assert table.get("m") == Routing() and newest(table._engine, "m") == 0
    first = table.set("m", Routing(production=prod), actor="rollout", reason="first production")
    second = table.set("m", Routing(production=prod, canary=canary, canary_weight=0.05), actor="rollout", reason="5%")
    back = table.set("m", Routing(production=prod), actor="alice", reason="kill switch", rollback=True)
    assert (first.revision, second.revision, back.revision) == (1, 2, 3) and newest(table._engine, "m") == 3
    records = table._ledger.records()[table.count :]
    assert [(r.actor, r.action, r.subject) for r in records] == [
        ("rollout", "rollout.step", prod),
        ("rollout", "rollout.step", canary),
        ("alice", "rollback", prod),
    ]
    assert records[2].payload["before"]["canary_weight"] == 0.05 and records[2].payload["reason"] == "kill switch"
    assert table._ledger.verify().ok


def test_the_first_record_shows_the_never_set_routing_before_and_the_new_one_after(table):
    prod = table.models[State.PRODUCTION]

    table.set("m", Routing(production=prod), actor="rollout", reason="first production")

    (record,) = table._ledger.records()[table.count :]
    assert record.payload == {
        "model_name": "m",  # what a service looks the record of its routing up by
        "before": NEVER_SET,
        "after": {**NEVER_SET, "production": prod, "revision": 1, "reason": "first production"},
        "reason": "first production",
    }


@pytest.mark.parametrize("reason", ["5% of applicants", ""])
def test_the_reason_is_stored_with_the_routing(table, reason):
    prod, canary = table.models[State.PRODUCTION], table.models[State.CANARY]

    done = table.set("m", Routing(production=prod, canary=canary, canary_weight=0.05), actor="rollout", reason=reason)

    assert done.reason == reason and table.get("m").reason == reason


def test_a_routing_of_nothing_is_recorded_about_routing(table):
    table.set("m", Routing(mode="refuse"), actor="ops", reason="nothing to serve")

    (record,) = table._ledger.records()[table.count :]
    assert (record.subject, record.action) == ("routing:m", "rollout.step")


@pytest.mark.parametrize("weight", [0.0, 0.5, 1.0])
def test_weights_from_zero_to_one_inclusive_are_accepted(table, weight):
    prod, canary = table.models[State.PRODUCTION], table.models[State.CANARY]

    done = table.set("m", Routing(production=prod, canary=canary, canary_weight=weight), actor="x", reason="y")

    assert done.canary_weight == weight and table.get("m").canary_weight == weight


def test_the_change_time_is_stored_in_utc_whatever_the_servers_zone(table, monkeypatch):
    monkeypatch.setenv("TZ", "JST-9")  # a POSIX zone nine hours east of UTC, needing no tz database
    time.tzset()
    try:
        table.set("m", Routing(production=table.models[State.PRODUCTION]), actor="x", reason="y")
    finally:
        monkeypatch.undo()
        time.tzset()

    stored = _stored(table._engine).updated_at
    stored = stored if stored.tzinfo else stored.replace(tzinfo=UTC)  # SQLite drops the zone: Steward stores UTC
    assert abs(stored - datetime.now(UTC)) < timedelta(minutes=5)


@pytest.mark.parametrize(
    ("routing", "message"),
    [
        (Routing(production="m:v1", canary="m:v2", canary_weight=1.5), r"must be in \[0, 1\], got 1.5"),
        (Routing(production="m:v1", canary="m:v2", canary_weight=-0.1), r"must be in \[0, 1\], got -0.1"),
        (Routing(production="m:v1", canary_weight=0.2), "needs a canary model"),
        (Routing(production="m:v2"), "production must be a model in state production; m:v2 is canary"),
        (Routing(production="m:v1", shadow="m:v1"), "shadow must be a model in state shadow; m:v1 is production"),
        (Routing(production="m:v9"), "m:v9 is unknown"),
        (Routing(production="nobody:v9"), "the routing of m cannot name nobody:v9: a version of another model"),
        (Routing(production="m:v1", canary="n:v1", canary_weight=0.1), "cannot name n:v1: a version of another"),
        (Routing(production="m:vx"), "production must be a model in state production; m:vx is unknown"),
        (Routing(production="m"), "production must be a model in state production; m is unknown"),
    ],
)
def test_impossible_routings_are_refused_and_change_nothing(table, routing, message):
    with pytest.raises(ValueError, match=message):
        table.set("m", routing, actor="x", reason="y")
    assert table.get("m") == Routing() and len(table._ledger.records()) == table.count


def test_the_weight_messages_are_the_modules():
    assert BAD_WEIGHT.format(weight=1.5) == "a canary weight must be in [0, 1], got 1.5"
    assert NO_CANARY == "a canary weight above 0 needs a canary model"


@pytest.mark.parametrize("ref", ["m:vx", "m"])
def test_a_ref_without_a_version_number_is_unknown_to_the_registry_check(table, ref):
    with pytest.raises(RegistryError, match=f"; {ref} is unknown"):
        table.set("m", Routing(production=ref), actor="x", reason="y")


def test_a_refusal_names_every_state_a_role_allows(table, monkeypatch):
    monkeypatch.setitem(routing_module.ROLE_STATES, "production", ("production", "canary"))
    shadow = table.models[State.SHADOW]

    with pytest.raises(RegistryError, match=f"production must be a model in state production or canary; {shadow} is"):
        table.set("m", Routing(production=shadow), actor="x", reason="y")


def test_a_model_that_was_never_approved_cannot_take_any_role(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'steward.db'}")
    ledger = Ledger(engine)
    production = _model_in(Registry(engine, ledger=ledger), ledger, State.PRODUCTION)
    ref = _candidate(Registry(engine, ledger=ledger))
    for role in ("production", "canary", "shadow"):
        behind = {} if role == "production" else {"production": production}
        routing = Routing(**{role: ref, "canary_weight": 0.1 if role == "canary" else 0.0, **behind})
        with pytest.raises(RegistryError, match=f"{role} must be a model in state {role}; {ref} is candidate"):
            RoutingTable(engine, ledger).set("m", routing, actor="anyone", reason="try")


@pytest.mark.parametrize(
    ("role", "routing"),
    [
        ("canary", lambda m: Routing(canary=m[State.CANARY], canary_weight=0.2)),
        ("canary", lambda m: Routing(canary=m[State.CANARY], canary_weight=0.0)),
        ("shadow", lambda m: Routing(shadow=m[State.SHADOW])),
        ("canary", lambda m: Routing(canary=m[State.CANARY], canary_weight=1.0, shadow=m[State.SHADOW])),
    ],
)
def test_a_canary_or_shadow_without_a_production_model_behind_it_is_refused(table, role, routing):
    prod = table.models[State.PRODUCTION]
    before = table.set("m", Routing(production=prod), actor="rollout", reason="first")
    records = len(table._ledger.records())

    refused = f"^a {role} needs a production model behind it: the routing of m names none$"
    with pytest.raises(RoutingError, match=refused):
        table.set("m", routing(table.models), actor="x", reason="drop production", rollback=True)

    assert table.get("m") == before and len(table._ledger.records()) == records


def test_a_routing_table_of_an_older_steward_is_refused_with_a_message(tmp_path):
    import sqlite3

    from steward.errors import SchemaError

    path = tmp_path / "steward.db"
    with sqlite3.connect(path) as old:  # the single-row table Steward created before routing had a key
        old.execute("CREATE TABLE routing (id INTEGER PRIMARY KEY, production VARCHAR(300), revision INTEGER)")
    with pytest.raises(SchemaError, match=r"created by an older Steward: table routing lacks model_name"):
        make_engine(f"sqlite:///{path}")


# --- only a recorded routing is served ----------------------------------------------------------------------


def _update_directly(engine, statement):
    """The attack: a routing row written with SQL, around RoutingTable.set, so no ledger record goes with it."""
    with engine.begin() as connection:
        connection.exec_driver_sql(statement)


def test_a_routing_set_through_the_table_is_served_as_recorded(table):
    prod, canary = table.models[State.PRODUCTION], table.models[State.CANARY]
    table.set("m", Routing(production=prod), actor="rollout", reason="first")
    done = table.set("m", Routing(production=prod, canary=canary, canary_weight=0.1), actor="rollout", reason="5%")
    checked = table.checked("m")
    assert checked.refused is None and checked.routing == done == table.get("m")
    assert routing_module.recorded(table._engine, "m")[0] == done
    assert table.checked("other") == routing_module.Checked(Routing(), None, 0)  # never set: nothing to serve


@pytest.mark.parametrize(
    "attack",
    [
        "UPDATE routing SET canary_weight = 1.0, revision = revision + 1 WHERE model_name = 'm'",
        "UPDATE routing SET canary_weight = 1.0 WHERE model_name = 'm'",  # same revision, other fields
        "UPDATE routing SET production = canary, canary = NULL, canary_weight = 0, revision = 7",
        "UPDATE routing SET revision = revision - 1 WHERE model_name = 'm'",  # back to an older revision's number
    ],
    ids=["new-revision", "same-revision", "jumped-revision", "older-revision"],
)
def test_a_routing_row_updated_directly_in_the_database_is_refused_and_the_recorded_one_served(table, attack):
    prod, canary = table.models[State.PRODUCTION], table.models[State.CANARY]
    table.set("m", Routing(production=prod), actor="rollout", reason="first")
    recorded = table.set("m", Routing(production=prod, canary=canary, canary_weight=0.05), actor="r", reason="5%")

    _update_directly(table._engine, attack)
    checked = table.checked("m")

    assert checked.routing == recorded  # the last recorded routing, not the row
    assert checked.refused is not None and checked.refused.startswith(
        f"routing revision {checked.row_revision} of m has no matching ledger record"
    )
    table.refuse("m", checked, actor="steward-serving")
    refusal = table._ledger.records(actions=("routing.refused",))[-1]
    assert refusal.payload["serving"] == recorded.as_dict() and refusal.payload["reason"] == checked.refused
    assert table._ledger.verify().ok


def test_a_routing_row_with_no_record_at_all_serves_nothing(table):
    prod = table.models[State.PRODUCTION]
    with Session(table._engine) as session, session.begin():
        session.add(RoutingRow(model_name="m", production=prod, revision=1, updated_at=datetime.now(UTC)))
    checked = table.checked("m")
    assert checked.routing == Routing() and "the newest, none, says nothing" in checked.refused


def test_a_change_committed_between_reading_the_row_and_the_record_is_served_not_refused(table, monkeypatch):
    prod, canary = table.models[State.PRODUCTION], table.models[State.CANARY]
    table.set("m", Routing(production=prod), actor="rollout", reason="first")
    stale = table.get("m")
    newer = table.set("m", Routing(production=prod, canary=canary, canary_weight=0.2), actor="r", reason="20%")
    reads = iter([stale])  # the first read of the row sees it as it was just before that commit
    real = RoutingTable.get
    monkeypatch.setattr(RoutingTable, "get", lambda self, name: next(reads, None) or real(self, name))
    assert table.checked("m") == routing_module.Checked(newer, None, newer.revision)


def test_a_routing_record_written_before_records_named_their_model_is_still_found(table):
    prod = table.models[State.PRODUCTION]
    done = table.set("m", Routing(production=prod), actor="rollout", reason="first")
    with table._engine.begin() as connection:  # as an older Steward wrote it (no model_name); chain not rehashed
        connection.exec_driver_sql(
            "UPDATE ledger SET payload = json_remove(payload, '$.model_name') WHERE action = 'rollout.step'"
        )
    assert routing_module.recorded(table._engine, "m")[0] == done

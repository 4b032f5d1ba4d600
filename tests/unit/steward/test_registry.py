import time
from dataclasses import asdict
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import event

from steward.db import make_engine
from steward.governance import SignoffPolicy
from steward.ledger import Ledger
from steward.registry import Registry, RegistryError, State
from steward.signoff import Request


def _registry(path):
    engine = make_engine(f"sqlite:///{path}")
    return Registry(engine, ledger=Ledger(engine))


@pytest.fixture
def registry(tmp_path):
    return _registry(tmp_path / "steward.db")


def _grant(registry, ref="credit-risk:v1", *, approvers=1, grants=("alice",)):
    """A sign-off of `ref` needing `approvers` approvals, and the grants given."""
    ledger = registry._ledger
    request = Request(
        model=ref,
        flow_run_id="run-1",
        author="carol",
        tier="high",
        policy=SignoffPolicy(approvers=approvers),
        evidence_digest="ab" * 32,
        evidence_page="index.html",
        requested_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    ledger.append(actor="carol", action="approval.requested", subject=ref, payload=request.payload())
    for name in grants:
        payload = {"flow_run_id": "run-1", "approver": name, "roles": ["model-risk"], "pause_key": name}
        ledger.append(actor=name, action="approval.granted", subject=ref, payload=payload)


def _register(registry, *, model_md5="m1", data_md5="d1", name="credit-risk"):
    return registry.register(
        name=name,
        model_tag=f"{name}:abc",
        model_md5=model_md5,
        data_md5=data_md5,
        params_hash="p" * 64,
        git_commit="c0ffee",
        flow_run_id="run-1",
        metrics={"auc": 0.8},
    )


def test_register_counts_versions_per_name_and_records_lineage(registry):
    first = _register(registry)
    second = _register(registry, model_md5="m2")
    other = _register(registry, name="hiring")
    assert (first.version, second.version, other.version) == (1, 2, 1)
    assert first.state is State.CANDIDATE
    got = registry.get("credit-risk:v1")
    assert (got.data_md5, got.git_commit, got.flow_run_id, got.metrics) == (
        "d1",
        "c0ffee",
        "run-1",
        {"auc": 0.8},
    )
    assert registry.get("credit-risk").version == 2
    assert registry.get(str(other.id)).name == "hiring"
    assert [v.version for v in registry.list(name="credit-risk")] == [2, 1]


def test_find_matches_model_and_data_bytes(registry):
    version = _register(registry)
    assert registry.find(name="credit-risk", model_md5="m1", data_md5="d1") == version
    assert registry.find(name="credit-risk", model_md5="m1", data_md5="d2") is None


def test_sqlite_runs_in_wal_mode(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


@pytest.mark.parametrize("ref", ["nope", "credit-risk:v9", "credit-risk:vx", "999"])
def test_unknown_refs_are_named(registry, ref):
    _register(registry)
    with pytest.raises(RegistryError, match="no model version"):
        registry.get(ref)


# The documented contract, written out here independently of the code's table.
CONTRACT = {
    "candidate": {"rejected", "approved"},
    "approved": {"shadow", "retired"},
    "shadow": {"canary", "rolled_back", "retired"},
    "canary": {"production", "rolled_back"},
    "production": {"standby", "retired", "rolled_back"},
    "standby": {"retired"},
    "rolled_back": {"retired"},
    "rejected": set(),
    "retired": set(),
}
STATES = sorted(CONTRACT)


def test_the_contract_names_every_state():
    assert sorted(state.value for state in State) == STATES


@pytest.mark.parametrize("target", STATES)
@pytest.mark.parametrize("source", STATES)
def test_every_transition_follows_the_documented_contract(tmp_path, source, target):
    registry = _registry(tmp_path / "steward.db")
    version = _register(registry)
    _grant(registry)
    _walk_to(registry, version.id, State(source))
    before = registry.get(version.id)
    records = len(registry._ledger.records())
    if target in CONTRACT[source]:
        moved = registry.transition(version.id, State(target), actor="alice")
        assert moved.state is State(target) and registry.get(version.id).state is State(target)
        [record] = registry._ledger.records(since_seq=records)
        assert (record.actor, record.action, record.subject) == ("alice", "registry.transition", "credit-risk:v1")
        assert record.payload == {"from": source, "to": target, "model_tag": "credit-risk:abc", "data_md5": "d1"}
    else:
        allowed = ", ".join(sorted(CONTRACT[source])) or "nothing"
        message = f"model credit-risk:v1 is {source}; it cannot become {target} (allowed from {source}: {allowed})"
        with pytest.raises(RegistryError) as refused:
            registry.transition(version.id, State(target), actor="alice")
        assert str(refused.value) == message
        assert registry.get(version.id) == before
        assert len(registry._ledger.records()) == records


def test_a_rejected_model_can_never_reach_traffic_even_with_an_approval_on_record(registry):
    version = _register(registry)
    registry.transition(version.id, State.REJECTED)
    _grant(registry)
    for target in State:
        with pytest.raises(RegistryError, match="is rejected; it cannot become"):
            registry.transition(version.id, target, actor="anyone")
    assert registry.get(version.id).state is State.REJECTED


def test_a_model_nobody_signed_off_cannot_be_approved_or_reach_traffic(tmp_path):
    registry = _registry(tmp_path / "steward.db")
    version = _register(registry)
    _grant(registry, ref="credit-risk:v2")  # someone else's approval does not count
    with pytest.raises(RegistryError, match="credit-risk:v1 has no completed sign-off in the ledger"):
        registry.transition(version.id, State.APPROVED)
    _grant(registry, approvers=2, grants=["alice"])  # one of the two approvals its tier asks for
    with pytest.raises(RegistryError, match="no completed sign-off"):
        registry.transition(version.id, State.APPROVED)
    for target in (State.SHADOW, State.CANARY, State.PRODUCTION):
        with pytest.raises(RegistryError, match="is candidate; it cannot become"):
            registry.transition(version.id, target)
    without_ledger = Registry(make_engine(f"sqlite:///{tmp_path / 'steward.db'}"))
    _grant(registry)
    with pytest.raises(RegistryError, match="no completed sign-off"):
        without_ledger.transition(version.id, State.APPROVED)
    assert registry.transition(version.id, State.APPROVED).state is State.APPROVED


# How to reach each state along the contract's own transitions.
PATHS = {
    State.CANDIDATE: [],
    State.REJECTED: [State.REJECTED],
    State.APPROVED: [State.APPROVED],
    State.SHADOW: [State.APPROVED, State.SHADOW],
    State.CANARY: [State.APPROVED, State.SHADOW, State.CANARY],
    State.PRODUCTION: [State.APPROVED, State.SHADOW, State.CANARY, State.PRODUCTION],
    State.STANDBY: [State.APPROVED, State.SHADOW, State.CANARY, State.PRODUCTION, State.STANDBY],
    State.RETIRED: [State.APPROVED, State.RETIRED],
    State.ROLLED_BACK: [State.APPROVED, State.SHADOW, State.ROLLED_BACK],
}


def _walk_to(registry, version_id, state):
    for step in PATHS[state]:
        registry.transition(version_id, step)


@pytest.fixture
def away_from_utc(monkeypatch):
    """The machine's local time zone is New York (a registry must store UTC whatever it is)."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_a_version_keeps_its_lineage_and_utc_times(tmp_path, away_from_utc):
    registry = _registry(tmp_path / "steward.db")
    before = datetime.now(UTC)
    version = _register(registry)
    after = datetime.now(UTC)
    assert before <= version.created_at == version.updated_at <= after
    expected = {
        "id": version.id,
        "name": "credit-risk",
        "version": 1,
        "state": State.CANDIDATE,
        "model_tag": "credit-risk:abc",
        "model_md5": "m1",
        "data_md5": "d1",
        "params_hash": "p" * 64,
        "git_commit": "c0ffee",
        "flow_run_id": "run-1",
        "metrics": {"auc": 0.8},
        "created_at": version.created_at,
        "updated_at": version.updated_at,
    }
    assert asdict(version) == expected
    assert asdict(registry.get("credit-risk:v1")) == expected
    _grant(registry)
    moved = registry.transition(version.id, State.APPROVED)
    assert moved.created_at == version.created_at and version.updated_at <= moved.updated_at <= datetime.now(UTC)
    assert registry.get(version.id).updated_at == moved.updated_at


def test_an_aware_time_keeps_its_instant_and_a_naive_one_is_read_as_utc():
    from steward.registry import _utc

    paris = datetime(2026, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=1)))
    assert _utc(paris) == datetime(2026, 1, 1, 11, 0, tzinfo=UTC)
    assert _utc(datetime(2026, 1, 1, 12, 0)) == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_without_an_actor_the_ledger_records_steward(registry):
    version = registry.register(
        name="credit-risk",
        model_tag="t",
        model_md5="m1",
        data_md5="d1",
        params_hash="p",
        git_commit=None,
        flow_run_id=None,
        metrics={},
    )
    registry.transition(version.id, State.REJECTED)
    actors = [r.actor for r in registry._ledger.records(actions=("registry.transition",))]
    assert actors == ["steward", "steward"]


def test_find_needs_the_same_name_model_and_data_and_gives_the_newest(registry):
    _register(registry)
    _register(registry, name="hiring")
    newest = _register(registry)
    assert registry.find(name="credit-risk", model_md5="m1", data_md5="d1") == newest
    _register(registry, name="other", model_md5="m9")
    assert registry.find(name="other", model_md5="m1", data_md5="d1") is None
    assert registry.find(name="credit-risk", model_md5="m9", data_md5="d1") is None


def test_list_by_state_and_name(registry):
    first = _register(registry)
    second = _register(registry, model_md5="m2")
    other = _register(registry, name="hiring")
    registry.transition(second.id, State.REJECTED)
    assert [v.id for v in registry.list()] == [other.id, second.id, first.id]
    assert [v.id for v in registry.list(state=State.CANDIDATE)] == [other.id, first.id]
    assert [v.id for v in registry.list(state=State.REJECTED, name="credit-risk")] == [second.id]
    assert registry.list(state=State.REJECTED, name="hiring") == []


@pytest.mark.parametrize("ref", ["nope", "credit-risk:v9", "999"])
def test_an_unknown_ref_is_named_by_get_and_transition(registry, ref):
    _register(registry)
    message = f"no model version {ref!r} in the registry"
    with pytest.raises(RegistryError) as refused:
        registry.get(ref)
    assert str(refused.value) == message
    with pytest.raises(RegistryError) as refused:
        registry.transition(ref, State.REJECTED)
    assert str(refused.value) == message


def test_the_newest_sign_off_is_read_in_ledger_order_whatever_the_database_scans(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'steward.db'}")
    event.listen(engine, "connect", lambda dbapi, _: dbapi.execute("PRAGMA reverse_unordered_selects = ON"))
    engine.dispose()
    registry = Registry(engine, ledger=Ledger(engine))
    version = _register(registry)
    _grant(registry)
    assert registry.transition(version.id, State.APPROVED).state is State.APPROVED


@pytest.mark.parametrize("name", ["a:vb", "credit:v2", "Credit", "", "-x", ".x", "x y", "a/b", "ü"])
def test_a_name_its_refs_could_not_tell_apart_is_refused(registry, name):
    with pytest.raises(RegistryError) as refused:
        _register(registry, name=name)
    assert str(refused.value) == (
        f"model name {name!r}: use lowercase letters, digits, '-', '_' and '.' (starting with a letter or digit), "
        "so that its versions' refs name:vN can be told apart"
    )
    assert registry.list() == []


@pytest.mark.parametrize("name", ["credit-risk", "adult_income", "m", "m.v2", "7eleven"])
def test_ordinary_names_register(registry, name):
    assert _register(registry, name=name).ref == f"{name}:v1"


# --- restores: a former production model back to production ----------------------------------------------------


def _former_production(registry, state):
    """credit-risk:v1 signed off, walked to production and on to `state` (standby, retired or rolled back)."""
    version = _register(registry)
    _grant(registry)
    _walk_to(registry, version.id, State.PRODUCTION)
    registry.transition(version.id, state)
    return version


@pytest.mark.parametrize("state", [State.STANDBY, State.RETIRED, State.ROLLED_BACK])
def test_a_former_production_model_is_restored_only_through_restore_and_the_ledger_says_so(registry, state):
    version = _former_production(registry, state)
    with pytest.raises(RegistryError, match=f"is {state.value}; it cannot become production"):
        registry.transition(version.id, State.PRODUCTION)  # the ordinary machine never goes back

    restored = registry.restore(version.ref, actor="oncall")

    assert restored.state is State.PRODUCTION and registry.get(version.id).state is State.PRODUCTION
    record = registry._ledger.records(subject=version.ref, actions=("registry.transition",))[-1]
    assert (record.actor, record.payload["from"], record.payload["to"], record.payload["restored"]) == (
        "oncall",
        state.value,
        "production",
        True,
    )


@pytest.mark.parametrize("path", [[State.APPROVED, State.RETIRED], [State.APPROVED, State.SHADOW, State.ROLLED_BACK]])
def test_a_model_that_never_served_as_production_is_not_restored(registry, path):
    version = _register(registry)
    _grant(registry)
    for step in path:
        registry.transition(version.id, step)
    records = len(registry._ledger.records())

    with pytest.raises(RegistryError, match=f"model {version.ref} was never in production"):
        registry.restore(version.ref)

    assert registry.get(version.id).state is path[-1] and len(registry._ledger.records()) == records


@pytest.mark.parametrize("state", [State.CANDIDATE, State.APPROVED, State.CANARY, State.PRODUCTION, State.REJECTED])
def test_only_standby_retired_or_rolled_back_models_are_restored(registry, state):
    version = _register(registry)
    _grant(registry)
    _walk_to(registry, version.id, state)
    with pytest.raises(RegistryError, match=f"model {version.ref} is {state.value}: only a former production"):
        registry.restore(version.ref)


@pytest.mark.parametrize(
    ("approvers", "grants", "shown"), [(2, ["alice"], "still open"), (1, [], "still open")], ids=["half", "none"]
)
def test_a_former_production_model_whose_newest_sign_off_is_incomplete_is_not_restored(
    registry, approvers, grants, shown
):
    version = _former_production(registry, State.STANDBY)
    _grant(registry, approvers=approvers, grants=grants)  # a new sign-off opened about it, not completed

    with pytest.raises(RegistryError, match=rf"newest sign-off in the ledger is not complete \({shown}\)"):
        registry.restorable(version.ref)
    with pytest.raises(RegistryError, match="is not restored until a sign-off approves it again"):
        registry.restore(version.ref)
    assert registry.get(version.id).state is State.STANDBY

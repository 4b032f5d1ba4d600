from datetime import UTC, datetime

import pytest

from steward.db import make_engine
from steward.ledger import Ledger
from steward.params import SignoffPolicy
from steward.registry import ALLOWED, Registry, RegistryError, State
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


def test_every_forbidden_transition_is_refused_and_every_allowed_one_works(tmp_path):
    for source in State:
        for target in State:
            registry = _registry(tmp_path / f"{source}-{target}.db")
            version = _register(registry)
            _grant(registry)
            _walk_to(registry, version.id, source)
            if target in ALLOWED[source]:
                assert registry.transition(version.id, target).state is target
            else:
                with pytest.raises(RegistryError, match=f"is {source}; it cannot become {target}"):
                    registry.transition(version.id, target)
                assert registry.get(version.id).state is source


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


PATHS = {
    State.CANDIDATE: [],
    State.REJECTED: [State.REJECTED],
    State.APPROVED: [State.APPROVED],
    State.SHADOW: [State.APPROVED, State.SHADOW],
    State.CANARY: [State.APPROVED, State.SHADOW, State.CANARY],
    State.PRODUCTION: [State.APPROVED, State.SHADOW, State.CANARY, State.PRODUCTION],
    State.RETIRED: [State.APPROVED, State.RETIRED],
    State.ROLLED_BACK: [State.APPROVED, State.SHADOW, State.ROLLED_BACK],
}


def _walk_to(registry, version_id, state):
    for step in PATHS[state]:
        registry.transition(version_id, step)

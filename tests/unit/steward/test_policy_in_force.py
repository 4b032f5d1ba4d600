"""The governance policy in force: adopted only by an owner's signature, re-verified on every read, and what a
run may ask of it. Each attack here must be refused or detected."""

import json
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import update
from sqlalchemy.orm import Session

from scripts.serving_fixture import WALK, sign_off
from steward.db import make_engine
from steward.governance import GovernanceParams, SignoffPolicy, TierPolicy, policy_digest
from steward.keys import SigningKey
from steward.ledger import Ledger, LedgerRow
from steward.policy_in_force import (
    POLICY_STATEMENT,
    GovernanceError,
    adopt,
    adopt_demo,
    governing,
    in_force,
    policy_problems,
)
from steward.registry import Registry, State
from steward.rollouts import Rollouts
from steward.routing import RoutingError
from steward.signoff import Request

OWNER = SigningKey(Ed25519PrivateKey.generate())
MALLORY = SigningKey(Ed25519PrivateKey.generate())
APPROVER = SigningKey(Ed25519PrivateKey.generate())


def _policy(owners=(OWNER,), **changes) -> GovernanceParams:
    base = {
        "approvers": {"alice": {"roles": ["model-risk", "compliance"], "keys": [APPROVER.public.openssh]}},
        "signoff": {"minimal": {}, "limited": {}, "high": {"approvers": 1}},
        "owners": [key.public.openssh for key in owners],
    }
    tiers = changes.pop("tiers", None)
    policy = GovernanceParams.model_validate(base | changes)
    return policy if tiers is None else policy.model_copy(update={"tiers": tiers})


@pytest.fixture
def engine(tmp_path):
    return make_engine(f"sqlite:///{tmp_path / 'steward.db'}")


def test_no_policy_in_force_refuses_every_sign_off(engine):
    assert in_force(engine) is None
    with pytest.raises(GovernanceError, match="no governance policy is in force"):
        governing(engine, _policy(), usecase="u", declared="high", demo=False)


def test_an_owner_adopts_and_every_read_re_verifies(engine):
    policy = adopt(engine, _policy(), OWNER, actor="olga")
    assert policy.digest == policy_digest(_policy()) and policy.seq == 1
    again = in_force(engine)
    assert again is not None and again.digest == policy.digest and again.signer == OWNER.public.fingerprint
    governance, digest = governing(engine, _policy(), usecase="u", declared="high", demo=False)
    assert digest == policy.digest and governance.approvers.keys() == {"alice"}


def test_a_run_follows_the_policy_in_force_not_its_own_approvers(engine):
    adopt(engine, _policy(), OWNER, actor="olga")
    own = _policy(approvers={"mallory": {"roles": ["model-risk", "compliance"], "keys": [MALLORY.public.openssh]}})
    governance, _ = governing(engine, own, usecase="u", declared="high", demo=False)
    assert list(governance.approvers) == ["alice"]  # the run's own approver list is ignored


def test_attack_a_non_owner_cannot_adopt(engine):
    adopt(engine, _policy(), OWNER, actor="olga")
    takeover = _policy(owners=(MALLORY,))
    with pytest.raises(GovernanceError, match="not by an owner"):
        adopt(engine, takeover, MALLORY, actor="mallory")
    assert in_force(engine).signer == OWNER.public.fingerprint


def test_attack_the_first_policy_must_be_signed_by_an_owner_it_names(engine):
    with pytest.raises(GovernanceError, match="not by an owner"):
        adopt(engine, _policy(), MALLORY, actor="mallory")


def test_owners_hand_over_to_new_owners(engine):
    adopt(engine, _policy(), OWNER, actor="olga")
    adopt(engine, _policy(owners=(MALLORY,)), OWNER, actor="olga")  # olga names a successor
    assert in_force(engine).governance.owners == [MALLORY.public.openssh]
    adopt(engine, _policy(owners=(MALLORY,), risk_tier="high"), MALLORY, actor="max")
    assert in_force(engine).seq == 3


def _forge(engine, governance, key, *, previous):
    """A policy.adopted record written straight into the ledger, bypassing `adopt` (as a database writer can)."""
    digest = policy_digest(governance)
    fields = {"digest": digest, "previous": previous, "demo": False}
    payload = {
        "policy": governance.model_dump(mode="json", by_alias=True),
        "digest": digest,
        "previous": previous,
        "demo": False,
        "key": key.public.openssh,
        "signature": key.sign(POLICY_STATEMENT, fields),
    }
    Ledger(engine).append(actor="mallory", action="policy.adopted", subject="governance", payload=payload)


def test_attack_a_policy_written_into_the_ledger_by_a_non_owner_stops_every_sign_off(engine):
    first = adopt(engine, _policy(), OWNER, actor="olga")
    _forge(engine, _policy(owners=(MALLORY,), approvers={}), MALLORY, previous=first.digest)
    with pytest.raises(GovernanceError, match=r"record 2: the policy is signed by .* not by an owner"):
        in_force(engine)
    with pytest.raises(GovernanceError):
        governing(engine, _policy(), usecase="u", declared="high", demo=False)


def test_attack_an_edited_policy_record_is_detected(engine):
    adopt(engine, _policy(), OWNER, actor="olga")
    with Session(engine) as session, session.begin():
        row = session.get(LedgerRow, 1)
        payload = json.loads(row.payload)
        payload["policy"]["signoff"]["high"]["approvers"] = 1
        payload["policy"]["approvers"]["mallory"] = {"roles": ["model-risk"], "keys": [MALLORY.public.openssh]}
        session.execute(update(LedgerRow).where(LedgerRow.seq == 1).values(payload=json.dumps(payload)))
    with pytest.raises(GovernanceError, match="digest is not the digest of its text"):
        in_force(engine)
    payload["digest"] = policy_digest(GovernanceParams.model_validate(payload["policy"]))  # recomputed too
    with Session(engine) as session, session.begin():
        session.execute(update(LedgerRow).where(LedgerRow.seq == 1).values(payload=json.dumps(payload)))
    with pytest.raises(GovernanceError, match="signature does not verify"):
        in_force(engine)


def test_attack_a_run_cannot_lower_its_tier_below_its_use_case(engine):
    adopt(engine, _policy(), OWNER, actor="olga")
    with pytest.raises(GovernanceError, match="asks for risk tier 'limited', below its use case's floor 'high'"):
        governing(engine, _policy(risk_tier="limited"), usecase="u", declared="high", demo=False)


def test_the_policy_raises_a_use_cases_floor_above_what_it_declares(engine):
    adopt(engine, _policy(floors={"u": "high"}, risk_tier="minimal"), OWNER, actor="olga")
    with pytest.raises(GovernanceError, match="the policy in force sets 'high'"):
        governing(engine, _policy(risk_tier="limited"), usecase="u", declared="minimal", demo=False)
    governance, _ = governing(engine, _policy(risk_tier="limited"), usecase="v", declared="minimal", demo=False)
    assert governance.risk_tier == "limited"  # a use case the policy does not name: its default floor, minimal


def test_attack_a_run_cannot_weaken_its_gate(engine):
    adopt(engine, _policy(), OWNER, actor="olga")
    weak = TierPolicy(min_auc=0.5, min_dp_ratio_lower=0.8, max_eo_diff_upper=0.25)
    run = _policy(tiers={**_policy().tiers, "high": weak})
    with pytest.raises(GovernanceError, match=r"min_auc 0.5 < 0.7; max_eo_diff_upper 0.25 > 0.1"):
        governing(engine, run, usecase="u", declared="high", demo=False)
    strict = TierPolicy(min_auc=0.9, min_dp_ratio_lower=0.9, max_eo_diff_upper=0.05)
    governing(engine, _policy(tiers={**_policy().tiers, "high": strict}), usecase="u", declared="high", demo=False)


def test_attack_a_demo_sign_off_outside_a_demo_home(engine):
    adopt(engine, _policy(), OWNER, actor="olga")
    with pytest.raises(GovernanceError, match="demo identities answer only in a demo home"):
        governing(engine, _policy(), usecase="u", declared="high", demo=True)
    with pytest.raises(GovernanceError, match="runs a real governance policy"):
        adopt_demo(engine, _policy(), SigningKey(Ed25519PrivateKey.generate()), actor="steward run")


def test_a_demo_home_allows_demo_sign_offs(engine):
    instance = SigningKey(Ed25519PrivateKey.generate())
    first = adopt_demo(engine, _policy(owners=()), instance, actor="steward run")
    assert first.demo and adopt_demo(engine, _policy(owners=()), instance, actor="steward run").seq == first.seq
    governing(engine, _policy(), usecase="u", declared="high", demo=True)


def _demo_approved(engine, *, demo):
    ledger = Ledger(engine)
    registry = Registry(engine, ledger=ledger)
    version = registry.register(
        name="m",
        model_tag="m:t",
        model_md5="x",
        data_md5="d",
        params_hash="p",
        git_commit=None,
        flow_run_id=None,
        metrics={},
    )
    sign_off(ledger, version.ref, demo=demo)
    for step in WALK[: WALK.index(State.APPROVED) + 1]:
        registry.transition(version.id, step)
    return Rollouts(engine, ledger), version.ref


def test_attack_a_demo_approved_model_never_reaches_a_real_homes_routing(engine):
    adopt(engine, _policy(), OWNER, actor="olga")
    moves, ref = _demo_approved(engine, demo=True)
    with pytest.raises(RoutingError, match="signed off by demo identities"):
        moves.promote(ref, actor="eve", reason="the first production model")


def test_a_demo_approved_model_serves_in_a_demo_home_and_a_real_one_anywhere(engine, tmp_path):
    adopt_demo(engine, _policy(owners=()), SigningKey(Ed25519PrivateKey.generate()), actor="steward run")
    moves, ref = _demo_approved(engine, demo=True)
    assert moves.promote(ref, actor="steward", reason="first").production == ref
    real = make_engine(f"sqlite:///{tmp_path / 'real.db'}")
    adopt(real, _policy(), OWNER, actor="olga")
    moves, ref = _demo_approved(real, demo=False)
    assert moves.promote(ref, actor="steward", reason="first").production == ref


def _request_record(ledger, *, digest, alice_key, demo=False, name="alice"):
    request = Request(
        model="m:v1",
        flow_run_id="run-1",
        author="carol",
        tier="high",
        policy=SignoffPolicy(),
        evidence_digest="ab" * 32,
        evidence_page="-",
        requested_at=datetime(2026, 1, 1, tzinfo=UTC),
        demo=demo,
        keys={name: [alice_key.public.openssh]},
        policy_digest=digest,
    )
    ledger.append(actor="carol", action="approval.requested", subject="m:v1", payload=request.payload())


def test_ledger_verify_finds_every_sign_off_under_the_policy_in_force(engine):
    ledger = Ledger(engine)
    policy = adopt(engine, _policy(), OWNER, actor="olga")
    _request_record(ledger, digest=policy.digest, alice_key=APPROVER)
    assert policy_problems(ledger.records()) == []


def test_attack_a_sign_off_written_with_keys_of_ones_own_choosing_is_named(engine):
    ledger = Ledger(engine)
    _request_record(ledger, digest="9f" * 32, alice_key=APPROVER)  # before any policy
    policy = adopt(engine, _policy(), OWNER, actor="olga")
    _request_record(ledger, digest=policy.digest, alice_key=MALLORY)  # mallory's key pinned as alice's
    _request_record(ledger, digest="9f" * 32, alice_key=APPROVER)  # another policy named
    _request_record(ledger, digest=policy.digest, alice_key=MALLORY, name="mallory")  # no approver at all
    assert policy_problems(ledger.records()) == [
        "seq 1: the sign-off of m:v1 was opened with no governance policy in force",
        "seq 3: the sign-off of m:v1 pins a key for alice the policy in force does not register",
        f"seq 4: the sign-off of m:v1 names policy {'9f' * 8}, not the one in force ({policy.digest[:16]}, seq 2)",
        "seq 5: the sign-off of m:v1 pins keys for mallory, who is no approver in the policy in force",
    ]


def test_a_forged_adoption_is_named_by_ledger_verify_too(engine):
    first = adopt(engine, _policy(), OWNER, actor="olga")
    _forge(engine, _policy(owners=(MALLORY,)), MALLORY, previous=first.digest)
    assert policy_problems(Ledger(engine).records()) == [
        f"ledger record 2: the policy is signed by {MALLORY.public.fingerprint}, not by an owner of the policy it "
        "replaces"
    ]


def test_a_demo_identitys_key_comes_from_the_demo_home(engine):
    ledger = Ledger(engine)
    demo = _policy(approvers={"demo-risk": {"roles": ["model-risk", "compliance"], "demo": True}})
    policy = adopt_demo(engine, demo, SigningKey(Ed25519PrivateKey.generate()), actor="steward run")
    _request_record(ledger, digest=policy.digest, alice_key=MALLORY, demo=True, name="demo-risk")
    assert policy_problems(ledger.records()) == []

"""The moves of steward.rollouts on a real SQLite database: a rollout's steps, withdrawals, the standby a
promotion keeps, rollbacks that restore it (or a named former production model, re-checked), and the explicit
refusal mode. Expected states and records are read back from the registry and the ledger."""

import contextlib
import pickle
from datetime import UTC, datetime

import pytest

from scripts.serving_fixture import approved
from steward.db import make_engine
from steward.governance import SignoffPolicy
from steward.keys import new_key
from steward.ledger import Ledger
from steward.model_integrity import ModelRefused, check, refuse
from steward.registry import RegistryError, State
from steward.rollouts import FORMER, NOTHING_TO_RESTORE, RollbackError, Rollouts
from steward.routing import Routing, newest
from steward.signoff import Request
from tests.unit.steward.test_routing import _candidate, _model_in, _stored

# --- rollouts -------------------------------------------------------------------------------------------------


@pytest.fixture
def moves(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'steward.db'}")
    return Rollouts(engine, Ledger(engine))


def _approved(moves, name="m"):
    return _model_in(moves.registry, moves.ledger, State.APPROVED, name=name)


def _transitions(moves, ref):
    """(actor, from, to) of every registry transition of `ref` after its approval."""
    records = moves.ledger.records(subject=ref, actions=("registry.transition",))
    moves_made = [(r.actor, r.payload["from"], r.payload["to"]) for r in records]
    return moves_made[moves_made.index(("steward", "candidate", "approved")) + 1 :]


def test_a_first_model_walks_to_production_and_a_second_makes_it_the_standby_after_shadow_and_canary(moves):
    first, second = _approved(moves), _approved(moves)
    moves.promote(first, actor="t", reason="first")
    assert moves.table.get("m").production == first and moves.registry.get(first).state is State.PRODUCTION
    moves.to_shadow(second, actor="t")
    assert moves.table.get("m").shadow == second
    moves.to_canary(second, 0.2, actor="t")
    routing = moves.table.get("m")
    assert (routing.canary, routing.canary_weight, routing.shadow) == (second, 0.2, None)
    moves.to_canary(second, 0.5, actor="t")  # a later weight: the state stays canary
    moves.promote(second, actor="t", reason="passed")
    routing = moves.table.get("m")
    assert (routing.production, routing.canary, routing.canary_weight) == (second, None, 0.0)
    assert moves.registry.get(first).state is State.STANDBY and moves.standby("m") == first
    assert moves.registry.get(second).state is State.PRODUCTION


def test_every_registry_move_of_a_rollout_is_recorded_as_its_actor(moves):
    first, second, third = _approved(moves), _approved(moves), _approved(moves)
    moves.promote(first, actor="alice", reason="first")
    moves.to_shadow(second, actor="bob")
    moves.to_canary(second, 0.2, actor="carol")
    moves.promote(second, actor="dave", reason="passed")
    moves.to_shadow(third, actor="erin")
    moves.withdraw(third, actor="frank", reason="drift")
    moves.refuse_all("m", actor="grace", reason="stop")

    assert _transitions(moves, first) == [
        ("alice", "approved", "shadow"),
        ("alice", "shadow", "canary"),
        ("alice", "canary", "production"),
        ("dave", "production", "standby"),
    ]
    assert _transitions(moves, second) == [
        ("bob", "approved", "shadow"),
        ("carol", "shadow", "canary"),
        ("dave", "canary", "production"),
        ("grace", "production", "rolled_back"),
    ]
    assert _transitions(moves, third) == [("erin", "approved", "shadow"), ("frank", "shadow", "rolled_back")]


@pytest.mark.parametrize(("weight", "shown"), [(1.5, "1.5"), (-0.1, "-0.1"), (float("nan"), "nan")])
def test_a_canary_weight_out_of_range_is_refused_before_the_model_changes_state(moves, weight, shown):
    first, second = _approved(moves), _approved(moves)
    moves.promote(first, actor="t", reason="first")
    moves.to_shadow(second, actor="t")
    before = moves.table.get("m")

    with pytest.raises(ValueError, match=rf"^a canary weight must be in \[0, 1\], got {shown}$"):
        moves.to_canary(second, weight, actor="t")

    assert moves.registry.get(second).state is State.SHADOW  # the routing still names it as the shadow
    assert moves.table.get("m") == before
    moves.to_canary(second, 0.1, actor="t")  # and the rollout can go on
    assert moves.table.get("m").canary == second


@pytest.mark.parametrize("weight", [0.0, 1.0])
def test_a_canary_takes_weights_zero_and_one(moves, weight):
    first, second = _approved(moves), _approved(moves)
    moves.promote(first, actor="t", reason="first")
    moves.to_shadow(second, actor="t")

    done = moves.to_canary(second, weight, actor="t")

    assert (done.canary, done.canary_weight, done.shadow) == (second, weight, None)
    assert moves.registry.get(second).state is State.CANARY


def test_a_canary_and_a_promotion_keep_another_models_shadow(moves):
    first, second, third = _approved(moves), _approved(moves), _approved(moves)
    moves.promote(first, actor="t", reason="first")
    moves.to_shadow(second, actor="t")
    moves.to_canary(second, 0.2, actor="t")
    moves.to_shadow(third, actor="t")

    moves.to_canary(second, 0.4, actor="t")
    assert moves.table.get("m").shadow == third
    done = moves.promote(second, actor="t", reason="passed")
    assert (done.production, done.canary, done.shadow) == (second, None, third)
    assert moves.table.get("m") == done


def test_promoting_the_shadow_itself_takes_it_out_of_the_shadow_role(moves):
    first, second = _approved(moves), _approved(moves)
    moves.promote(first, actor="t", reason="first")
    moves.to_shadow(second, actor="t")

    done = moves.promote(second, actor="t", reason="straight from shadow")

    assert (done.production, done.canary, done.shadow) == (second, None, None)
    assert moves.registry.get(second).state is State.PRODUCTION
    assert moves.registry.get(first).state is State.STANDBY


def test_a_promotion_after_refusing_everything_serves_again(moves):
    first, second = _approved(moves), _approved(moves)
    moves.promote(first, actor="t", reason="first")
    moves.refuse_all("m", actor="t", reason="stop everything")
    assert moves.table.get("m").mode == "refuse"

    done = moves.promote(second, actor="t", reason="restore")

    assert (done.production, done.mode) == (second, "serve")
    assert _stored(moves.table._engine).mode == "serve"


@pytest.mark.parametrize("state", [State.CANDIDATE, State.ROLLED_BACK])
def test_a_model_off_the_road_to_production_cannot_be_promoted(moves, state):
    first, ref = _approved(moves), _candidate(moves.registry)
    moves.promote(first, actor="t", reason="first")
    if state is State.ROLLED_BACK:
        ref = _approved(moves)
        moves.to_shadow(ref, actor="t")
        moves.withdraw(ref, actor="t", reason="bad")
    before = moves.table.get("m")

    with pytest.raises(RegistryError, match=f"model {ref} is {state.value}; it cannot become production"):
        moves.promote(ref, actor="t", reason="skip the steps")

    assert moves.table.get("m") == before


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


def test_withdraw_takes_a_shadow_out_and_leaves_the_rest(moves):
    first, second = _approved(moves), _approved(moves)
    moves.promote(first, actor="t", reason="first")
    moves.to_shadow(second, actor="t")

    done = moves.withdraw(second, actor="t", reason="drift")

    assert (done.production, done.canary, done.shadow) == (first, None, None)
    assert moves.table.get("m") == done
    assert moves.registry.get(second).state is State.ROLLED_BACK
    record = moves.ledger.records(subject=second, actions=("rollback",))[-1]
    assert record.payload["before"]["shadow"] == second and record.payload["after"]["shadow"] is None


def test_withdrawing_the_canary_keeps_another_models_shadow(moves):
    first, second, third = _approved(moves), _approved(moves), _approved(moves)
    moves.promote(first, actor="t", reason="first")
    moves.to_shadow(second, actor="t")
    moves.to_canary(second, 0.2, actor="t")
    moves.to_shadow(third, actor="t")

    done = moves.withdraw(second, actor="t", reason="breach")

    assert (done.production, done.canary, done.shadow) == (first, None, third)
    assert moves.registry.get(third).state is State.SHADOW


def test_refuse_all_pulls_canary_shadow_and_production_and_names_them(moves):
    first, second, third = _approved(moves), _approved(moves), _approved(moves)
    moves.promote(first, actor="t", reason="first")
    moves.to_shadow(second, actor="t")
    moves.to_canary(second, 0.2, actor="t")
    moves.to_shadow(third, actor="t")

    done = moves.refuse_all("m", actor="t", reason="stop")

    assert done.pulled == (second, third, first) and done.restored is None and done.repeated is None
    assert (done.routing.production, done.routing.canary, done.routing.shadow) == (None, None, None)
    assert done.routing.mode == "refuse" and _stored(moves.table._engine).mode == "refuse"
    record = moves.ledger.records(actions=("rollback",))[-1]
    assert (record.subject, record.payload["pulled"], record.payload["request"]["move"]) == (
        f"{second}, {third}, {first}",
        [second, third, first],
        "refuse_all",
    )
    assert {moves.registry.get(ref).state for ref in (first, second, third)} == {State.ROLLED_BACK}


def test_refuse_all_with_nothing_routed_refuses_once_and_records_it_about_routing(moves):
    done = moves.refuse_all("m", actor="t", reason="stop")
    again = moves.refuse_all("m", actor="t", reason="stop, really")

    assert done.pulled == () and (done.routing.production, done.routing.mode, done.routing.revision) == (
        None,
        "refuse",
        1,
    )
    (record,) = moves.ledger.records(actions=("rollback", "rollout.step"))
    assert (record.action, record.subject) == ("rollback", "routing:m")
    assert again.repeated == record.seq and again.routing == done.routing  # nothing more was written


def test_an_unapproved_model_cannot_enter_shadow(moves):
    moves.promote(_approved(moves), actor="t", reason="first")
    candidate = _candidate(moves.registry)
    with pytest.raises(RegistryError):
        moves.to_shadow(candidate, actor="t")
    assert moves.table.get("m").shadow is None


# --- one routing row per model name (one per use case) ------------------------------------------------------


def _two_use_cases(moves):
    """Two model names, each with a production model and a canary at 20%."""
    served = {}
    for name in ("credit-risk", "adult-income"):
        production, canary = _approved(moves, name=name), _approved(moves, name=name)
        moves.promote(production, actor="t", reason="first")
        moves.to_shadow(canary, actor="t")
        moves.to_canary(canary, 0.2, actor="t")
        served[name] = (production, canary)
    return served


def test_two_model_names_have_independent_routing_rows(moves):
    served = _two_use_cases(moves)
    for name, (production, canary) in served.items():
        routing = moves.table.get(name)
        assert (routing.production, routing.canary, routing.canary_weight) == (production, canary, 0.2)
        assert routing.revision == 3 and newest(moves.table._engine, name) == 3
    assert set(moves.table.all()) == {"credit-risk", "adult-income"}
    assert moves.table.get("hiring") == Routing() and newest(moves.table._engine, "hiring") == 0


def test_a_rollback_of_one_model_name_leaves_the_other_untouched(moves):
    served = _two_use_cases(moves)
    before = moves.table.get("adult-income")
    production, canary = served["credit-risk"]

    done = moves.rollback("credit-risk", actor="t", reason="stop credit")
    moves.refuse_all("credit-risk", actor="t", reason="stop credit entirely")

    assert done.pulled == (canary,) and done.routing.production == production
    assert moves.table.get("credit-risk").mode == "refuse"
    assert moves.table.get("adult-income") == before
    for ref in served["adult-income"]:
        assert moves.registry.get(ref).state in (State.PRODUCTION, State.CANARY)
    assert moves.registry.get(production).state is State.ROLLED_BACK


def test_withdrawing_a_canary_changes_only_its_own_model_names_row(moves):
    served = _two_use_cases(moves)
    before = moves.table.get("credit-risk")
    moves.withdraw(served["adult-income"][1], actor="t", reason="breach")
    assert moves.table.get("adult-income").canary is None
    assert moves.table.get("credit-risk") == before


# --- rollbacks that restore --------------------------------------------------------------------------------------


@pytest.fixture
def sealed(tmp_path):
    """Rollouts whose models are sealed plain-file directories in a store, verified the way a loader verifies
    them (steward.model_integrity.check, a refusal recorded in the ledger)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'steward.db'}")
    key = new_key(tmp_path / "keys" / "instance")
    store = tmp_path / "store"

    def directory_of(tag):
        return store / tag.replace(":", "/")

    def verify(ref):
        try:
            return check(ref, registry=moves.registry, key=key.public, directory_of=directory_of)
        except ModelRefused as refused:
            refuse(moves.ledger, ref, reason=str(refused), where="rollback")
            raise

    moves = Rollouts(engine, Ledger(engine), verify=verify)
    moves.directory_of = directory_of
    moves.key = key
    return moves


def _sealed_approved(moves, n):
    """Version `n` of m: its files in the store, registered with their signed manifest, signed off, approved."""
    return approved(moves, "m", n, directory=moves.directory_of(f"m:t{n}"), signer=moves.key)


def _rolled_out(moves, ref):
    """`ref` through shadow and canary to production, as the rollout flow moves it."""
    moves.to_shadow(ref, actor="rollout")
    moves.to_canary(ref, 0.2, actor="rollout")
    return moves.promote(ref, actor="rollout", reason="passed")


def _history(moves, count):
    """`count` sealed models, each rolled out in turn (the first as the first production model)."""
    refs = [_sealed_approved(moves, n) for n in range(1, count + 1)]
    moves.promote(refs[0], actor="rollout", reason="the first production model")
    for ref in refs[1:]:
        _rolled_out(moves, ref)
    return refs


def _unchanged(moves, before, records):
    """Nothing moved: the routing row, and no routing or registry record written since."""
    assert moves.table.get("m") == before
    written = moves.ledger.records(since_seq=records, actions=("rollback", "rollout.step", "registry.transition"))
    assert written == []


def test_only_the_newest_former_production_model_verified_good_is_the_standby(sealed):
    v1, v2, v3 = _history(sealed, 3)
    assert [sealed.registry.get(ref).state for ref in (v1, v2, v3)] == [State.RETIRED, State.STANDBY, State.PRODUCTION]
    assert sealed.standby("m") == v2 and sealed.former_production("m") == [v2, v1]

    refuse(sealed.ledger, v3, reason="its bytes changed", where="service")  # v3 failed a load in production
    v4 = _sealed_approved(sealed, 4)
    _rolled_out(sealed, v4)

    assert sealed.registry.get(v3).state is State.RETIRED  # refused in production: never the standby
    assert sealed.standby("m") == v2


def test_a_rollback_with_no_canary_restores_the_standby_verified_and_recorded(sealed):
    v1, v2 = _history(sealed, 2)

    done = sealed.rollback("m", actor="oncall", reason="v2 declines the young")

    assert (done.restored, done.pulled, done.routing.production, done.routing.mode) == (v1, (v2,), v1, "serve")
    assert sealed.registry.get(v1).state is State.PRODUCTION and sealed.registry.get(v2).state is State.ROLLED_BACK
    record = sealed.ledger.records(actions=("rollback",))[-1]
    seal = sealed.registry.seal(sealed.registry.get(v1).id)
    assert (record.actor, record.subject, record.payload["restored"], record.payload["restored_from"]) == (
        "oncall",
        v2,
        v1,
        "standby",
    )
    assert record.payload["verified_manifest"] == seal.manifest and record.payload["after"]["production"] == v1
    checked = sealed.table.checked("m")  # what a service may serve: the ledger vouches for the restore
    assert checked.refused is None and checked.routing == done.routing
    assert sealed.ledger.verify().ok


def test_a_second_rollback_withdraws_nothing_more_and_never_leaves_the_service_refusing(sealed):
    v1, v2 = _history(sealed, 2)
    v3 = _sealed_approved(sealed, 3)
    sealed.to_shadow(v3, actor="rollout")
    sealed.to_canary(v3, 0.2, actor="rollout")

    first = sealed.rollback("m", actor="oncall", reason="canary breach")
    records = len(sealed.ledger.records())
    second = sealed.rollback("m", actor="oncall", reason="canary breach")  # the button pressed twice
    via_api = sealed.rollback("m", actor="oncall", reason="canary breach")  # /admin/rollback retried

    assert first.pulled == (v3,) and first.routing.production == v2 and first.routing.mode == "serve"
    record = sealed.ledger.records(actions=("rollback",))[-1]
    assert second.repeated == record.seq and second.routing == first.routing and second.pulled == ()
    assert (via_api.pulled, via_api.routing) == ((), first.routing)
    assert sealed.registry.get(v2).state is State.PRODUCTION and sealed.standby("m") == v1
    assert len(sealed.ledger.records()) == records

    third = sealed.rollback("m", actor="oncall", reason="v2 is wrong too")  # another request: production goes
    assert (third.restored, third.pulled, third.routing.mode) == (v1, (v2,), "serve")


def test_rolling_back_past_the_standby_is_refused_naming_what_is_missing_not_refusal(sealed):
    v1, v2, v3 = _history(sealed, 3)
    sealed.rollback("m", actor="oncall", reason="v3 is bad")  # v2 restored: no standby now
    before, records = sealed.table.get("m"), sealed.ledger.records()[-1].seq

    with pytest.raises(RollbackError) as refused:
        sealed.rollback("m", actor="oncall", reason="v2 is bad too")

    assert str(refused.value) == NOTHING_TO_RESTORE.format(
        model_name="m", serving=f"; {v2} keeps serving", hint=FORMER.format(refs=f"{v3}, {v1}")
    )
    _unchanged(sealed, before, records)
    assert before.production == v2 and before.mode == "serve"


def test_rollback_to_a_named_former_production_model_restores_it(sealed):
    v1, v2, v3 = _history(sealed, 3)

    done = sealed.rollback("m", actor="oncall", reason="back to the first", to=v1)

    assert (done.restored, done.pulled, done.routing.production) == (v1, (v3,), v1)
    assert [sealed.registry.get(ref).state for ref in (v1, v2, v3)] == [
        State.PRODUCTION,
        State.STANDBY,
        State.ROLLED_BACK,
    ]
    assert sealed.rollback("m", actor="oncall", reason="back to the first", to="1").repeated is not None  # by id
    undo = sealed.rollback("m", actor="oncall", reason="that was a mistake", to=v3)  # a rolled-back production
    assert (undo.restored, undo.routing.production) == (v3, v3)


def test_rollback_to_a_model_never_in_production_is_refused_naming_why(sealed):
    _v1, _v2 = _history(sealed, 2)
    withdrawn = _sealed_approved(sealed, 3)
    sealed.to_shadow(withdrawn, actor="rollout")
    sealed.withdraw(withdrawn, actor="rollout", reason="drift")
    approved = _sealed_approved(sealed, 4)
    before, records = sealed.table.get("m"), sealed.ledger.records()[-1].seq

    with pytest.raises(RegistryError, match=f"^model {withdrawn} was never in production"):
        sealed.rollback("m", actor="oncall", reason="try", to=withdrawn)
    with pytest.raises(RegistryError, match=f"^model {approved} is approved: only a former production model"):
        sealed.rollback("m", actor="oncall", reason="try", to=approved)

    _unchanged(sealed, before, records)


def test_rollback_to_a_model_whose_bytes_were_swapped_is_refused_and_recorded(sealed):
    v1, _v2 = _history(sealed, 2)
    swapped = sealed.directory_of(sealed.registry.get(v1).model_tag) / "saved_model.pkl"
    swapped.write_bytes(pickle.dumps({"coef": "an attacker's model"}))
    before, records = sealed.table.get("m"), sealed.ledger.records()[-1].seq

    with pytest.raises(ModelRefused, match=f"model {v1} .* differs from what was signed at registration: saved_model"):
        sealed.rollback("m", actor="oncall", reason="v2 is bad", to=v1)
    with pytest.raises(ModelRefused):
        sealed.rollback("m", actor="oncall", reason="v2 is bad")  # v1 is also the standby

    _unchanged(sealed, before, records)
    assert sealed.registry.get(v1).state is State.STANDBY
    refusals = sealed.ledger.records(subject=v1, actions=("model.refused",))
    assert [r.payload["where"] for r in refusals] == ["rollback", "rollback"]


def test_rollback_to_a_model_whose_sign_off_is_no_longer_complete_is_refused(sealed):
    v1, _v2 = _history(sealed, 2)
    reopened = Request(
        model=v1,
        flow_run_id="re-review",
        author="risk",
        tier="high",
        policy=SignoffPolicy(approvers=2),
        evidence_digest="cd" * 32,
        evidence_page="-",
        requested_at=datetime.now(UTC),
    )
    sealed.ledger.append(actor="risk", action="approval.requested", subject=v1, payload=reopened.payload())
    before, records = sealed.table.get("m"), sealed.ledger.records()[-1].seq

    with pytest.raises(RegistryError, match=rf"^model {v1}: its newest sign-off in the ledger is not complete"):
        sealed.rollback("m", actor="oncall", reason="v2 is bad")

    _unchanged(sealed, before, records)
    assert sealed.ledger.records(subject=v1, actions=("model.refused",)) == []  # refused before its bytes were read


def test_refusal_mode_is_only_ever_explicit_and_a_rollback_restores_from_it(sealed):
    _v1, v2 = _history(sealed, 2)
    for _ in range(2):
        with contextlib.suppress(RollbackError):
            sealed.rollback("m", actor="oncall", reason="press")
        assert sealed.table.get("m").mode == "serve" and sealed.table.get("m").production is not None

    refused = sealed.refuse_all("m", actor="oncall", reason="incident: stop deciding")
    assert refused.routing.mode == "refuse" and refused.routing.production is None

    back = sealed.rollback("m", actor="oncall", reason="incident over", to=v2)
    assert (back.restored, back.pulled, back.routing.production, back.routing.mode) == (v2, (), v2, "serve")
    assert sealed.table.checked("m").routing == back.routing


def test_a_rollback_names_only_its_own_use_cases_models(sealed):
    _history(sealed, 2)
    other = _model_in(sealed.registry, sealed.ledger, State.PRODUCTION, name="n")
    with pytest.raises(RollbackError, match=f"^{other} is not a version of m"):
        sealed.rollback("m", actor="oncall", reason="wrong one", to=other)


def test_without_a_verifier_a_rollback_withdraws_but_never_restores_unverified_bytes(sealed):
    v1, _v2 = _history(sealed, 2)
    v3 = _sealed_approved(sealed, 3)
    sealed.to_shadow(v3, actor="rollout")
    bare = Rollouts(sealed.engine, sealed.ledger)

    done = bare.rollback("m", actor="api", reason="shadow out")
    assert (done.pulled, done.routing) == ((v3,), sealed.table.get("m"))
    before, records = sealed.table.get("m"), sealed.ledger.records()[-1].seq
    with pytest.raises(RollbackError, match=f"^restoring {v1} needs its bytes verified"):
        bare.rollback("m", actor="api", reason="production out")
    _unchanged(sealed, before, records)

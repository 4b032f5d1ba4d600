"""`steward rollback` on a real database in a fresh STEWARD_HOME: it says what it did and what now serves,
restores a model only through the instance's own byte check, and refuses rather than stop serving."""

import pickle
import threading

import pytest
from typer.testing import CliRunner

import tasks.model.integrity as integrity
from flows.cli import app
from scripts.serving_fixture import approved
from steward.db import make_engine
from steward.keys import instance_key
from steward.ledger import Ledger
from steward.registry import State
from steward.replicas import beat
from steward.rollouts import Rollouts
from steward.settings import Settings

NAME = "credit-risk"  # the model name of params.yaml's use case (german_credit)


@pytest.fixture
def home(steward_home, tmp_path, monkeypatch):
    """credit-risk v1 then v2 rolled out (v1 the standby) and v3 in canary; the store a plain folder."""
    settings = Settings()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.db_url)
    moves = Rollouts(engine, Ledger(engine))
    store = tmp_path / "store"
    monkeypatch.setattr(integrity, "store_dir", lambda tag: store / tag.replace(":", "/"))
    refs = [_approved(moves, store, n) for n in (1, 2, 3)]
    moves.promote(refs[0], actor="rollout", reason="first")
    for ref in refs[1:]:
        moves.to_shadow(ref, actor="rollout")
        moves.to_canary(ref, 0.2, actor="rollout")
        if ref == refs[1]:
            moves.promote(ref, actor="rollout", reason="passed")  # v1 becomes the standby; v3 stays in canary
    return {"moves": moves, "refs": refs, "store": store}


def _approved(moves: Rollouts, store, n: int) -> str:
    """Version n of NAME, its bytes in `store`, sealed by the instance key, signed off and approved."""
    return approved(moves, NAME, n, directory=store / NAME / f"t{n}", signer=instance_key(Settings()))


def _rollback(*args):
    """The exit code and what the rollback said it did (its report on the replicas aside: no replica runs here)."""
    code, said = _rollback_in_full(*args)
    return code, said.split(" no serving replica has reported")[0]


def _rollback_in_full(*args):
    result = CliRunner().invoke(app, ["rollback", *args, "--as", "oncall"])
    return result.exit_code, " ".join(result.output.split())


def test_pressing_rollback_twice_withdraws_the_canary_once_and_keeps_production(home):
    v1, v2, v3 = home["refs"]
    first = _rollback("--reason", "canary breach")
    second = _rollback("--reason", "canary breach")

    record = home["moves"].ledger.records(actions=("rollback",))[-1]
    assert first == (0, f"{NAME}: rolled back {v3}; now serving: all traffic to {v2}")
    assert second == (
        0,
        f"{NAME}: already done (ledger record {record.seq}), nothing changed; now serving: all traffic to {v2}",
    )
    assert home["moves"].table.get(NAME).production == v2 and home["moves"].standby(NAME) == v1


def test_rollback_without_a_canary_restores_the_standby_verified_then_refuses_to_go_further(home):
    v1, v2, _v3 = home["refs"]
    _rollback("--reason", "canary breach")

    restored = _rollback("--reason", "v2 is wrong too")
    further = _rollback("--reason", "v1 as well")

    assert restored == (0, f"{NAME}: rolled back {v2}; restored {v1}; now serving: all traffic to {v1}")
    assert further[0] == 1 and f"error: {NAME}: nothing to roll back to" in further[1]
    assert f"Name one with --to: {v2}" in further[1]  # v3 was never production: not offered
    assert home["moves"].table.get(NAME).mode == "serve"


def test_a_restore_whose_bytes_were_swapped_in_the_store_is_refused(home):
    v1, v2, _v3 = home["refs"]
    (home["store"] / NAME / "t1" / "saved_model.pkl").write_bytes(pickle.dumps("an attacker's model"))

    code, output = _rollback("--to", v1, "--reason", "back to v1")

    assert code == 1 and f"error: model {v1} ({NAME}:t1) differs from what was signed" in output
    (refused,) = home["moves"].ledger.records(subject=v1, actions=("model.refused",))
    assert (refused.actor, refused.payload["where"]) == ("oncall", "steward rollback")
    assert home["moves"].table.get(NAME).production == v2


def test_refuse_all_is_explicit_and_excludes_to(home):
    v1, v2, v3 = home["refs"]
    both = _rollback("--to", v1, "--refuse-all", "--reason", "x")
    refused = _rollback("--refuse-all", "--reason", "incident")

    assert both[0] == 1 and "give one of them" in both[1]
    assert refused == (
        0,
        f"{NAME}: rolled back {v3}, {v2}; now serving: nobody: every decision is refused (503, referred to people)",
    )
    back = _rollback("--to", v2, "--reason", "incident over")
    assert back == (0, f"{NAME}: rolled back nothing; restored {v2}; now serving: all traffic to {v2}")


def test_rollback_waits_for_each_live_replica_and_names_the_one_that_did_not_take_it_up(home):
    engine = home["moves"].engine
    revision = home["moves"].table.get(NAME).revision
    beat(engine, NAME, "0", revision=revision, pid=101)
    beat(engine, NAME, "1", revision=revision, pid=102)
    beat(engine, "adult-income", "0", revision=1, pid=103)  # another use case's replica is not waited for
    taking_up = threading.Timer(0.3, lambda: beat(engine, NAME, "0", revision=revision + 1, pid=101))
    taking_up.start()
    code, said = _rollback_in_full("--reason", "canary breach", "--wait", "1.5")
    taking_up.join()

    assert code == 5, said
    assert f"replicas serving revision {revision + 1}: 0" in said
    assert f"NOT taken up within 1.5 s by: 1 (pid 102, still revision {revision})" in said
    assert home["moves"].table.get(NAME).revision == revision + 1  # the rollback itself was done


def test_rollback_with_no_replica_running_says_so_and_succeeds(home):
    code, said = _rollback_in_full("--reason", "canary breach", "--wait", "0")
    assert code == 0 and "no serving replica has reported in the last 10 s" in said


def test_after_refuse_all_the_next_model_is_not_rolled_out_as_the_first_production_model(home):
    from flows.rollout import rollout_flow
    from steward.routing import RoutingError

    v1, v2, _ = home["refs"]
    assert _rollback("--refuse-all", "--reason", "stop everything")[0] == 0
    v4 = _approved(home["moves"], home["store"], 4)
    with pytest.raises(RoutingError, match=f"had one before \\({v2}, {v1}\\): {v4} would skip shadow and canary"):
        rollout_flow.fn(v4)
    assert home["moves"].table.get(NAME).production is None
    assert home["moves"].registry.get(v4).state is State.APPROVED  # nothing moved

"""Verified model bytes under a real `bentoml serve`: the three signed models of scripts/serving_fixture.py in a
real BentoML store, attacked in that store and in the database while the service runs (and as it starts).
Each attack must end with the model refused in the ledger (`model.refused`), never serving a decision, and the
service answering from the last model that verified (or refusing to decide, when none did)."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import httpx
import psutil
import pytest
from support import PROJECT_DIR, free_port, pseudonyms_of, serving_project, wait_until

from deployments.local.bento_server import SERVICE, Service, serve_command, served
from deployments.local.prefect_server import stop_pid
from scripts.serving_fixture import sign_off
from steward.db import make_engine
from steward.keys import instance_key
from steward.ledger import MODEL_REFUSED, Ledger
from steward.model_integrity import Manifest
from steward.params import load_params
from steward.registry import Registry, State
from steward.routing import Routing, RoutingTable, bucket
from steward.settings import Settings
from tasks.data.features import read_snapshot

pytestmark = pytest.mark.integration
USECASE = load_params(PROJECT_DIR / "params.yaml").usecase
MODEL = USECASE.model_name


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    project = tmp_path_factory.mktemp("integrity")
    env, refs = serving_project(project, serve={"rate_per_second": 1000, "burst": 1000})
    engine = make_engine(f"sqlite:///{project / '.steward/steward.db'}")
    ledger = Ledger(engine)
    table = RoutingTable(engine, ledger)
    table.set(MODEL, Routing(production=refs["production"]), actor="test", reason="production only")
    with served(env, cwd=PROJECT_DIR, log=project / "service.log", timeout=90) as service:
        yield {
            "env": env,
            "url": service.url,
            "refs": refs,
            "project": project,
            "engine": engine,
            "ledger": ledger,
            "registry": Registry(engine, ledger=ledger),
            "table": table,
        }


def _applications(n: int, *, prefix: str) -> list[dict]:
    rows = read_snapshot(PROJECT_DIR / USECASE.dataset.file).drop(columns=USECASE.label.column).head(n)
    records = rows.astype(object).where(rows.notna(), None).to_dict("records")
    return [
        {**{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}, USECASE.id_column: f"{prefix}{i}"}
        for i, r in enumerate(records)
    ]


def _store_file(world, ref: str, name: str = "saved_model.pkl") -> Path:
    model_name, _, version = world["registry"].get(ref).model_tag.partition(":")
    return world["project"] / ".steward/bentoml/models" / model_name / version / name


def _refusals(world, ref: str) -> list[dict]:
    return [r.payload for r in world["ledger"].records(subject=ref, actions=(MODEL_REFUSED,))]


def _served_models(world, applications: list[dict]) -> list[str]:
    with httpx.Client() as client:
        answers = [client.post(f"{world['url']}/predict", json=a, timeout=20) for a in applications]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers if a.status_code != 200]
    return [a.json()["model_version"] for a in answers]


def _logged(world, ref: str) -> int:
    with world["engine"].connect() as connection:
        query = "SELECT COUNT(*) FROM predictions WHERE model = ?"
        return int(connection.exec_driver_sql(query, (ref,)).scalar())


def test_attack_a_canary_whose_pickle_was_swapped_for_another_models_is_refused_and_withdrawn(world):
    refs = world["refs"]
    canary, production = refs["canary"], refs["production"]
    swapped = _store_file(world, canary)
    swapped.write_bytes(_store_file(world, refs["shadow"]).read_bytes())  # a real model: it would load and answer
    revision = world["table"].set(
        MODEL, Routing(production=production, canary=canary, canary_weight=0.5), actor="test", reason="canary"
    )
    found = wait_until(lambda: _refusals(world, canary), timeout=60, what=f"{canary} refused in the ledger")
    assert found[0]["where"] == "service" and "saved_model.pkl changed" in found[0]["reason"]
    withdrawn = wait_until(
        lambda: (r := world["table"].get(MODEL)).revision > revision.revision and r, timeout=10, what="withdrawn"
    )
    assert (withdrawn.canary, withdrawn.canary_weight, withdrawn.production) == (None, 0.0, production)
    assert world["registry"].get(canary).state is State.ROLLED_BACK
    applications = _applications(40, prefix="swap")
    pseudonym = pseudonyms_of(world["env"], USECASE.model_name)
    assert any(bucket(pseudonym(a[USECASE.id_column])) < 0.5 for a in applications)  # some would have met the canary
    assert set(_served_models(world, applications)) == {production}
    assert _logged(world, canary) == 0


def test_attack_a_shadow_whose_model_tag_was_updated_in_the_database_is_refused(world):
    """The shadow's row now names the production model's genuine, signed bytes: its ledger record does not."""
    refs = world["refs"]
    shadow, production = refs["shadow"], refs["production"]
    tag = world["registry"].get(production).model_tag
    with world["engine"].begin() as connection:
        connection.exec_driver_sql(
            "UPDATE model_versions SET model_tag = ? WHERE name = ? AND version = ?",
            (tag, MODEL, int(shadow.rpartition(":v")[2])),
        )
    world["table"].set(MODEL, Routing(production=production, shadow=shadow), actor="test", reason="shadow")
    found = wait_until(lambda: _refusals(world, shadow), timeout=60, what=f"{shadow} refused in the ledger")
    assert "the registry's model_tag is" in found[0]["reason"]
    wait_until(lambda: world["table"].get(MODEL).shadow is None, timeout=10, what="shadow withdrawn")
    assert set(_served_models(world, _applications(10, prefix="tag"))) == {production}
    assert _logged(world, shadow) == 0  # the shadow pool was never handed it


def test_a_production_model_that_fails_verification_is_never_served(world, tmp_path):
    """Running: a new production whose bytes changed is refused, and the service keeps the last verified model
    it loaded. Starting: with no production that verifies, the service refuses to decide (503, referred)."""
    registry, refs = world["registry"], world["refs"]
    old = registry.get(refs["production"])
    seal = registry.seal(old.id)
    assert seal is not None
    home = Settings(project_dir=world["project"], home=world["project"] / ".steward")
    new = registry.register(  # the production's own stored bytes, approved again as a new version
        name=MODEL,
        model_tag=old.model_tag,
        model_md5="again",
        data_md5=old.data_md5,
        params_hash=old.params_hash,
        git_commit=None,
        flow_run_id=None,
        metrics={},
        manifest=Manifest(seal.files),
        signer=instance_key(home),
    ).ref
    sign_off(world["ledger"], new)
    for state in (State.APPROVED, State.SHADOW, State.CANARY, State.PRODUCTION):
        registry.transition(new, state)
    pickle = _store_file(world, new)
    data = bytearray(pickle.read_bytes())
    data[len(data) // 2] ^= 0x01  # one byte
    pickle.write_bytes(bytes(data))
    before = world["table"].get(MODEL).revision
    world["table"].set(MODEL, Routing(production=new), actor="test", reason="new production")
    found = wait_until(lambda: _refusals(world, new), timeout=60, what=f"{new} refused in the ledger")
    assert "saved_model.pkl changed" in found[0]["reason"]
    assert set(_served_models(world, _applications(10, prefix="kept"))) == {old.ref}  # loaded before the swap
    assert _logged(world, new) == 0 and world["table"].get(MODEL).revision == before + 1

    port = free_port()
    with (tmp_path / "start.log").open("w") as log:
        process = subprocess.Popen(
            serve_command(SERVICE, port=port),
            cwd=PROJECT_DIR,
            env=dict(world["env"]),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    started = Service(url=f"http://127.0.0.1:{port}", pid=process.pid)
    try:
        wait_until(lambda: len(_refusals(world, new)) >= 2, timeout=90, what="the starting service's refusal")

        def answer() -> httpx.Response | None:
            with contextlib.suppress(httpx.HTTPError):
                return httpx.post(f"{started.url}/predict", json=_applications(1, prefix="start")[0], timeout=10)
            return None

        refused = wait_until(answer, timeout=60, what="the starting service answering")
        assert refused.status_code == 503 and refused.json()["decision"] == "referred", refused.text
        assert httpx.get(f"{started.url}/readyz", timeout=5).status_code != 200
    finally:
        workers = started.processes()[1:]
        stop_pid(process.pid)
        for worker in workers:
            with contextlib.suppress(psutil.NoSuchProcess):
                worker.kill()
    assert _logged(world, new) == 0

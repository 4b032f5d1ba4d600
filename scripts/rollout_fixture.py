"""A production model and two signed-off candidates on synthetic applications, in a fresh STEWARD_HOME, for
the rollout tests and bench/rollback.py. Run it as its own process, so BentoML reads the caller's
BENTOML_HOME:

    STEWARD_HOME=... BENTOML_HOME=... python -m scripts.rollout_fixture   # from the project root; prints the refs

* production: gradient boosting on unbiased applications, promoted (the first production model);
* fair: the same recipe on another draw, approved (a rollout of it should reach production);
* fair_again: the same recipe on a third draw, approved (for a second rollout that should pass its shadow);
* unfair: trained on a snapshot with the education shortcut (`usecases/german_credit/generator.py`), approved. It treats
  every group alike on ordinary traffic, but declines the young once a student-loan campaign brings them
  to borrow for education (`generate_applications(proxy=...)`);
* broken: trained on a column requests do not have, approved: it raises on every request (the circuit
  breaker's case).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROWS = 10_000
ROOT = Path(__file__).resolve().parents[1]


def build(
    project: Path,
    *,
    params: Mapping[str, Any] | None = None,
    usecase: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[dict[str, str], dict[str, str]]:
    """Lay out a project in `project` (params.yaml, or `params`; the use cases, their suites and the selected one's
    bundled data; `usecase` overrides keys of the selected use case's usecase.yaml), run this fixture in it as
    its own process, and return the environment that points at it (and has a service served with it take
    Traffic's X-Client-Id: tasks/demo/traffic.py) and the refs of its models."""
    import yaml

    from tasks.demo.traffic import LOOPBACK_PROXY

    project.mkdir(parents=True, exist_ok=True)
    chosen = dict(params) if params is not None else yaml.safe_load((ROOT / "params.yaml").read_text())
    (project / "params.yaml").write_text(yaml.safe_dump(chosen))
    skip = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "usecases", project / "usecases", ignore=skip, dirs_exist_ok=True)
    shutil.copytree(ROOT / "expectations", project / "expectations", dirs_exist_ok=True)
    spec_file = project / "usecases" / chosen["usecase"] / "usecase.yaml"
    spec = yaml.safe_load(spec_file.read_text()) | dict(usecase or {})
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    (project / spec["dataset"]["file"]).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / spec["dataset"]["file"], project / spec["dataset"]["file"])
    environment = {
        **(os.environ if env is None else env),
        "STEWARD_PROJECT_DIR": str(project),
        "STEWARD_HOME": str(project / ".steward"),
        "BENTOML_HOME": str(project / ".steward/bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        **LOOPBACK_PROXY,
    }
    made = subprocess.run(
        [sys.executable, "-m", "scripts.rollout_fixture"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if made.returncode:
        raise RuntimeError(f"the rollout fixture failed:\n{made.stdout}{made.stderr}")
    return environment, json.loads(made.stdout.strip().splitlines()[-1])


def main() -> None:
    from scripts.serving_fixture import sign_off
    from steward.db import make_engine
    from steward.keys import instance_key
    from steward.layout import Layout
    from steward.ledger import Ledger
    from steward.params import load_params
    from steward.registry import State
    from steward.rollouts import Rollouts
    from steward.settings import Settings
    from tasks.data.features import to_feature_frame
    from tasks.model.integrity import stored_manifest
    from tasks.model.reference import reference_of
    from tasks.model.register import save_to_model_store
    from tasks.model.train import fit
    from tasks.monitor.window import mean_attributions
    from usecases.german_credit.generator import generate_applications

    settings = Settings()
    layout = Layout(settings.project_dir)
    params = load_params(layout.params_file)
    engine = make_engine(settings.db_url)
    ledger = Ledger(engine)
    moves = Rollouts(engine, ledger)
    refs = {}
    for role, seed, shortcut in (
        ("production", 1, 0.0),
        ("fair", 2, 0.0),
        ("unfair", 3, 1.0),
        ("broken", 4, 0.0),
        ("fair_again", 5, 0.0),
    ):
        frame = to_feature_frame(generate_applications(ROWS, seed=seed, shortcut=shortcut), usecase=params.usecase)
        if role == "broken":  # trained on a column no request has: it raises on every request it is given
            frame["bureau_score"] = frame["credit_amount"] % 7
        if role == "production":
            layout.prepared_train.parent.mkdir(parents=True, exist_ok=True)
            frame.to_parquet(layout.prepared_train)  # the background linear explainers sample
        model = fit(frame, params=params)
        reference = None
        if role != "broken":  # the monitoring reference, as the reference stage computes it at training
            test = to_feature_frame(
                generate_applications(5_000, seed=seed + 100, shortcut=shortcut), usecase=params.usecase
            )
            attributions = mean_attributions(model, test.head(300), background=frame.head(300))
            reference = reference_of(model, frame, test, params=params, attributions=attributions)
        tag = save_to_model_store(model, name="credit-risk", labels={"role": role}, metadata={}, reference=reference)
        version = moves.registry.register(
            name="credit-risk",
            model_tag=tag,
            model_md5=role,
            data_md5=f"{seed:032d}",
            params_hash="p" * 64,
            git_commit=None,
            flow_run_id=None,
            metrics={},
            manifest=stored_manifest(tag),
            signer=instance_key(settings),
        )
        sign_off(ledger, version.ref)
        moves.registry.transition(version.ref, State.APPROVED)
        if role == "production":
            moves.promote(version.ref, actor="setup", reason="the first production model")
        refs[role] = version.ref
    print(json.dumps(refs))


if __name__ == "__main__":
    main()

"""Three small models on the use case params.yaml names, in a fresh STEWARD_HOME (BentoML store + registry),
signed off and walked to production, canary and shadow, for the serving tests and bench/serving.py. Run it as its own
process, so BentoML reads the caller's BENTOML_HOME:

    STEWARD_HOME=... BENTOML_HOME=... python scripts/serving_fixture.py   # prints the three refs as JSON

Tests import `sign_off` and `approved` from it (`from scripts.serving_fixture import sign_off`, with the project root on
sys.path as `python -m pytest` puts it); the training and BentoML imports stay in `main`, so importing the
module is cheap and touches no model store.
"""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steward.governance import SignoffPolicy
from steward.ledger import Ledger
from steward.model_integrity import manifest_of
from steward.registry import State
from steward.signoff import Request

if TYPE_CHECKING:
    from steward.keys import Signer
    from steward.rollouts import Rollouts

WALK = [State.APPROVED, State.SHADOW, State.CANARY, State.PRODUCTION]


def sign_off(
    ledger: Ledger,
    ref: str,
    *,
    author: str = "setup",
    approver: str = "tester",
    flow_run_id: str = "setup",
    requested_at: datetime | None = None,
    demo: bool = False,
) -> None:
    """Record a complete sign-off of model `ref` in `ledger`, so the registry lets it move to `approved`.

    Two records, as a real sign-off leaves them: `approval.requested` (by `author`, a high-tier request
    needing one approver, with a placeholder evidence digest; `demo`: a demo sign-off) and `approval.granted`
    (by `approver`, as model-risk). Nothing else is checked or written: walking the model through the registry
    is the caller's.
    """
    request = Request(
        model=ref,
        flow_run_id=flow_run_id,
        author=author,
        tier="high",
        policy=SignoffPolicy(approvers=1),
        evidence_digest="ab" * 32,
        evidence_page="-",
        requested_at=requested_at or datetime.now(UTC),
        demo=demo,
    )
    ledger.append(actor=author, action="approval.requested", subject=ref, payload=request.payload())
    grant = {"flow_run_id": flow_run_id, "approver": approver, "roles": ["model-risk"], "pause_key": "k"}
    ledger.append(actor=approver, action="approval.granted", subject=ref, payload=grant)


def approved(moves: Rollouts, name: str, n: int, *, directory: Path | None = None, signer: Signer | None = None) -> str:
    """Register version `n` of model `name` with placeholder lineage, sign it off and approve it; its ref. With
    `directory` and `signer`: a small model's files written there and registered with their signed manifest, so
    that the byte check of a rollout or a restore can pass (or, once a test changes them, fail)."""
    sealed: dict[str, Any] = {}
    if directory is not None and signer is not None:
        directory.mkdir(parents=True)
        (directory / "saved_model.pkl").write_bytes(pickle.dumps({"coef": n}))
        (directory / "model.yaml").write_text(f"name: {name}\nversion: t{n}\n")
        sealed = {"manifest": manifest_of(directory), "signer": signer}
    ref = moves.registry.register(
        name=name,
        model_tag=f"{name}:t{n}",
        model_md5=str(n),
        data_md5="d",
        params_hash="p",
        git_commit=None,
        flow_run_id=None,
        metrics={},
        **sealed,
    ).ref
    sign_off(moves.ledger, ref)
    moves.registry.transition(ref, State.APPROVED)
    return ref


def main() -> None:
    from steward.db import make_engine
    from steward.keys import instance_key
    from steward.layout import Layout
    from steward.params import load_params
    from steward.registry import Registry
    from steward.settings import Settings
    from tasks.data.features import read_snapshot, to_feature_frame
    from tasks.model.integrity import stored_manifest
    from tasks.model.register import save_to_model_store
    from tasks.model.train import fit

    settings = Settings()
    params = load_params(Layout(settings.project_dir).params_file)
    layout = Layout(settings.project_dir)
    usecase = params.usecase
    frame = to_feature_frame(read_snapshot(settings.project_dir / usecase.dataset.file), usecase=usecase)
    layout.prepared_train.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(layout.prepared_train)  # the background the service's linear explainers sample
    engine = make_engine(settings.db_url)
    ledger = Ledger(engine)
    registry = Registry(engine, ledger=ledger)
    refs = {}
    for role, model_name, state in (
        ("production", "gradient_boosting", State.PRODUCTION),
        ("canary", "logistic_regression", State.CANARY),
        ("shadow", "logistic_regression", State.SHADOW),
    ):
        train = params.train.model_copy(update={"model": model_name, "seed": len(refs)})
        model = fit(frame, params=params.model_copy(update={"train": train}))
        tag = save_to_model_store(model, name=usecase.model_name, labels={"role": role}, metadata={})
        version = registry.register(
            name=usecase.model_name,
            model_tag=tag,
            model_md5=role,
            data_md5="d" * 32,
            params_hash="p" * 64,
            git_commit=None,
            flow_run_id=None,
            metrics={},
            manifest=stored_manifest(tag),
            signer=instance_key(settings),
        )
        sign_off(ledger, version.ref)
        for step in WALK[: WALK.index(state) + 1]:
            registry.transition(version.id, step)
        refs[role] = version.ref
    print(json.dumps(refs))


if __name__ == "__main__":
    main()

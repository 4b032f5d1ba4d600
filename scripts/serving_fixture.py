"""Three small models on German credit in a fresh STEWARD_HOME (BentoML store + registry), signed off and
walked to production, canary and shadow, for the serving tests and bench/serving.py. Run it as its own
process, so BentoML reads the caller's BENTOML_HOME:

    STEWARD_HOME=... BENTOML_HOME=... python scripts/serving_fixture.py   # prints the three refs as JSON
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pandas as pd

from steward.db import make_engine
from steward.layout import Layout
from steward.ledger import Ledger
from steward.params import SignoffPolicy, load_params
from steward.registry import Registry, State
from steward.settings import Settings
from steward.signoff import Request
from tasks.features import to_feature_frame
from tasks.register import save_to_model_store
from tasks.train import fit

WALK = [State.APPROVED, State.SHADOW, State.CANARY, State.PRODUCTION]


def main() -> None:
    settings = Settings()
    params = load_params(Layout(settings.project_dir).params_file)
    layout = Layout(settings.project_dir)
    frame = to_feature_frame(pd.read_csv(layout.bundled_data), data=params.data)
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
        tag = save_to_model_store(model, name="credit-risk", labels={"role": role}, metadata={})
        version = registry.register(
            name="credit-risk",
            model_tag=tag,
            model_md5=role,
            data_md5="d" * 32,
            params_hash="p" * 64,
            git_commit=None,
            flow_run_id=None,
            metrics={},
        )
        request = Request(
            model=version.ref,
            flow_run_id="setup",
            author="setup",
            tier="high",
            policy=SignoffPolicy(approvers=1),
            evidence_digest="ab" * 32,
            evidence_page="-",
            requested_at=datetime.now(UTC),
        )
        ledger.append(actor="setup", action="approval.requested", subject=version.ref, payload=request.payload())
        grant = {"flow_run_id": "setup", "approver": "tester", "roles": ["model-risk"], "pause_key": "k"}
        ledger.append(actor="tester", action="approval.granted", subject=version.ref, payload=grant)
        for step in WALK[: WALK.index(state) + 1]:
            registry.transition(version.id, step)
        refs[role] = version.ref
    print(json.dumps(refs))


if __name__ == "__main__":
    main()

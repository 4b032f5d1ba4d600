"""A production model and two signed-off candidates on synthetic applications, in a fresh STEWARD_HOME, for
the rollout tests and bench/rollback.py. Run it as its own process, so BentoML reads the caller's
BENTOML_HOME:

    STEWARD_HOME=... BENTOML_HOME=... python -m scripts.rollout_fixture   # from the project root; prints the refs

* production: gradient boosting on unbiased applications, promoted (the first production model);
* fair: the same recipe on another draw, approved (a rollout of it should reach production);
* unfair: trained on a snapshot with the education shortcut (`tasks/synthetic.py`), approved. It treats
  every group alike on ordinary traffic, but declines the young once a student-loan campaign brings them
  to borrow for education (`generate_applications(proxy=...)`);
* broken: trained on a column requests do not have, approved: it raises on every request (the circuit
  breaker's case).
"""

from __future__ import annotations

import json

ROWS = 10_000


def main() -> None:
    from scripts.serving_fixture import sign_off
    from steward.db import make_engine
    from steward.layout import Layout
    from steward.ledger import Ledger
    from steward.params import load_params
    from steward.registry import State
    from steward.routing import Rollouts
    from steward.settings import Settings
    from tasks.features import to_feature_frame
    from tasks.register import save_to_model_store
    from tasks.synthetic import generate_applications
    from tasks.train import fit

    settings = Settings()
    layout = Layout(settings.project_dir)
    params = load_params(layout.params_file)
    engine = make_engine(settings.db_url)
    ledger = Ledger(engine)
    moves = Rollouts(engine, ledger)
    refs = {}
    for role, seed, shortcut in (("production", 1, 0.0), ("fair", 2, 0.0), ("unfair", 3, 1.0), ("broken", 4, 0.0)):
        frame = to_feature_frame(generate_applications(ROWS, seed=seed, shortcut=shortcut), data=params.data)
        if role == "broken":  # trained on a column no request has: it raises on every request it is given
            frame["bureau_score"] = frame["credit_amount"] % 7
        if role == "production":
            layout.prepared_train.parent.mkdir(parents=True, exist_ok=True)
            frame.to_parquet(layout.prepared_train)  # the background linear explainers sample
        model = fit(frame, params=params)
        tag = save_to_model_store(model, name="credit-risk", labels={"role": role}, metadata={})
        version = moves.registry.register(
            name="credit-risk",
            model_tag=tag,
            model_md5=role,
            data_md5=f"{seed:032d}",
            params_hash="p" * 64,
            git_commit=None,
            flow_run_id=None,
            metrics={},
        )
        sign_off(ledger, version.ref)
        moves.registry.transition(version.ref, State.APPROVED)
        if role == "production":
            moves.promote(version.ref, actor="setup", reason="the first production model")
        refs[role] = version.ref
    print(json.dumps(refs))


if __name__ == "__main__":
    main()

"""Only the training flow's sign-off step, on a candidate already in the registry: the tests run it as a
subprocess (in place, or served as a deployment) against a real Prefect server, without training a model.

    python signoff_harness.py MODEL_REF AUTHOR          # run once, pausing in place
    python signoff_harness.py --serve NAME              # serve it as deployment NAME (suspends instead)
"""

from __future__ import annotations

import sys

from prefect import flow

from flows.signoff import sign_off
from steward.anchor import anchored
from steward.db import make_engine
from steward.layout import Layout
from steward.params import load_params
from steward.registry import Registry
from steward.settings import Settings


@flow(name="signoff-harness")
def harness(model_ref: str, author: str) -> str:
    settings = Settings()
    params = load_params(Layout(settings.project_dir).params_file)
    engine = make_engine(settings.db_url)
    ledger = anchored(engine, settings)  # as the training flow's: its head is checkpointed
    registry = Registry(engine, ledger=ledger)
    model = registry.get(model_ref)
    settled = sign_off(
        model,
        run=params.governance,
        usecase=params.usecase,
        author=author,
        settings=settings,
        registry=registry,
        ledger=ledger,
    )
    print(f"sign-off ended: {settled.ref} is {settled.state.value}")
    return settled.state.value


if __name__ == "__main__":
    if sys.argv[1] == "--serve":
        harness.serve(name=sys.argv[2])
    else:
        harness(sys.argv[1], sys.argv[2])

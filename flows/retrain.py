"""The retraining flow: started by an engineer (`steward retrain --reason TEXT`) or by a deployment trigger
(a `steward.monitor.breach` of the production model). It records why in the ledger (`retrain.requested`),
assembles the new snapshot with the outcomes received through /feedback and the review decisions
(tasks/retrain/assemble.py), and runs the training flow on it, with every gate and the sign-off.

It retrains one use case (`usecase`, default params.yaml's): that use case's served rows, labels and columns;
the ledger record's subject is `retrain:<model name>`.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.train import TrainResult, train_flow
from steward.anchor import anchored
from steward.db import make_engine
from steward.layout import Layout
from steward.ledger import RETRAIN_REQUESTED
from steward.params import load_params
from steward.settings import Settings
from tasks.retrain.assemble import assemble_task

ACTOR = "steward-retrain"


@flow(name="retrain", flow_run_name="retrain: {reason}", log_prints=True)
def retrain_flow(
    reason: str,
    data: str | None = None,
    trigger: str = "engineer",
    author: str | None = None,
    usecase: str | None = None,
) -> TrainResult:
    """Retrain `usecase` (default: params.yaml's) on `data` (default: its current snapshot) plus what came back
    from serving its model; `reason` and `trigger` (engineer, or the event that started it) are recorded, with
    the rows each source gave, before training starts."""
    settings = Settings()
    author = author or settings.user
    chosen = load_params(Layout(settings.project_dir).params_file, usecase=usecase).usecase
    ledger = anchored(make_engine(settings.db_url), settings)
    assembled = assemble_task(data, usecase=chosen.name, settings=settings)
    ledger.append(
        actor=author,
        action=RETRAIN_REQUESTED,
        subject=f"retrain:{chosen.model_name}",
        payload={
            "reason": reason,
            "trigger": trigger,
            "usecase": chosen.name,
            "data": data or "current snapshot",
            "rows": assembled.counts(),
        },
    )
    get_run_logger().info(f"retraining {chosen.name} ({trigger}: {reason}) on {assembled.path}: {assembled.counts()}")
    return train_flow(data=str(assembled.path), author=author, usecase=usecase)

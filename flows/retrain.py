"""The retraining flow: started by an engineer (`steward retrain --reason TEXT`) or by a deployment trigger
(a `steward.monitor.breach` of the production model). It records why in the ledger (`retrain.requested`),
assembles the new snapshot with the outcomes received through /feedback and the review decisions
(tasks/retrain/assemble.py), and runs the training flow on it, with every gate and the sign-off.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.train import TrainResult, train_flow
from steward.db import make_engine
from steward.ledger import RETRAIN_REQUESTED, Ledger
from steward.settings import Settings
from tasks.retrain.assemble import assemble_task

ACTOR = "steward-retrain"


@flow(name="retrain", flow_run_name="retrain: {reason}", log_prints=True)
def retrain_flow(
    reason: str, data: str | None = None, trigger: str = "engineer", author: str | None = None
) -> TrainResult:
    """Retrain on `data` (default: the current snapshot) plus what came back from serving; `reason` and
    `trigger` (engineer, or the event that started it) are recorded, with the rows each source gave, before
    training starts."""
    settings = Settings()
    author = author or settings.user
    ledger = Ledger(make_engine(settings.db_url))
    assembled = assemble_task(data, settings=settings)
    ledger.append(
        actor=author,
        action=RETRAIN_REQUESTED,
        subject="retrain",
        payload={"reason": reason, "trigger": trigger, "data": data or "current snapshot", "rows": assembled.counts()},
    )
    get_run_logger().info(f"retraining ({trigger}: {reason}) on {assembled.path}: {assembled.counts()}")
    return train_flow(data=str(assembled.path), author=author)

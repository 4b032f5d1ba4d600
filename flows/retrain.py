"""The retraining flow: started by an engineer (`steward retrain --reason TEXT`) or by a deployment trigger
(a `steward.monitor.breach` of the production model). It records why in the ledger (`retrain.requested`),
assembles the new snapshot with the outcomes received through /feedback and the review decisions
(tasks/retrain.py), and runs the training flow on it, with every gate and the sign-off.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.train import TrainResult, train_flow
from steward.db import make_engine
from steward.layout import Layout
from steward.ledger import RETRAIN_REQUESTED, Ledger
from steward.params import load_params
from steward.settings import Settings
from steward.storage import Storage
from tasks.retrain import Assembled, assemble

ACTOR = "steward-retrain"


@task(name="assemble-training-data", cache_policy=NO_CACHE)
def assemble_task(data: str | None, *, settings: Settings) -> Assembled:
    layout = Layout(settings.project_dir)
    params = load_params(layout.params_file)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    if data:
        snapshot = Storage.from_settings(settings).fetch(data, settings.state_dir / "incoming" / f"retrain-{stamp}.csv")
    else:
        snapshot = layout.raw_data if layout.raw_data.is_file() else layout.bundled_data
    return assemble(
        snapshot,
        make_engine(settings.db_url),
        out=settings.state_dir / "retrain" / f"snapshot-{stamp}.csv",
        review_labels=params.retrain.review_labels,
    )


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

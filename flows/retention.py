"""The retention flow: what the prediction log holds about people past its period (params.yaml `privacy.retention`)
is removed, and one `retention.applied` ledger record says how much (steward/erasure.py). Scheduled daily per use
case in deployments/prefect.yaml; `steward retention apply` runs it by hand."""

from __future__ import annotations

from prefect import flow, get_run_logger

from steward.anchor import anchored
from steward.db import make_engine
from steward.erasure import apply_retention, describe, snapshot_files
from steward.layout import Layout
from steward.params import load_params
from steward.settings import Settings
from tasks.artifacts import markdown_table, publish


@flow(name="retention", flow_run_name="retention {usecase}", log_prints=False)
def retention_flow(usecase: str | None = None) -> dict[str, int]:
    """Apply `usecase`'s retention periods (default: params.yaml's use case); returns what was removed."""
    settings = Settings()
    params = load_params(Layout(settings.project_dir).params_file, usecase=usecase)
    engine = make_engine(settings.db_url)
    days = params.privacy.retention.model_dump()
    removed, record = apply_retention(
        engine,
        anchored(engine, settings),
        model_name=params.usecase.model_name,
        days=days,
        snapshots=snapshot_files(settings.state_dir),
    )
    model_name = params.usecase.model_name
    get_run_logger().info(f"{model_name}: retention removed {describe(removed)} (ledger seq {record.seq})")
    rows = {f"{kind} (kept {d} days)": removed.counts()[kind] for kind, d in days.items()}
    publish(
        f"retention-{model_name}",
        f"## Retention: {model_name}\n\n" + markdown_table(rows | {"ledger record": record.seq}),
        description=f"{model_name}: {describe(removed)}",
    )
    return removed.counts()

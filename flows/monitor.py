"""The monitoring flow: a window of the prediction log for a served model against the reference stored with
it at training (tasks/monitor/window.py). It writes reports/monitor-<time>.json and .html and a Prefect artifact,
and emits `steward.monitor.breach` (resource: the model) when anything breaches, for an automation to act on.

It monitors one use case (`usecase`, default params.yaml's): by default the production model and any canary
of that use case's routing row. First it expires that use case's lapsed rollout lease, if any: a rollout that
died has its candidate withdrawn (steward/leases.py) rather than monitored.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow, get_run_logger
from prefect.events import emit_event

from steward.anchor import anchored
from steward.db import make_engine
from steward.layout import Layout
from steward.leases import expire
from steward.ledger import Ledger
from steward.params import load_params
from steward.rollouts import Rollouts
from steward.routing import RoutingTable
from steward.settings import Settings
from tasks.artifacts import publish
from tasks.monitor.window import monitor_parquet, monitor_window, page
from tasks.signoff.policy import resource

NOTHING_SERVED = "use case {usecase} has no production model ({model_name}) to monitor: name one with --model"


def task_runner(params: Any) -> Any:
    """The task runner `monitor.task_runner` asks for: Prefect's threads, or Dask: the cluster at
    `monitor.dask_address`, else a local one of `monitor.dask_workers` processes."""
    if params.monitor.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if params.monitor.dask_address:
            return DaskTaskRunner(address=params.monitor.dask_address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": params.monitor.dask_workers, "threads_per_worker": 1})
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner()


@flow(name="monitor", flow_run_name="monitor {model}", log_prints=False)
def monitor_flow(
    model: str | None = None,
    hours: float = 24.0,
    since: str | None = None,
    usecase: str | None = None,
    parquet: str | None = None,
) -> list[dict[str, Any]]:
    """Monitor `model` (default: `usecase`'s production and, if there is one, its canary; `usecase` defaults to
    params.yaml's) over the last `hours`, or from `since` (ISO time); the windows run on the task runner
    params.yaml names. With `parquet` (a file or folder, local or s3://, as `steward monitor --export` writes),
    `model`'s decisions there (default: production's) are judged instead, counted chunk by chunk or, on Dask,
    partition by partition."""
    settings = Settings()
    params = load_params(Layout(settings.project_dir).params_file, usecase=usecase)
    engine = make_engine(settings.db_url)
    model_name = params.usecase.model_name
    _expire_leases(engine, model_name, settings=settings)
    routing = RoutingTable(engine, Ledger(engine)).get(model_name)
    refs = [model] if model else [r for r in (routing.production, routing.canary) if r]
    if parquet:
        refs = refs[:1]
    if not refs:
        raise ValueError(NOTHING_SERVED.format(usecase=params.usecase.name, model_name=model_name))
    now = datetime.now(UTC)
    start = since or (now - timedelta(hours=hours)).isoformat(timespec="microseconds")
    until = now.isoformat(timespec="microseconds")
    windows = _windows.with_options(task_runner=task_runner(params))(
        refs, since=start, until=until, usecase=params.usecase.name, settings=settings, parquet=parquet
    )
    return [_publish(found, routing=routing, settings=settings) for found in windows]


def _expire_leases(engine: Any, model_name: str, *, settings: Settings) -> None:
    """A rollout of this use case whose lease lapsed (it died): its candidate withdrawn (steward/leases.py)."""
    moves = Rollouts(engine, anchored(engine, settings))
    for done in expire(moves, model_name=model_name):
        get_run_logger().warning(done.reason)
        if done.withdrew:
            payload = {"step": "lease", "ending": "withdrawn", "reason": done.reason}
            emit_event(event="steward.rollback", resource=resource(done.lease.holder), payload=payload)


@flow(name="monitor-windows", log_prints=False)
def _windows(
    refs: list[str], *, since: str, until: str, usecase: str, settings: Settings, parquet: str | None
) -> list[dict[str, Any]]:
    if parquet:
        futures = [monitor_parquet.submit(ref, source=parquet, usecase=usecase, settings=settings) for ref in refs]
    else:
        futures = [
            monitor_window.submit(ref, since=since, until=until, usecase=usecase, settings=settings) for ref in refs
        ]
    return [future.result() for future in futures]


def window_of(found: dict[str, Any]) -> str:
    """Which decisions a report judged: from a time on, or those exported to a Parquet source."""
    return f"in {found['source']}" if "source" in found else f"since {found['since']}"


def _publish(found: dict[str, Any], *, routing: Any, settings: Settings) -> dict[str, Any]:
    """Write the report and its page, attach the artifact, and emit the breach event (with the model's role)."""
    ref = found["model"]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    reports = Layout(settings.project_dir) / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    (reports / f"monitor-{stamp}.json").write_text(json.dumps(found, indent=2, sort_keys=True, default=str) + "\n")
    if found["n"]:
        (reports / f"monitor-{stamp}.html").write_text(page(found, title=f"Monitoring {ref} {window_of(found)}"))
    lines = [f"- {b}" for b in found["breaches"]] or ["- none"]
    publish(
        "monitor",
        f"## {ref}: {found['n']} decisions {window_of(found)}\n\nBreaches:\n" + "\n".join(lines),
        description=f"monitoring {ref}",
    )
    if found["breaches"]:
        role = "canary" if ref == routing.canary else "production" if ref == routing.production else "other"
        emit_event(
            event="steward.monitor.breach",
            resource={**resource(ref), "steward.role": role},  # the triggers in deployments/prefect.yaml match it
            payload={"breaches": found["breaches"], "report": f"reports/monitor-{stamp}.json", "n": found["n"]},
        )
    get_run_logger().info(f"{ref}: {found['n']} decisions, {len(found['breaches'])} breach(es)")
    return found

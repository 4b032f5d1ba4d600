"""`steward serve`, `rollback` and `status`: what serves decisions, and the kill switch."""

from __future__ import annotations

import typer
from rich.table import Table

from flows.cli.common import _environment, _fail, console
from steward.errors import StewardError
from steward.settings import Settings


def serve(port: int = typer.Option(3000, "--port", help="Port on 127.0.0.1.")) -> None:
    """Serve decisions: `bentoml serve` of deployments/service.py, routing as the routing table says."""
    import subprocess

    from deployments.local.bento_server import SERVICE, serve_command

    settings = Settings()
    _environment(settings, server=False)
    command = serve_command(SERVICE, port=port)
    console.print(f"serving on http://127.0.0.1:{port} (OpenAPI at /docs.json); Ctrl+C stops it", highlight=False)
    raise typer.Exit(subprocess.call(command, cwd=settings.project_dir))


def rollout(
    model: str = typer.Argument(..., help="An approved model version: `name:vN` or a registry id."),
) -> None:
    """Shadow → canary weights → production, with an analysis after each step and automatic rollback on a breach."""
    settings = Settings()
    _environment(settings, server=True)
    from flows.rollout import rollout_flow

    try:
        result = rollout_flow(model)
    except StewardError as exc:
        _fail(exc)
        return
    for step in result.steps:
        console.print(f"  {step['step']}: {step['ending']} — {step['summary']}", highlight=False, markup=False)
    console.print(f"{result.model}: {result.outcome} ({result.reason})", highlight=False, markup=False)
    if result.outcome != "production":
        raise typer.Exit(code=4)


def rollback(
    reason: str = typer.Option(..., "--reason", help="Why: recorded in the ledger."),
    actor: str | None = typer.Option(None, "--as", help="Who pulls the switch (default STEWARD_USER or the OS user)."),
) -> None:
    """The kill switch: canary and shadow out of routing (rolled back); with no canary, production too, and
    the service refuses decisions (503, `referred`) until a model is restored. Audited in the ledger."""
    from steward.db import make_engine
    from steward.ledger import Ledger
    from steward.routing import Rollouts

    settings = Settings()
    engine = make_engine(settings.db_url)
    try:
        pulled, done = Rollouts(engine, Ledger(engine)).kill_switch(actor=actor or settings.user, reason=reason)
    except StewardError as exc:
        _fail(exc)
        return
    target = done.production or "nobody: decisions are refused and referred to people"
    console.print(f"rolled back {', '.join(pulled) or 'nothing'}; all traffic to {target}", highlight=False)


def status() -> None:
    """What serves what: the routing table, the models' registry states, and the prediction log."""
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    from steward.db import make_engine
    from steward.ledger import ROLLOUT_ANALYSIS, Ledger
    from steward.predictions import PredictionRow
    from steward.registry import Registry, RegistryError
    from steward.routing import RoutingTable

    settings = Settings()
    engine = make_engine(settings.db_url)
    ledger = Ledger(engine)
    routing = RoutingTable(engine, ledger).get()
    registry = Registry(engine)
    table = Table("role", "model", "registry state", "weight")
    for role, ref, weight in (
        ("production", routing.production, 1 - routing.canary_weight if routing.canary else 1.0),
        ("canary", routing.canary, routing.canary_weight),
        ("shadow", routing.shadow, None),
    ):
        if ref:
            try:
                state = registry.get(ref).state.value
            except RegistryError:
                state = "unknown"
            table.add_row(role, ref, state, "mirror" if weight is None else f"{weight:.0%}")
    console.print(f"routing revision {routing.revision}, mode {routing.mode}: {routing.reason or '-'}", highlight=False)
    console.print(table)
    with Session(engine) as session:
        rows = session.execute(
            select(PredictionRow.model, PredictionRow.role, func.count()).group_by(
                PredictionRow.model, PredictionRow.role
            )
        ).all()
    for model, role, count in rows:
        console.print(f"  logged: {count} {role} decisions by {model}", highlight=False)
    analyses = ledger.records(actions=(ROLLOUT_ANALYSIS,))
    if analyses:
        p = analyses[-1].payload
        console.print(
            f"last analysis ({analyses[-1].ts}): {p['candidate']} {p['step']} vs {p['reference']}: "
            f"{p['ending']}; {p['summary']}",
            highlight=False,
            markup=False,
        )


def monitor(
    model: str | None = typer.Option(None, "--model", help="A model version (default: production and any canary)."),
    hours: float = typer.Option(24.0, "--hours", help="The window: the last HOURS of the prediction log."),
    since: str | None = typer.Option(None, "--since", help="Or from this ISO time (UTC) until now."),
) -> None:
    """Drift, group rates, error rates, attributions and latency of a window against each model's reference
    (production and any canary). Writes reports/monitor-<time>.json and .html; exits 4 on a breach (and emits
    a Prefect event)."""
    settings = Settings()
    _environment(settings, server=True)
    from flows.monitor import monitor_flow

    try:
        reports = monitor_flow(model=model, hours=hours, since=since)
    except StewardError as exc:
        _fail(exc)
        return
    for found in reports:
        console.print(f"{found['model']}: {found['n']} decisions since {found['since']}", highlight=False)
        for breach in found["breaches"]:
            console.print(f"  breach: {breach}", highlight=False, markup=False)
    if any(found["breaches"] for found in reports):
        raise typer.Exit(code=4)

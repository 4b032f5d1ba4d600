"""`steward serve`, `rollback` and `status`: what serves decisions, and the kill switch."""

from __future__ import annotations

import typer
from rich.table import Table

from flows.cli_common import _environment, _fail, _user_errors, console
from steward.settings import Settings


def serve(port: int = typer.Option(3000, "--port", help="Port on 127.0.0.1.")) -> None:
    """Serve decisions: `bentoml serve` of deployments/service.py, routing as the routing table says."""
    import subprocess

    settings = Settings()
    _environment(settings, server=False)
    command = ["bentoml", "serve", "deployments.service:Steward", "--host", "127.0.0.1", "--port", str(port)]
    console.print(f"serving on http://127.0.0.1:{port} (OpenAPI at /docs.json); Ctrl+C stops it", highlight=False)
    raise typer.Exit(subprocess.call(command, cwd=settings.project_dir))


def rollback(
    reason: str = typer.Option(..., "--reason", help="Why: recorded in the ledger."),
    actor: str | None = typer.Option(None, "--as", help="Who pulls the switch (default STEWARD_USER or the OS user)."),
) -> None:
    """The kill switch: canary and shadow out of routing (rolled back); with no canary, production too, and
    the service refuses decisions (503, `referred`) until a model is restored. Audited in the ledger."""
    from steward.db import make_engine
    from steward.ledger import Ledger
    from steward.registry import Registry, State
    from steward.routing import Routing, RoutingTable

    settings = Settings()
    engine = make_engine(settings.db_url)
    ledger = Ledger(engine)
    registry, table = Registry(engine, ledger=ledger), RoutingTable(engine, ledger)
    who = actor or settings.user
    current = table.get()
    pulled = [ref for ref in (current.canary, current.shadow) if ref]
    if not pulled and current.production:
        pulled, after = [current.production], Routing(mode="refuse")
    else:
        after = Routing(production=current.production, mode="serve" if current.production else "refuse")
    try:
        for ref in pulled:
            if registry.get(ref).state in (State.SHADOW, State.CANARY, State.PRODUCTION):
                registry.transition(ref, State.ROLLED_BACK, actor=who)
        done = table.set(after, actor=who, reason=reason, rollback=True)
    except _user_errors() as exc:
        _fail(exc)
        return
    target = done.production or "nobody: decisions are refused and referred to people"
    console.print(f"rolled back {', '.join(pulled) or 'nothing'}; all traffic to {target}", highlight=False)


def status() -> None:
    """What serves what: the routing table, the models' registry states, and the prediction log."""
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    from steward.db import make_engine
    from steward.ledger import Ledger
    from steward.predictions import PredictionRow
    from steward.registry import Registry, RegistryError
    from steward.routing import RoutingTable

    settings = Settings()
    engine = make_engine(settings.db_url)
    routing = RoutingTable(engine, Ledger(engine)).get()
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

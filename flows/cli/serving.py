"""`steward serve`, `rollout`, `leases`, `rollback` and `status`: what serves decisions, rolling out and back,
and the kill switch."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.table import Table

from flows.cli.common import _environment, _fail, _ride_out_prefect_restarts, console
from steward.errors import StewardError
from steward.settings import Settings

if TYPE_CHECKING:
    from steward.rollouts import RollbackDone

USECASE_HELP = "The use case (a folder under usecases/; default: params.yaml's)."


def _model_name(settings: Settings, usecase: str | None) -> str:
    """The model name of `usecase` (default: params.yaml's): the key of its routing row."""
    from steward.layout import Layout
    from steward.params import load_params

    return load_params(Layout(settings.project_dir).params_file, usecase=usecase).usecase.model_name


def serve(port: int = typer.Option(3000, "--port", help="Port on 127.0.0.1.")) -> None:
    """Serve decisions: `bentoml serve` of deployments/service.py, routing as the routing table says. SIGTERM or
    SIGINT (Ctrl+C) stops it and every worker it started, each flushing its prediction log, then exits 0."""
    from deployments.local.bento_server import SERVICE, serve_command, serve_until_stopped

    settings = Settings()
    _environment(settings, server=False)
    command = serve_command(SERVICE, port=port)
    console.print(f"serving on http://127.0.0.1:{port} (OpenAPI at /docs.json); Ctrl+C stops it", highlight=False)
    raise typer.Exit(serve_until_stopped(command, cwd=settings.project_dir))


def rollout(
    model: str = typer.Argument(..., help="An approved model version: `name:vN` or a registry id."),
    usecase: str | None = typer.Option(None, "--usecase", help=USECASE_HELP),
    alpha: float | None = typer.Option(
        None,
        "--alpha",
        help="Judge the steps at this stricter false-alarm rate (rollout.analysis.alpha down to a hundredth of it).",
    ),
) -> None:
    """Shadow → canary weights → production, with an analysis after each step and automatic rollback on a breach.
    The rollout holds its use case's lease while it runs (a second rollout of it is refused); if it dies, or waits
    on Prefect longer than `rollout.lease_seconds`, its candidate is withdrawn (`steward leases`). It rides out a
    Prefect server restart of a few minutes as `steward train` does."""
    _ride_out_prefect_restarts()
    settings = Settings()
    _environment(settings, server=True)
    from flows.rollout import rollout_flow

    try:
        result = rollout_flow(model, usecase=usecase, alpha=alpha)
    except StewardError as exc:
        _fail(exc)
        return
    for step in result.steps:
        console.print(f"  {step['step']}: {step['ending']} — {step['summary']}", highlight=False, markup=False)
    console.print(f"{result.model}: {result.outcome} ({result.reason})", highlight=False, markup=False)
    if result.outcome != "production":
        raise typer.Exit(code=4)


def leases(
    expire: bool = typer.Option(False, "--expire", help="Withdraw the candidates of lapsed leases now."),
) -> None:
    """The rollouts' leases, per model name: who holds each and until when. A lease lapses when its rollout stops
    renewing it (killed, hung, Prefect unreachable); the service and `steward monitor` then withdraw its
    candidate if it is still the shadow or canary, and so does `--expire`. Audited in the ledger."""
    from steward.anchor import anchored
    from steward.db import make_engine
    from steward.leases import Leases
    from steward.leases import expire as expire_lapsed
    from steward.rollouts import Rollouts

    settings = Settings()
    try:
        engine = make_engine(settings.db_url)
        if expire:
            for done in expire_lapsed(Rollouts(engine, anchored(engine, settings))):
                what = "withdrawn" if done.withdrew else "no longer shadow or canary, lease dropped"
                console.print(f"{done.lease.model_name}: {done.lease.holder} {what}", highlight=False, markup=False)
        found = Leases(engine).all()
    except StewardError as exc:
        _fail(exc)
        return
    if not found:
        console.print("leases: no rollout holds one", highlight=False)
    for lease in found:
        state = "live" if lease.live() else "lapsed"
        console.print(
            f"{lease.model_name}: {lease.holder}, {state} until {lease.expires_at.isoformat(timespec='seconds')} "
            f"(renewed {lease.renewed_at.isoformat(timespec='seconds')}, {lease.seconds:g} s)",
            highlight=False,
            markup=False,
        )


ROLLBACK_BOTH = "--to restores a model and --refuse-all refuses every decision: give one of them"
NOTHING_SERVES = "nobody: every decision is refused (503, referred to people)"
NO_REPLICA = "no serving replica has reported in the last {seconds:g} s: the change is taken up when one starts"
LAGGING = (
    "NOT taken up within {seconds:g} s by: {late}; such a replica is not ready while it cannot read the routing "
    "table (look at it, or stop it)"
)


def rollback(
    reason: str = typer.Option(..., "--reason", help="Why: recorded in the ledger (and the request's key)."),
    to: str | None = typer.Option(None, "--to", help="A former production model to restore (`name:vN`)."),
    refuse_all: bool = typer.Option(False, "--refuse-all", help="The kill switch: refuse every decision."),
    actor: str | None = typer.Option(None, "--as", help="Who rolls back (default STEWARD_USER or the OS user)."),
    usecase: str | None = typer.Option(None, "--usecase", help=USECASE_HELP),
    wait: float = typer.Option(10.0, "--wait", min=0, help="Seconds to wait for every serving replica to take it up."),
) -> None:
    """Roll one use case back: its canary and shadow out of routing (rolled back); with neither, production back
    to the standby (the last production model a promotion replaced, verified good); `--to MODEL` restores that
    former production model. A restored model's sign-off and bytes are checked first. The same request twice
    changes nothing the second time. `--refuse-all` takes every model out and refuses decisions until a model is
    restored. Other use cases keep serving. Audited in the ledger. Then waits until every serving replica reports
    the new routing, and names those that do not (exit 5)."""
    from steward.anchor import anchored
    from steward.db import make_engine
    from steward.routing import RoutingError
    from tasks.model.integrity import verifying_rollouts

    settings = Settings()
    who = actor or settings.user
    try:
        if to is not None and refuse_all:
            raise RoutingError(ROLLBACK_BOTH)
        model_name = _model_name(settings, usecase)
        engine = make_engine(settings.db_url)
        moves = verifying_rollouts(engine, anchored(engine, settings), settings, where="steward rollback", actor=who)
        if refuse_all:
            done = moves.refuse_all(model_name, actor=who, reason=reason)
        else:
            done = moves.rollback(model_name, actor=who, reason=reason, to=to)
    except StewardError as exc:
        _fail(exc)
        return
    console.print(rollback_summary(model_name, done), highlight=False, markup=False)
    from steward.replicas import LIVE_SECONDS, wait_for

    serving, behind = wait_for(engine, model_name, done.routing.revision, timeout=wait)
    if not serving and not behind:
        console.print(NO_REPLICA.format(seconds=LIVE_SECONDS), highlight=False, markup=False)
    if serving:
        names = ", ".join(r.replica for r in serving)
        console.print(f"replicas serving revision {done.routing.revision}: {names}", highlight=False, markup=False)
    if behind:
        late = ", ".join(f"{r.replica} (pid {r.pid}, still revision {r.revision})" for r in behind)
        console.print(LAGGING.format(seconds=wait, late=late), highlight=False, markup=False)
        raise typer.Exit(code=5)


def rollback_summary(model_name: str, done: RollbackDone) -> str:
    """What a rollback did and what now serves, in a line an operator reads."""
    routing = done.routing
    serving = f"all traffic to {routing.production}" if routing.production else NOTHING_SERVES
    if done.repeated is not None:
        return f"{model_name}: already done (ledger record {done.repeated}), nothing changed; now serving: {serving}"
    if not done.pulled and done.restored is None and routing.mode != "refuse":
        return f"{model_name}: nothing to change; now serving: {serving}"
    moved = f"rolled back {', '.join(done.pulled) or 'nothing'}"
    moved += f"; restored {done.restored}" if done.restored else ""
    return f"{model_name}: {moved}; now serving: {serving}"


def status() -> None:
    """What serves what, per model name (use case): its routing, the models' registry states, and the
    prediction log."""
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    from steward.db import make_engine
    from steward.ledger import ROLLOUT_ANALYSIS, Ledger
    from steward.predictions import PredictionRow
    from steward.registry import Registry, RegistryError, State
    from steward.routing import RoutingTable

    settings = Settings()
    engine = make_engine(settings.db_url)
    ledger = Ledger(engine)
    registry = Registry(engine)
    routed = RoutingTable(engine, ledger).all()
    if not routed:
        console.print("routing: nothing routed yet", highlight=False)
    for model_name, routing in routed.items():
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
        console.print(
            f"{model_name}: routing revision {routing.revision}, mode {routing.mode}: {routing.reason or '-'}",
            highlight=False,
        )
        console.print(table)
        standby = registry.list(state=State.STANDBY, name=model_name)
        console.print(
            f"  standby (what `steward rollback` restores): {standby[0].ref if standby else 'none'}", highlight=False
        )
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
    usecase: str | None = typer.Option(None, "--usecase", help=USECASE_HELP),
    parquet: str | None = typer.Option(
        None, "--parquet", help="Judge the decisions exported here (a file or folder, a path or s3://) instead."
    ),
    export: str | None = typer.Option(
        None, "--export", help="Write the window of --model (default: production) here as Parquet, and stop."
    ),
) -> None:
    """Drift, group rates, error rates, attributions and latency of a window against each model's reference
    (production and any canary). Writes reports/monitor-<time>.json and .html; exits 4 on a breach (and emits
    a Prefect event). A window of millions of decisions: --export it to Parquet, then judge it with --parquet
    (read in chunks, or on Dask with params.yaml's monitor.task_runner: dask; no attributions)."""
    settings = Settings()
    if export:
        _export(settings, model=model, hours=hours, since=since, usecase=usecase, destination=export)
        return
    _environment(settings, server=True)
    from flows.monitor import monitor_flow, window_of

    try:
        reports = monitor_flow(model=model, hours=hours, since=since, usecase=usecase, parquet=parquet)
    except (StewardError, ValueError, FileNotFoundError) as exc:
        _fail(exc)
        return
    for found in reports:
        console.print(f"{found['model']}: {found['n']} decisions {window_of(found)}", highlight=False)
        for breach in found["breaches"]:
            console.print(f"  breach: {breach}", highlight=False, markup=False)
    if any(found["breaches"] for found in reports):
        raise typer.Exit(code=4)


def _export(
    settings: Settings, *, model: str | None, hours: float, since: str | None, usecase: str | None, destination: str
) -> None:
    """`steward monitor --export`: the served window of `model` (default: the use case's production) as Parquet,
    page by page, without the request ids (the monitor does not read them)."""
    from datetime import UTC, datetime, timedelta

    from steward.db import make_engine
    from steward.layout import Layout
    from steward.ledger import Ledger
    from steward.params import load_params
    from steward.routing import RoutingTable
    from steward.windows import served_pages
    from tasks.monitor.stream import export_window, storage_options

    params = load_params(Layout(settings.project_dir).params_file, usecase=usecase)
    engine = make_engine(settings.db_url)
    ref = model or RoutingTable(engine, Ledger(engine)).get(params.usecase.model_name).production
    if ref is None:
        _fail(ValueError(f"use case {params.usecase.name} has no production model: name one with --model"))
        return
    now = datetime.now(UTC)
    start = since or (now - timedelta(hours=hours)).isoformat(timespec="microseconds")
    pages = (
        page.drop(columns=["request_id"])
        for page in served_pages(engine, model=ref, since=start, until=now.isoformat(timespec="microseconds"))
    )
    try:
        written = export_window(pages, destination, options=storage_options(settings.s3_endpoint_url))
    except (ValueError, OSError) as exc:
        _fail(exc)
        return
    console.print(f"{ref}: {written} decisions since {start} written to {destination}", highlight=False)

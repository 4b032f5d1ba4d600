"""`steward`: the front door. It parses arguments, prepares the environment, and calls a flow or a task."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from steward.settings import Settings

if TYPE_CHECKING:
    from flows.train import TrainResult
    from steward.layout import Layout
    from steward.ledger import Ledger
    from tasks.approvals import Pending

app = typer.Typer(help="Steward: responsible model lifecycle for high-stakes decisions.", no_args_is_help=True)
server_app = typer.Typer(help="The local Prefect server Steward starts when PREFECT_API_URL is unset.")
app.add_typer(server_app, name="server")
ledger_app = typer.Typer(help="The tamper-evident ledger of verdicts, approvals and transitions.")
app.add_typer(ledger_app, name="ledger")
console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean the input was wrong (shown as a message and exit 1), not that Steward broke."""
    from flows.signoff import SignoffImpossible
    from steward.ledger import LedgerError
    from steward.params import ParamsError
    from steward.registry import RegistryError
    from tasks.approvals import AnswerError
    from tasks.dvc import DvcError
    from tasks.validate import ValidationFailed

    return (
        ValidationFailed,
        ParamsError,
        RegistryError,
        DvcError,
        SignoffImpossible,
        AnswerError,
        LedgerError,
        FileNotFoundError,
        KeyError,
    )


def _environment(settings: Settings, *, server: bool) -> None:
    """Point Prefect, BentoML and DVC at STEWARD_HOME, and at a Prefect server (started if need be)."""
    os.environ.update(settings.tool_env())
    settings.prefect_home.mkdir(parents=True, exist_ok=True)  # Prefect only warns when it cannot make it
    if not server:
        return
    if settings.prefect_api_url:
        console.print(f"Prefect API: {settings.prefect_api_url}")
        return
    from flows.server import ensure_server

    local = ensure_server(settings)
    os.environ["PREFECT_API_URL"] = local.api_url
    verb = "Started" if local.started else "Using"
    console.print(
        f"{verb} a local Prefect server at {local.api_url.removesuffix('/api')} (pid {local.pid}; "
        f"log {local.log}). PREFECT_API_URL was unset; stop it with `steward server stop`."
    )


def _fail(exc: BaseException) -> None:
    err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)  # messages hold [brackets]
    raise typer.Exit(code=1)


def _report_verdict(result: TrainResult) -> None:
    """Print the gate's verdict and the sign-off's outcome; a rejected model ends with exit code 3."""
    from tasks.gate import Verdict

    if result.gate:
        console.print(Verdict.from_dict(result.gate).message(), markup=False, highlight=False)
    if result.rejected:
        why = "did not pass the gate" if result.gate.get("verdict") != "pass" else "was not approved at sign-off"
        err.print(f"[bold red]rejected:[/] {result.model.ref} {why} (recorded in the registry and the ledger)")
        raise typer.Exit(code=3)
    if result.model.state.value == "candidate":
        err.print(f"[bold yellow]changes requested:[/] {result.model.ref} stays a candidate; see the ledger for why")
        raise typer.Exit(code=3)
    console.print(f"[green]{result.model.state.value}:[/] {result.model.ref} ({result.model.model_tag})")


# A run paused for sign-off polls the Prefect API for days: let it ride out a server restart of a few minutes
# (retries back off 2, 4, ... 256 s) instead of failing (Prefect's default, 5 retries, lasts about a minute).
# Only the waiting commands get it: `steward approvals` on a server that is down should say so at once.
WAITING_CLIENT_RETRIES = "8"


def _run_training(data: str | None, *, author: str | None = None, demo: bool = False) -> TrainResult:
    from flows.train import train_flow

    try:
        return train_flow(data=data, author=author, demo_signoff=demo)
    except _user_errors() as exc:
        _fail(exc)
        raise  # unreachable: _fail exits


@app.command()
def train(
    data: str | None = typer.Option(
        None, "--data", help="CSV snapshot: a path or s3:// URI (default: bundled German credit)."
    ),
    author: str | None = typer.Option(
        None, "--author", help="Who starts this run (may not approve it); default STEWARD_USER or the OS user."
    ),
) -> None:
    """Run the training flow: ingest, validate, train, audit, gate, then wait for sign-off (`steward approve`)."""
    os.environ.setdefault("PREFECT_CLIENT_MAX_RETRIES", WAITING_CLIENT_RETRIES)
    settings = Settings()
    _environment(settings, server=True)
    result = _run_training(data, author=author)
    _report_verdict(result)


DEMO_ROWS, DEMO_SEED = 100_000, 5


@app.command()
def run() -> None:
    """The whole lifecycle on a bundled demo snapshot: train, audit, gate, sign-off by demo approvers, register.

    The demo snapshot is 100,000 synthetic applications in German credit's schema, generated without bias by
    tasks/synthetic.py: German credit's own 300 held-out rows are too few for the high tier's confidence
    bounds (`steward train` on it is rejected, which is the honest answer). A model that is rejected is a
    result, not an error: the command shows why and exits 0.
    """
    from threading import Event, Thread

    from steward.db import make_engine
    from steward.layout import Layout
    from steward.ledger import Ledger
    from steward.params import load_params
    from tasks.approvals import answer_as_demo
    from tasks.synthetic import write_demo_snapshot

    os.environ.setdefault("PREFECT_CLIENT_MAX_RETRIES", WAITING_CLIENT_RETRIES)
    settings = Settings()
    _environment(settings, server=True)
    layout = Layout(settings.project_dir)
    try:
        params = load_params(layout.params_file)
    except _user_errors() as exc:
        _fail(exc)
    demo = write_demo_snapshot(
        settings.state_dir / "demo" / f"applications-{DEMO_ROWS}.csv", n=DEMO_ROWS, seed=DEMO_SEED
    )
    console.print(f"Demo snapshot: {demo} ({DEMO_ROWS:,} synthetic applications, seed {DEMO_SEED}, no bias)")
    since = max((r.seq for r in Ledger(make_engine(settings.db_url)).records()), default=0)
    stop = Event()
    demo_approver = Thread(
        target=answer_as_demo,
        kwargs={
            "ledger": Ledger(make_engine(settings.db_url)),
            "governance": params.governance,
            "since_seq": since,
            "author": settings.user,
            "stop": stop,
        },
        name="demo-approver",
        daemon=True,
    )
    demo_approver.start()
    try:
        result = _run_training(str(demo), author=settings.user, demo=True)
    finally:
        stop.set()
        demo_approver.join(timeout=30)
    _where_everything_went(result, settings, layout)
    _signoff_story(result, Ledger(make_engine(settings.db_url)), since=since)


def _where_everything_went(result: TrainResult, settings: Settings, layout: Layout) -> None:
    from tasks.gate import Verdict

    rows = [
        (f"data snapshot (DVC md5 {result.snapshot.md5})", str(result.snapshot.path)),
        ("DVC remote", str(settings.dvc_remote_dir)),
        ("data contracts", str(layout.report("validate"))),
        ("Data Docs", str(layout / "reports/data_docs/raw/index.html")),
        ("evaluation metrics", str(layout.report("evaluate"))),
        ("calibration plot", str(layout.report("calibration", ".png"))),
        ("audits: data bias, fairness, SHAP, robustness, gate", str(layout / "reports")),
        ("evidence report: model card, impact assessment", str(layout / "reports/evidence/index.html")),
        ("model file going forward (DVC output)", str(layout.candidate_file)),
        ("BentoML model store", f"{result.model.model_tag} in {settings.bentoml_home}"),
        ("registry", f"{result.model.ref} ({result.model.state.value}) in {settings.db_url}"),
        ("Prefect runs and artifacts", os.environ.get("PREFECT_API_URL", "").removesuffix("/api")),
    ]
    console.print("\nWhere everything went:", style="bold")
    for name, where in rows:
        console.print(f"  {name}: {where}", markup=False, highlight=False)
    metrics = result.model.metrics
    console.print(
        "held-out: "
        + ", ".join(f"{k} {metrics[k]:.3f}" for k in ("auc", "accuracy", "brier") if k in metrics)
        + f"; stages run: {', '.join(result.stages_run) or 'none (all unchanged)'}"
    )
    console.print(Verdict.from_dict(result.gate).message(), markup=False, highlight=False)


def _signoff_story(result: TrainResult, ledger: Ledger, *, since: int) -> None:
    records = [r for r in ledger.records(subject=result.model.ref, since_seq=since) if r.action.startswith("approval.")]
    if records:
        console.print("\nSign-off (ledger):", style="bold")
    for record in records:
        payload = record.payload
        detail = payload.get("reason") or payload.get("comment") or payload.get("evidence_digest", "")
        kind = f" ({payload['approver_kind']})" if "approver_kind" in payload else ""
        console.print(f"  seq {record.seq}: {record.action} by {record.actor}{kind}: {detail}", markup=False)
    verified = ledger.verify()
    console.print(f"ledger: {verified.problem}", markup=False, highlight=False)
    state = "[red]rejected[/]" if result.rejected else f"[green]{result.model.state.value}[/]"
    console.print(f"{result.model.ref}: {state}")


@app.command()
def ingest(
    source: str | None = typer.Argument(
        None, help="CSV snapshot: a path or s3:// URI (default: bundled German credit)."
    ),
) -> None:
    """Validate a snapshot and make it data/raw's current DVC-tracked version (no Prefect needed)."""
    from steward.layout import Layout
    from steward.params import load_params
    from steward.storage import Storage
    from tasks.ingest import ingest as ingest_snapshot

    settings = Settings()
    _environment(settings, server=False)
    chosen = source or str(Layout(settings.project_dir).bundled_data)
    try:
        load_params(Layout(settings.project_dir).params_file)  # refuse a malformed params.yaml up front
        snapshot = ingest_snapshot(chosen, settings=settings, storage=Storage.from_settings(settings))
    except _user_errors() as exc:
        _fail(exc)
        return
    state = "new version, validated" if snapshot.changed else "unchanged"
    console.print(f"{snapshot.path}: md5 {snapshot.md5} ({state})")


@app.command()
def models() -> None:
    """List the registry's model versions, newest first."""
    from steward.db import make_engine
    from steward.registry import Registry

    settings = Settings()
    table = Table("model", "state", "BentoML tag", "data md5", "git commit", "AUC", "created")
    for version in Registry(make_engine(settings.db_url)).list():
        auc = version.metrics.get("auc")
        table.add_row(
            version.ref,
            version.state.value,
            version.model_tag,
            version.data_md5[:12],
            (version.git_commit or "-")[:12],
            f"{auc:.3f}" if auc is not None else "-",
            f"{version.created_at:%Y-%m-%d %H:%M}",
        )
    console.print(table)


def _approver_context() -> tuple[Settings, Ledger]:
    from steward.db import make_engine
    from steward.ledger import Ledger

    settings = Settings()
    _environment(settings, server=True)
    return settings, Ledger(make_engine(settings.db_url))


@app.command()
def approvals(
    sweep: bool = typer.Option(
        False,
        "--sweep",
        help="First escalate or expire suspended sign-offs past their deadline, and withdraw "
        "those whose run ended (what the signoff-sweep flow does on a schedule).",
    ),
) -> None:
    """List the runs waiting for sign-off, with their evidence and what they still need."""
    settings, ledger = _approver_context()  # before Prefect is imported: it reads PREFECT_API_URL once
    from tasks.approvals import pending

    if sweep:
        from flows.signoff import signoff_sweep_flow

        for line in signoff_sweep_flow():
            console.print(f"swept: {line}", markup=False, highlight=False)
    waiting = pending(ledger=ledger)
    if not waiting:
        console.print("no run is waiting for sign-off")
        return
    ui = (settings.prefect_api_url or os.environ.get("PREFECT_API_URL", "")).removesuffix("/api")
    for item in waiting:
        request, t = item.tally.request, item.tally
        mode = "suspended (no process waiting)" if item.suspended else "paused"
        console.print(
            f"\n[bold]{escape(request.model)}[/] run {item.run.name} ({item.run_id}), {mode}", highlight=False
        )
        for name, value in (
            ("author (may not approve)", request.author),
            ("tier", request.tier),
            ("progress", t.progress.summary(request.policy)),
            ("requested", f"{request.requested_at:%Y-%m-%d %H:%M} UTC"),
            ("deadline", f"{t.deadline:%Y-%m-%d %H:%M} UTC, then {request.policy.on_timeout}"),
            ("evidence digest", request.evidence_digest),
            ("evidence report", request.evidence_page),
            ("Prefect run", f"{ui}/runs/flow-run/{item.run_id}"),
        ):
            console.print(f"  {name}: {value}", markup=False, highlight=False)


def _answer(run: str, *, approver: str, decision: str, comment: str, evidence: str, wait: float) -> None:
    _, ledger = _approver_context()  # before Prefect is imported
    from steward.ledger import APPROVAL_REFUSED
    from tasks.approvals import answer, find

    try:
        item: Pending = find(run, ledger=ledger)
        record = answer(
            item,
            approver=approver,
            decision=decision,  # type: ignore[arg-type]
            comment=comment,
            evidence_digest=evidence,
            ledger=ledger,
            wait_seconds=wait,
        )
    except _user_errors() as exc:
        _fail(exc)
        return
    if record is None:
        console.print(f"answer sent to run {item.run_id}; it has not recorded it yet (see `steward approvals`)")
    elif record.action == APPROVAL_REFUSED:
        err.print(
            f"[bold red]refused:[/] {escape(record.payload['reason'])} (ledger seq {record.seq})", highlight=False
        )
        raise typer.Exit(code=1)
    else:
        console.print(
            f"{record.action} by {approver} recorded (ledger seq {record.seq})", markup=False, highlight=False
        )


@app.command()
def approve(
    run: str = typer.Argument(
        ..., help="The waiting run: its id, an id prefix, or its name (see `steward approvals`)."
    ),
    approver: str = typer.Option(..., "--as", help="Your name as configured in params.yaml governance.approvers."),
    comment: str = typer.Option("", "--comment", help="A note for the ledger."),
    evidence: str = typer.Option(
        ..., "--evidence", help="The evidence digest you reviewed: 12 or more of its hex characters."
    ),
    wait: float = typer.Option(60, "--wait", help="Seconds to wait for the run to record the answer."),
) -> None:
    """Approve a waiting sign-off through the Prefect API (the run checks the policy and records the answer)."""
    _answer(run, approver=approver, decision="approve", comment=comment, evidence=evidence, wait=wait)


@app.command()
def reject(
    run: str = typer.Argument(..., help="The waiting run: its id, an id prefix, or its name."),
    approver: str = typer.Option(..., "--as", help="Your name as configured in params.yaml governance.approvers."),
    reason: str = typer.Option(..., "--reason", help="Why: recorded in the ledger and shown to the run's author."),
    request_changes: bool = typer.Option(False, "--request-changes", help="Ask for changes instead of rejecting."),
    evidence: str = typer.Option(
        ..., "--evidence", help="The evidence digest you reviewed: 12 or more of its hex characters."
    ),
    wait: float = typer.Option(60, "--wait", help="Seconds to wait for the run to record the answer."),
) -> None:
    """Reject a waiting sign-off (or request changes): the model is not approved."""
    decision = "request_changes" if request_changes else "reject"
    _answer(run, approver=approver, decision=decision, comment=reason, evidence=evidence, wait=wait)


@app.command()
def evidence(
    model: str = typer.Argument(..., help="A model version: `name:vN`, `name` (its newest) or a registry id."),
    out: Path = typer.Option(..., "--out", help="Folder to write; a zip of it is written beside it (DIR.zip)."),
) -> None:
    """Write a model's evidence pack: its frozen evidence, sign-off and ledger excerpt mapped to EU AI Act
    Annex IV points 1-9 and the Article 13 instructions for use, each file with its sha256."""
    from steward.db import make_engine
    from steward.ledger import GATE_VERDICT, Ledger
    from steward.registry import Registry
    from steward.signoff import latest
    from steward.storage import Storage
    from tasks import evidence as frozen
    from tasks.evidence_pack import write_pack

    settings = Settings()
    engine = make_engine(settings.db_url)
    try:
        version = Registry(engine).get(model)
        records = Ledger(engine).records(subject=version.ref)
        signed = latest(records, model=version.ref)
        verdicts = [r.payload["evidence_digest"] for r in records if r.action == GATE_VERDICT]
        digest = signed.request.evidence_digest if signed else (verdicts[-1] if verdicts else None)
        if digest is None:
            raise FileNotFoundError(f"the ledger holds no evidence digest for {version.ref}: it predates sign-off")
        storage = Storage.from_settings(settings)
        snapshot = frozen.load(digest, storage=storage)
        pack = write_pack(version, records=records, snapshot=snapshot, storage=storage, out=out)
    except (ValueError, OSError) as exc:  # the user errors, a pack that exists, a corrupted store
        _fail(exc)
        return
    console.print(f"evidence pack for {version.ref}: {pack.folder} and {pack.zip_path}", highlight=False)
    console.print(f"pack manifest digest: {pack.digest}; evidence digest: {snapshot.digest}", highlight=False)
    for gap in pack.gaps:
        console.print(f"  gap: {gap}", markup=False, highlight=False)


@app.command()
def serve(port: int = typer.Option(3000, "--port", help="Port on 127.0.0.1.")) -> None:
    """Serve decisions: `bentoml serve` of deployments/service.py, routing as the routing table says."""
    import subprocess

    settings = Settings()
    _environment(settings, server=False)
    command = ["bentoml", "serve", "deployments.service:Steward", "--host", "127.0.0.1", "--port", str(port)]
    console.print(f"serving on http://127.0.0.1:{port} (OpenAPI at /docs.json); Ctrl+C stops it", highlight=False)
    raise typer.Exit(subprocess.call(command, cwd=settings.project_dir))


@app.command()
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


@app.command()
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


@server_app.command("start")
def server_start() -> None:
    """Start (or find) the local Prefect server and print its URL."""
    _environment(Settings(), server=True)


@server_app.command("stop")
def server_stop() -> None:
    """Stop the local Prefect server started for this STEWARD_HOME."""
    from flows.server import stop_server

    console.print("stopped" if stop_server(Settings()) else "no local Prefect server was running")


@ledger_app.command("verify")
def ledger_verify(
    file: Path | None = typer.Option(None, "--file", help="Verify an exported JSONL copy instead of the database."),
) -> None:
    """Check the hash chain; name the first bad record (exit 1) if one was edited, deleted or moved."""
    from steward.db import make_engine
    from steward.ledger import Ledger, LedgerError, read_jsonl, verify_records

    try:
        result = verify_records(read_jsonl(file)) if file else Ledger(make_engine(Settings().db_url)).verify()
    except (LedgerError, OSError) as exc:
        _fail(exc)
        return
    if not result.ok:
        err.print(f"ledger broken at seq {result.first_bad_seq}: {escape(result.problem)}", highlight=False)
        raise typer.Exit(code=1)
    console.print(f"ledger ok: {result.count} records, chain intact", highlight=False)


@ledger_app.command("export")
def ledger_export(
    out: Path | None = typer.Option(None, "--out", help="Write the ledger as JSON lines to this file."),
    s3_key: str | None = typer.Option(None, "--s3-key", help="Upload to STEWARD_S3_BUCKET under this key."),
    retain_days: int | None = typer.Option(None, "--retain-days", help="Object Lock retention, if the bucket has it."),
) -> None:
    """Export the ledger to a file and/or to S3 (COMPLIANCE retention where the bucket supports Object Lock)."""
    from steward.db import make_engine
    from steward.ledger import Ledger, LedgerError
    from steward.ledger_export import export_to_s3
    from steward.storage import Storage

    settings = Settings()
    ledger = Ledger(make_engine(settings.db_url))
    if out is None and s3_key is None:
        _fail(ValueError("say where: --out FILE and/or --s3-key KEY"))
    try:
        if out is not None:
            console.print(f"{ledger.export_jsonl(out)} records written to {out}", highlight=False)
        if s3_key is not None:
            done = export_to_s3(ledger, storage=Storage.from_settings(settings), key=s3_key, retain_days=retain_days)
            console.print(f"{done.count} records uploaded to {done.uri}: {done.message}", highlight=False)
    except (LedgerError, ValueError, OSError) as exc:
        _fail(exc)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":
    app()

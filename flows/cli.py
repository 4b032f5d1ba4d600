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

app = typer.Typer(help="Steward: responsible model lifecycle for high-stakes decisions.", no_args_is_help=True)
server_app = typer.Typer(help="The local Prefect server Steward starts when PREFECT_API_URL is unset.")
app.add_typer(server_app, name="server")
ledger_app = typer.Typer(help="The tamper-evident ledger of verdicts, approvals and transitions.")
app.add_typer(ledger_app, name="ledger")
console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean the input was wrong (shown as a message and exit 1), not that Steward broke."""
    from steward.params import ParamsError
    from steward.registry import RegistryError
    from tasks.dvc import DvcError
    from tasks.validate import ValidationFailed

    return (ValidationFailed, ParamsError, RegistryError, DvcError, FileNotFoundError, KeyError)


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
    """Print the gate's verdict with its reasons; a rejected model ends the command with exit code 3."""
    from tasks.gate import Verdict

    if result.gate:
        console.print(Verdict.from_dict(result.gate).message(), markup=False, highlight=False)
    if result.rejected:
        err.print(f"[bold red]rejected:[/] {result.model.ref} did not pass the gate (recorded in the registry)")
        raise typer.Exit(code=3)
    console.print(f"[green]candidate registered:[/] {result.model.ref} ({result.model.model_tag})")


def _run_training(data: str | None) -> TrainResult:
    settings = Settings()
    _environment(settings, server=True)
    from flows.train import train_flow

    try:
        return train_flow(data=data)
    except _user_errors() as exc:
        _fail(exc)
        raise  # unreachable: _fail exits


@app.command()
def train(
    data: str | None = typer.Option(
        None, "--data", help="CSV snapshot: a path or s3:// URI (default: bundled German credit)."
    ),
) -> None:
    """Run the training flow: ingest, validate, prepare, train, evaluate, register a candidate."""
    result = _run_training(data)
    _report_verdict(result)


@app.command()
def run() -> None:
    """The whole lifecycle on the bundled data (today: training, audits and the gate's verdict).

    A model the gate rejects is a result, not an error: the command shows why and exits 0.
    """
    settings = Settings()
    result = _run_training(None)
    from steward.layout import Layout

    layout = Layout(settings.project_dir)
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
    from tasks.gate import Verdict

    console.print(Verdict.from_dict(result.gate).message(), markup=False, highlight=False)
    state = "[red]rejected[/]" if result.rejected else "[green]candidate, awaiting sign-off[/]"
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

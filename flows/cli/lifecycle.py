"""`steward train`, `run`, `ingest` and `models`: a model's way from a data snapshot to the registry."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from flows.cli.common import (
    USECASE_HELP,
    _environment,
    _fail,
    _ride_out_prefect_restarts,
    _usecase_settings,
    console,
    err,
)
from steward.errors import StewardError
from steward.settings import Settings

if TYPE_CHECKING:
    from flows.train import TrainResult
    from steward.layout import Layout
    from steward.ledger import Ledger


def _report_verdict(result: TrainResult) -> None:
    """Print the gate's verdict and the sign-off's outcome; a rejected model ends with exit code 3."""
    from tasks.audit.gate import Verdict

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


def _run_training(data: str | None, *, author: str | None = None, demo: bool = False) -> TrainResult:
    from flows.train import train_flow

    try:
        return train_flow(data=data, author=author, demo_signoff=demo)
    except StewardError as exc:
        _fail(exc)
        raise  # unreachable: _fail exits


def train(
    data: str | None = typer.Option(
        None, "--data", help="CSV snapshot: a path or s3:// URI (default: the use case's bundled data)."
    ),
    author: str | None = typer.Option(
        None, "--author", help="Who starts this run (may not approve it); default STEWARD_USER or the OS user."
    ),
    usecase: str | None = typer.Option(None, "--usecase", help=USECASE_HELP),
) -> None:
    """Run the training flow: ingest, validate, train, audit, gate, then wait for sign-off (`steward approve`)."""
    _ride_out_prefect_restarts()
    settings = _usecase_settings(Settings(), usecase)
    _environment(settings, server=True)
    result = _run_training(data, author=author)
    _report_verdict(result)


def retrain(
    reason: str = typer.Option(..., "--reason", help="Why retrain now: recorded in the ledger."),
    data: str | None = typer.Option(
        None, "--data", help="The new snapshot: a path or s3:// URI (default: the current one)."
    ),
    author: str | None = typer.Option(
        None, "--author", help="Who starts this run (may not approve it); default STEWARD_USER or the OS user."
    ),
    usecase: str | None = typer.Option(None, "--usecase", help=USECASE_HELP),
) -> None:
    """Retrain on a new snapshot plus the outcomes from /feedback and the review decisions, through every gate
    and the sign-off (the same exits as `steward train`)."""
    _ride_out_prefect_restarts()
    settings = _usecase_settings(Settings(), usecase)
    _environment(settings, server=True)
    from flows.retrain import retrain_flow

    try:
        result = retrain_flow(reason=reason, data=data, author=author)
    except StewardError as exc:
        _fail(exc)
        return
    _report_verdict(result)


def run(
    usecase: str | None = typer.Option(None, "--usecase", help="Run the demo on this shipped use case."),
) -> None:
    """The whole lifecycle on generated data: train, audit, gate and sign off three candidates, serve, roll out.

    A use case's bundled data is rarely what a demo needs (a thousand rows leave too few held out for the
    high tier's confidence bounds; real disparities fail the gate: both honest answers), so the demo trains
    on synthetic snapshots from the use case's generator or resampler (its usecase.yaml `demo` section). The
    first model becomes production; the second walks shadow → canary → production under live synthetic
    traffic; the third, trained on a snapshot with a spurious pattern, meets a campaign during its
    canary that makes the pattern a proxy of a group, and is rolled back by the analysis. See flows/demo.py.
    """
    from steward.anchor import anchored
    from steward.db import make_engine
    from steward.keys import instance_key
    from steward.layout import Layout
    from steward.ledger import Ledger
    from steward.params import load_params
    from steward.policy_in_force import adopt_demo

    _ride_out_prefect_restarts()
    settings = Settings()
    _environment(settings, server=True)
    from flows.demo import demo_approvers, demo_settings, run_demo

    try:
        settings = demo_settings(settings, usecase)
    except StewardError as exc:
        _fail(exc)
    console.print(f"The demo runs in its own workspace, {settings.project_dir}: this checkout stays as it is.")
    layout = Layout(settings.project_dir)
    try:
        params = load_params(layout.params_file)
    except StewardError as exc:
        _fail(exc)
    engine = make_engine(settings.db_url)
    try:  # the demo's home is a demo home: its policy in force is the demo's, owned by the instance key
        key = instance_key(settings)
        adopt_demo(engine, params.governance, key, actor="steward run", ledger=anchored(engine, settings))
    except StewardError as exc:
        _fail(exc)
    since = (Ledger(engine).head() or (0, ""))[0]
    with demo_approvers(settings, params.governance, since_seq=since):
        result = run_demo(
            settings,
            train=lambda path: _run_training(path, author=settings.user, demo=True),
            say=lambda text: console.print(text, markup=False, highlight=False),
        )
    last = list(result.trained.values())[-1]
    _where_everything_went(last, settings, layout)
    ledger = Ledger(make_engine(settings.db_url))
    for trained in result.trained.values():
        _signoff_story(trained, ledger, since=since, settings=settings)
    console.print("\nsteward status:", style="bold")
    from flows.cli.serving import status

    status()


def _where_everything_went(result: TrainResult, settings: Settings, layout: Layout) -> None:
    from tasks.audit.gate import Verdict

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


def _signoff_story(result: TrainResult, ledger: Ledger, *, since: int, settings: Settings) -> None:
    from steward.anchor import anchor_from, verifying_keys
    from steward.anchor_verify import verify

    records = [r for r in ledger.records(subject=result.model.ref, since_seq=since) if r.action.startswith("approval.")]
    if records:
        console.print("\nSign-off (ledger):", style="bold")
    for record in records:
        payload = record.payload
        detail = payload.get("reason") or payload.get("comment") or payload.get("evidence_digest", "")
        kind = f" ({payload['approver_kind']})" if "approver_kind" in payload else ""
        console.print(f"  seq {record.seq}: {record.action} by {record.actor}{kind}: {detail}", markup=False)
    anchor = anchor_from(None, settings=settings)
    report = verify(ledger, anchor, verifying_keys(settings))  # the chain, and against its checkpoints
    console.print(f"ledger: {report.chain.problem}; {anchor.uri}: {report.summary}", markup=False, highlight=False)
    state = "[red]rejected[/]" if result.rejected else f"[green]{result.model.state.value}[/]"
    console.print(f"{result.model.ref}: {state}")


def ingest(
    source: str | None = typer.Argument(
        None, help="CSV snapshot: a path or s3:// URI (default: the use case's bundled data)."
    ),
) -> None:
    """Validate a snapshot and make it data/raw's current DVC-tracked version (no Prefect needed)."""
    from steward.layout import Layout
    from steward.params import load_params
    from steward.storage import Storage
    from tasks.data.ingest import ingest as ingest_snapshot

    settings = Settings()
    _environment(settings, server=False)
    try:
        params = load_params(Layout(settings.project_dir).params_file)  # refuse a malformed params.yaml up front
        chosen = source or str(settings.project_dir / params.usecase.dataset.file)
        snapshot = ingest_snapshot(chosen, settings=settings, storage=Storage.from_settings(settings))
    except StewardError as exc:
        _fail(exc)
        return
    state = "new version, validated" if snapshot.changed else "unchanged"
    console.print(f"{snapshot.path}: md5 {snapshot.md5} ({state})")


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

"""`steward erase` and `steward retention apply`: a person's data erased on request, everyone's retired on
schedule; both leave `steward ledger verify` passing (steward/erasure.py)."""

from __future__ import annotations

import typer

from flows.cli.common import USECASE_HELP, _fail, console
from steward.errors import StewardError
from steward.settings import Settings


def erase(
    subject: str = typer.Argument(..., help="The subject's id as the use case's id column holds it."),
    reason: str = typer.Option(..., "--reason", help="The request it answers (a reference, never a name)."),
    actor: str = typer.Option(..., "--as", help="Who erases: recorded in the ledger."),
    usecase: str | None = typer.Option(None, "--usecase", help="The use case (default: params.yaml's)."),
) -> None:
    """Erase one person's data from the prediction log (pseudonym, inputs, protected attributes), their outcomes,
    the text of their review cases and their rows in retraining snapshots; each part's salt goes with it, so no
    commitment to them can be checked against a guess, and the ledger (one `personal.erased` record) still verifies."""
    from steward.anchor import anchored
    from steward.db import make_engine
    from steward.erasure import describe, snapshot_files
    from steward.erasure import erase as erase_subject
    from steward.layout import Layout
    from steward.params import load_params
    from steward.personal import Pseudonyms

    settings = Settings()
    try:
        params = load_params(Layout(settings.project_dir).params_file, usecase=usecase)
        engine = make_engine(settings.db_url)
        model_name = params.usecase.model_name
        removed, record = erase_subject(
            engine,
            anchored(engine, settings),
            pseudonym=Pseudonyms.of(settings, model_name=model_name, engine=engine)(subject),
            subject_id=subject,
            model_name=model_name,
            reason=reason,
            actor=actor,
            id_column=params.usecase.id_column,
            snapshots=snapshot_files(settings.state_dir),
        )
    except StewardError as exc:
        _fail(exc)
        return
    console.print(f"erased from {model_name}: {describe(removed)} (ledger seq {record.seq})", highlight=False)
    pseudonym = Pseudonyms.of(settings, model_name=model_name)(subject).encode()
    held = [p for p in settings.journal_dir(model_name).glob("*/*.jsonl") if pseudonym in p.read_bytes()]
    if held:  # a serving replica's journal: it lets shipped decisions go on its own, never rewritten from outside
        seconds = params.serve.journal_segment_seconds
        console.print(
            f"{len(held)} decision journal segment(s) of this machine still hold this person: a running service "
            f"deletes what it shipped within {seconds:g} s (serve.journal_segment_seconds), a stopped one at its next "
            "start. A decision not yet shipped reaches the database afterwards: run this erasure again after that.",
            highlight=False,
        )


def retention_apply(
    usecase: str | None = typer.Option(None, "--usecase", help=USECASE_HELP),
) -> None:
    """Remove what the prediction log holds past its retention period (params.yaml `privacy.retention`), as the
    scheduled retention flow does; one `retention.applied` ledger record gives the counts."""
    from steward.anchor import anchored
    from steward.db import make_engine
    from steward.erasure import apply_retention, describe, snapshot_files
    from steward.layout import Layout
    from steward.params import load_params

    settings = Settings()
    try:
        params = load_params(Layout(settings.project_dir).params_file, usecase=usecase)
        engine = make_engine(settings.db_url)
        removed, record = apply_retention(
            engine,
            anchored(engine, settings),
            model_name=params.usecase.model_name,
            days=params.privacy.retention.model_dump(),
            snapshots=snapshot_files(settings.state_dir),
        )
    except StewardError as exc:
        _fail(exc)
        return
    console.print(
        f"retention for {params.usecase.model_name}: removed {describe(removed)} (ledger seq {record.seq})",
        highlight=False,
    )

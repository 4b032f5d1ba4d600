"""`steward review list` and `steward review resolve`: the people who look at referred and contested decisions."""

from __future__ import annotations

from typing import cast

import typer
from rich.markup import escape
from rich.table import Table

from flows.cli.common import _fail, console
from steward.display import safe_text
from steward.errors import StewardError
from steward.settings import Settings

DECISIONS = ("approve", "decline")


def review_list(
    every: bool = typer.Option(False, "--all", help="Resolved cases too, with their resolution."),
) -> None:
    """Open review cases: referrals from the review band and contested decisions, oldest first. A contest's text is
    the applicant's: shown with its control and invisible characters escaped (steward/display.py)."""
    from steward.db import make_engine
    from steward.reviews import ReviewQueue

    queue = ReviewQueue(make_engine(Settings().db_url))
    resolved = {r.case: r for r in queue.resolutions()} if every else {}
    cases = queue.list(status=None if every else "open")
    table = Table("case", "kind", "request id", "reason", "status")
    for case in cases:
        done = resolved.get(case.id)
        status = f"{done.decision} by {safe_text(done.reviewer)}" if done else case.status
        reason, request_id = safe_text(case.reason), safe_text(case.request_id)
        table.add_row(str(case.id), case.kind, escape(request_id), escape(reason), escape(status))
    console.print(table if cases else "no open review cases")


def review_resolve(
    case: int = typer.Argument(..., help="The case number (the applicant's receipt)."),
    reviewer: str = typer.Option(..., "--as", help="Who decides: recorded in the ledger."),
    decision: str = typer.Option(..., "--decision", help="The decision that stands: approve or decline."),
    note: str = typer.Option(..., "--note", help="What the reviewer saw: recorded in the ledger."),
) -> None:
    """Resolve a case with the decision that stands; the ledger records it and it becomes a label."""
    from steward.anchor import anchored
    from steward.db import make_engine
    from steward.reviews import Outcome, ReviewQueue

    if decision not in DECISIONS:
        _fail(ValueError(f"--decision must be one of {', '.join(DECISIONS)}, got {decision!r}"))
    settings = Settings()
    engine = make_engine(settings.db_url)
    try:
        outcome = cast(Outcome, decision)
        done = ReviewQueue(engine).resolve(
            case, decision=outcome, reviewer=reviewer, note=note, ledger=anchored(engine, settings)
        )
    except StewardError as exc:
        _fail(exc)
        return
    console.print(
        f"case {done.case} ({done.kind}, request {safe_text(done.request_id)}): {done.decision} by "
        f"{safe_text(done.reviewer)}",
        markup=False,
        highlight=False,
    )

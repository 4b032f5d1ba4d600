"""`steward`: the front door. It parses arguments, prepares the environment, and calls a flow or a task.

The commands live by concern in flows/cli_lifecycle.py, cli_governance.py, cli_serving.py and cli_server.py, and
share flows/cli_common.py; this module only builds the Typer app and registers them, in the order `--help` lists
them. None of those modules imports Prefect (or anything that does) at module level: `_environment()` must set
PREFECT_* before Prefect is imported, since Prefect reads its settings once, on import.
"""

from __future__ import annotations

import typer

from flows import cli_governance, cli_lifecycle, cli_review, cli_server, cli_serving

app = typer.Typer(help="Steward: responsible model lifecycle for high-stakes decisions.", no_args_is_help=True)
server_app = typer.Typer(help="The local Prefect server Steward starts when PREFECT_API_URL is unset.")
app.add_typer(server_app, name="server")
ledger_app = typer.Typer(help="The tamper-evident ledger of verdicts, approvals and transitions.")
app.add_typer(ledger_app, name="ledger")
review_app = typer.Typer(help="Referred and contested decisions, for a person to resolve.")
app.add_typer(review_app, name="review")

for command in (
    cli_lifecycle.train,
    cli_lifecycle.retrain,
    cli_lifecycle.run,
    cli_lifecycle.ingest,
    cli_lifecycle.models,
    cli_governance.approvals,
    cli_governance.approve,
    cli_governance.reject,
    cli_governance.evidence,
    cli_serving.serve,
    cli_serving.rollout,
    cli_serving.rollback,
    cli_serving.status,
    cli_serving.monitor,
):
    app.command()(command)

server_app.command("start")(cli_server.server_start)
server_app.command("stop")(cli_server.server_stop)
ledger_app.command("verify")(cli_governance.ledger_verify)
ledger_app.command("export")(cli_governance.ledger_export)
review_app.command("list")(cli_review.review_list)
review_app.command("resolve")(cli_review.review_resolve)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":
    app()

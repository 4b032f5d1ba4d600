"""`steward`: the front door. It parses arguments, prepares the environment, and calls a flow or a task.

The commands live by concern in lifecycle.py, governance.py, privacy.py, review.py, serving.py and server.py, and
share common.py; this module only builds the Typer app and registers them, in the order `--help` lists
them. None of those modules imports Prefect (or anything that does) at module level: `_environment()` must set
PREFECT_* before Prefect is imported, since Prefect reads its settings once, on import.
"""

from __future__ import annotations

import typer

from flows.cli import governance, lifecycle, policy, privacy, review, server, serving, usecase

app = typer.Typer(help="Steward: responsible model lifecycle for high-stakes decisions.", no_args_is_help=True)
server_app = typer.Typer(help="The local Prefect server Steward starts when PREFECT_API_URL is unset.")
app.add_typer(server_app, name="server")
ledger_app = typer.Typer(help="The tamper-evident ledger of verdicts, approvals and transitions.")
app.add_typer(ledger_app, name="ledger")
keys_app = typer.Typer(help="Your signing key: answers to sign-offs count only signed by a registered key.")
app.add_typer(keys_app, name="keys")
policy_app = typer.Typer(help="The governance policy in force: tiers, thresholds, approvers, owners (signed).")
app.add_typer(policy_app, name="policy")
review_app = typer.Typer(help="Referred and contested decisions, for a person to resolve.")
app.add_typer(review_app, name="review")
usecase_app = typer.Typer(
    help="Use cases: a decision problem's data, labels, protected groups and actionable features."
)
app.add_typer(usecase_app, name="usecase")
retention_app = typer.Typer(help="Personal data past its retention period (params.yaml privacy.retention).")
app.add_typer(retention_app, name="retention")

for command in (
    lifecycle.train,
    lifecycle.retrain,
    lifecycle.run,
    lifecycle.ingest,
    lifecycle.models,
    governance.approvals,
    governance.approve,
    governance.reject,
    governance.sign,
    governance.evidence,
    serving.serve,
    serving.rollout,
    serving.leases,
    serving.rollback,
    serving.status,
    serving.monitor,
    privacy.erase,
):
    app.command()(command)

server_app.command("start")(server.server_start)
server_app.command("stop")(server.server_stop)
ledger_app.command("verify")(governance.ledger_verify)
keys_app.command("new")(governance.keys_new)
policy_app.command("adopt")(policy.policy_adopt)
policy_app.command("show")(policy.policy_show)
ledger_app.command("export")(governance.ledger_export)
review_app.command("list")(review.review_list)
review_app.command("resolve")(review.review_resolve)
usecase_app.command("draft")(usecase.usecase_draft)
usecase_app.command("check")(usecase.usecase_check)
usecase_app.command("list")(usecase.usecase_list)
retention_app.command("apply")(privacy.retention_apply)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":
    app()

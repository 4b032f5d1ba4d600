"""`steward server start` and `stop`: the local Prefect server Steward starts when PREFECT_API_URL is unset."""

from __future__ import annotations

from flows.cli.common import _environment, console
from steward.settings import Settings


def server_start() -> None:
    """Start (or find) the local Prefect server and print its URL."""
    _environment(Settings(), server=True)


def server_stop() -> None:
    """Stop the local Prefect server started for this STEWARD_HOME."""
    from deployments.local.prefect_server import stop_server

    console.print("stopped" if stop_server(Settings()) else "no local Prefect server was running")

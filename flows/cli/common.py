"""What every `steward` command shares: the consoles, the environment, and how a user's error is reported."""

from __future__ import annotations

import os

import typer
from rich.console import Console
from rich.markup import escape

from steward.errors import StewardError
from steward.settings import Settings

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

AUTHENTICATED = (
    "Its API and UI ask for the auth string in {path}: log in once at {ui}/login with it "
    "(PREFECT_API_AUTH_STRING for Prefect's own commands and workers)."
)
UNAUTHENTICATED = (
    "warning: this Prefect server (pid {pid}) asks for no auth string: anyone who reaches it can answer a "
    "sign-off. Restart it (`steward server stop`) and Steward starts it with one."
)


# A long-running command (a run paused for sign-off polls the Prefect API for days; a rollout watches for
# minutes) rides out a Prefect server restart of a few minutes (retries back off 2, 4, ... 256 s) instead of
# failing (Prefect's default, 5 retries, lasts about a minute). Only those commands get it: `steward approvals`
# on a server that is down should say so at once. A rollout stuck in retries longer than its lease loses it and
# its candidate is withdrawn (steward/leases.py).
WAITING_CLIENT_RETRIES = "8"


def _ride_out_prefect_restarts() -> None:
    """Raise Prefect's client retries to WAITING_CLIENT_RETRIES unless PREFECT_CLIENT_MAX_RETRIES is set; call it
    before Prefect is imported (it reads its settings once)."""
    os.environ.setdefault("PREFECT_CLIENT_MAX_RETRIES", WAITING_CLIENT_RETRIES)


def _environment(settings: Settings, *, server: bool) -> None:
    """Point Prefect, BentoML and DVC at STEWARD_HOME, and at a Prefect server (started if need be)."""
    os.environ.update(settings.tool_env())
    settings.prefect_home.mkdir(parents=True, exist_ok=True)  # Prefect only warns when it cannot make it
    if not server:
        return
    if settings.prefect_api_url:
        console.print(f"Prefect API: {settings.prefect_api_url}")
        return
    from deployments.local.prefect_server import auth_file, ensure_server

    try:
        local = ensure_server(settings)
    except StewardError as exc:
        _fail(exc)
        return
    os.environ.update(local.client_env())  # this process's Prefect, and every process it starts
    verb = "Started" if local.started else "Using"
    console.print(
        f"{verb} a local Prefect server at {local.api_url.removesuffix('/api')} (pid {local.pid}; "
        f"log {local.log}). PREFECT_API_URL was unset; stop it with `steward server stop`."
    )
    if local.auth is None:
        err.print(UNAUTHENTICATED.format(pid=local.pid), markup=False, highlight=False)
    else:
        ui = local.api_url.removesuffix("/api")
        console.print(AUTHENTICATED.format(path=auth_file(settings), ui=ui), markup=False, highlight=False)


def _fail(exc: BaseException) -> None:
    err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)  # messages hold [brackets]
    raise typer.Exit(code=1)


USECASE_HELP = "Run on this shipped use case (usecases/NAME) instead of params.yaml's, in a workspace of its own."


def _usecase_settings(settings: Settings, usecase: str | None) -> Settings:
    """Settings for a run on `usecase`: the project itself when params.yaml selects it (or none is given),
    else a workspace whose params.yaml selects it (STEWARD_HOME/workspaces/usecase-<name>, steward/workspace.py),
    so the checkout stays as it is. The flows this process runs, and the tools they start, look there."""
    from steward.workspace import usecase_project

    if usecase is None:
        return settings
    try:
        project = usecase_project(settings.project_dir, settings.state_dir, usecase)
    except StewardError as exc:
        _fail(exc)
    if project == settings.project_dir:
        return settings
    os.environ["STEWARD_PROJECT_DIR"] = str(project)
    os.environ["STEWARD_HOME"] = str(settings.state_dir)
    console.print(f"Use case {usecase} runs in its own workspace, {project}: this checkout stays as it is.")
    return Settings()

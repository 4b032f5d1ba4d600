"""The Prefect UI of the server Steward starts, in a real browser (Debian's Chromium, driven by Playwright): on a
port other than 4200, behind its auth string. Unauthenticated, the API refuses the UI; logged in, the UI talks to
its own port, shows the paused sign-off, opens its evidence page from the form, and the form approves it."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from support import BIN, free_port, run, signoff_project, start_harness, steward_env, wait_until

from deployments.local.prefect_server import running_server, stop_pid
from steward.db import make_engine
from steward.ledger import Ledger
from steward.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # 1 to 2.5 minutes on 2 cores

CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT_MS = 60_000  # per browser step: the server shares 2 cores with the flow and the browser


def _sync_playwright() -> Any:
    """Playwright and Debian's Chromium, or a skip on a developer's machine without them; in CI, a failure."""
    missing = [
        what
        for what, there in (
            (f"{CHROMIUM} (Debian: apt-get install -y chromium)", CHROMIUM.is_file()),
            ("playwright (requirements.lock: make install)", importlib.util.find_spec("playwright") is not None),
        )
        if not there
    ]
    if missing:
        message = "missing: " + "; ".join(missing)
        if os.environ.get("CI") == "true":
            pytest.fail(message + ": CI must install it, not skip this test")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    return sync_playwright


def _steward(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = run([str(BIN / "steward"), *args], cwd=project, env=env, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _waiting(project: Path, env: dict[str, str]) -> str | None:
    """What `steward approvals` says once the run waits for sign-off (it finds the server and its auth itself)."""
    listed = _steward(project, env, "approvals").stdout
    return listed if "credit-risk:v1" in listed else None


def test_an_approver_logs_in_opens_the_evidence_from_the_form_and_approves_in_the_ui(tmp_path):
    sync_playwright = _sync_playwright()
    project = signoff_project(tmp_path / "p", signoff={"approvers": 1})
    port = free_port()
    assert port != 4200  # what Prefect's UI assumes unless its server tells it otherwise
    base = f"http://127.0.0.1:{port}"
    env = steward_env(project, extra={"STEWARD_PREFECT_PORT": str(port), "STEWARD_SIGNOFF_POLL_SECONDS": "1"})
    _steward(project, env, "server", "start")  # Steward's own server: its auth string, its UI settings
    server = running_server(Settings(project_dir=project, home=project / ".steward"))
    assert server is not None and server.auth is not None
    harness = start_harness(project, env | server.client_env(), "credit-risk:v1", "alice")
    requests: list[str] = []
    try:
        listed = wait_until(
            lambda: _waiting(project, env), timeout=180, what="the sign-off in `steward approvals`", every=1
        )
        run_id, evidence, digest = (
            re.search(pattern, listed).group(1)  # what an approver reads in `steward approvals`
            for pattern in (
                r"credit-risk:v1 run \S+ \(([0-9a-f-]{36})\)",
                r"evidence in the Prefect UI: (\S+)",
                r"evidence digest: ([0-9a-f]{64})",
            )
        )
        assert evidence.startswith(f"{base}/artifacts/artifact/")

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            context.set_default_timeout(TIMEOUT_MS)
            context.on("request", lambda request: requests.append(request.url))
            page = context.new_page()

            with page.expect_response(lambda r: r.url.startswith(f"{base}/api/") and r.status == 401):
                page.goto(f"{base}/runs/flow-run/{run_id}")  # no auth string yet: the API refuses the UI

            page.goto(f"{base}/login?redirect=/runs/flow-run/{run_id}")
            page.locator("input[type=password]").fill(server.auth)
            page.get_by_role("button", name="Login").click()
            page.wait_for_url(f"{base}/runs/flow-run/{run_id}")
            page.get_by_role("button", name="Resume").click()
            form = page.get_by_role("dialog")
            form.get_by_text(digest).wait_for()  # the form's description: what is being signed off

            link = form.get_by_role("link", name=evidence)
            assert link.get_attribute("href") == evidence
            with context.expect_page() as opened:
                link.click()
            report = opened.value.frame_locator("iframe")  # the evidence page, in the UI's sandboxed frame
            gate = json.loads((project / "reports/gate.json").read_text())
            assert report.locator("#verdict").inner_text().strip() == gate["verdict"].upper()
            images = report.locator("img").evaluate_all("images => images.map(i => [i.naturalWidth, i.src])")
            assert images and all(width > 0 and src.startswith("data:image/png") for width, src in images)
            opened.value.close()

            def field(label: str) -> Any:
                name = page.locator(".schema-form-property__label", has_text=re.compile(f"^{label}$"))
                return form.locator(".schema-form-property").filter(has=name)

            field("Decision").locator(".p-select-button__control").focus()  # headless: a click opens no options,
            page.keyboard.press("ArrowDown")  # the keyboard does
            page.get_by_role("option", name="approve", exact=True).click()
            assert field("Decision").locator(".p-select-button__value").inner_text().strip() == "approve"
            field("Approver").locator("textarea").fill("bob")
            field("Evidence Digest").locator("textarea").fill(digest)
            signed = _steward(project, env, "sign", run_id, "--evidence", digest, "--key", str(project / "keys/bob"))
            assert signed.returncode == 0, signed.stdout + signed.stderr
            token = signed.stdout.strip().splitlines()[-1]  # the last line: above it, which server it used
            field("Signature").locator("textarea").fill(token)  # bob's key signed this answer
            form.get_by_role("button", name="Submit").click()
            harness.wait(timeout=120)
            browser.close()
    finally:
        if harness.poll() is None:
            stop_pid(harness.pid)
        run([str(BIN / "steward"), "server", "stop"], cwd=project, env=env)

    log = (project / "harness.log").read_text()
    assert harness.returncode == 0 and "credit-risk:v1 is approved" in log, log
    assert "Unauthorized" not in log, log  # its logs, events and artifacts all got through
    granted = [r for r in Ledger(make_engine(f"sqlite:///{project / '.steward/steward.db'}")).records()]
    assert [(r.actor, r.action) for r in granted if r.action.startswith("approval.")] == [
        ("alice", "approval.requested"),
        ("bob", "approval.granted"),
    ]
    api = [url for url in requests if urlsplit(url).path.startswith("/api/")]
    assert api, "the UI made no API call"
    assert {urlsplit(url).netloc for url in api} == {f"127.0.0.1:{port}"}, sorted(set(api))
    assert not [url for url in requests if urlsplit(url).port == 4200]

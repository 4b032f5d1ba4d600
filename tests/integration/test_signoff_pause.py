"""The sign-off pause on a real Prefect server: answers from other processes, refusals, timeouts, a server
restart, and a run suspended from a deployment. The flow under test is the training flow's own sign-off
step (`signoff_harness.py`) on a registered candidate, so no model is trained here."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from support import BIN, free_port, run, signoff_project, start_harness, steward_env, wait_until

from deployments.local.prefect_server import start_server, stop_pid
from steward.db import make_engine
from steward.ledger import Ledger
from steward.registry import Registry, State
from steward.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # about 11 minutes on 2 cores: CI runs it in make test-slow

PARAMS = ("--param", "model_ref=credit-risk:v1", "--param", "author=alice")
ANSWERING = ("approve", "reject", "sign")


def _ledger(project: Path) -> Ledger:
    return Ledger(make_engine(f"sqlite:///{project / '.steward/steward.db'}"))


def _actions(project: Path) -> list[tuple[str, str]]:
    return [(r.actor, r.action) for r in _ledger(project).records() if r.action.startswith("approval.")]


def _digest(project: Path) -> str:
    """The evidence digest of the sign-off the run opened (what an approver reads in `steward approvals`)."""
    return next(r for r in _ledger(project).records() if r.action == "approval.requested").payload["evidence_digest"]


def _state(project: Path) -> State:
    return Registry(make_engine(f"sqlite:///{project / '.steward/steward.db'}")).get("credit-risk:v1").state


def _runs(api_url: str, *, state_types: list[str]) -> list[dict]:
    body = {"flow_runs": {"state": {"type": {"any_": state_types}}}, "limit": 50}
    return httpx.post(f"{api_url}/flow_runs/filter", json=body, timeout=10).json()


def _paused_run(api_url: str, *, key_after: str | None = None) -> dict:
    """The one paused run waiting for input (with a pause key other than `key_after`)."""

    def found():
        for flow_run in _runs(api_url, state_types=["PAUSED"]):
            details = flow_run["state"]["state_details"]
            if details.get("run_input_keyset") and details.get("pause_key") != key_after:
                return flow_run
        return None

    return wait_until(found, timeout=120, what="a paused sign-off", every=0.5)


def _steward(
    project: Path, env: dict[str, str], *args: str, key: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`steward ARGS`; an answer `--as NAME` is signed with NAME's own key unless `key` names another person's."""
    if args and args[0] in ANSWERING and "--as" in args:
        args = (*args, "--key", str(project / "keys" / (key or args[args.index("--as") + 1])))
    return run([str(BIN / "steward"), *args], cwd=project, env=env, timeout=180)


def _finish(process: subprocess.Popen[str], project: Path, *, timeout: float = 120) -> str:
    try:
        process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
    return (project / "harness.log").read_text()


@pytest.fixture
def own_server(tmp_path):
    """A Prefect server this test may stop and start again (asking for no auth string, like `prefect_server`)."""
    home = tmp_path / "prefect-server"
    home.mkdir()
    settings = Settings(project_dir=home, home=home, prefect_port=free_port())
    server = start_server(settings, auth=False)
    state = {"settings": settings, "pid": server.pid, "url": server.api_url}
    yield state
    stop_pid(state["pid"])


def test_refused_answers_keep_the_run_waiting_through_a_server_restart_then_two_roles_approve(tmp_path, own_server):
    project = signoff_project(tmp_path / "p", signoff={"approvers": 2, "roles": ["model-risk", "compliance"]})
    env = steward_env(project, api_url=own_server["url"], extra={"STEWARD_SIGNOFF_POLL_SECONDS": "1"})
    harness = start_harness(project, env, "credit-risk:v1", "alice")
    try:
        paused = _paused_run(own_server["url"])
        run_id = paused["id"]
        listed = _steward(project, env, "approvals")
        assert "credit-risk:v1" in listed.stdout and "0 of 2 approvals" in listed.stdout, listed.stdout + listed.stderr
        digest = _ledger(project).records()[-1].payload["evidence_digest"]
        keyset = paused["state"]["state_details"]["run_input_keyset"]
        form = httpx.get(f"{own_server['url']}/flow_runs/{run_id}/input/{keyset['description']}", timeout=10)
        description = json.loads(form.text)  # what the Prefect UI shows above the form
        assert f"`{digest}`" in description
        assert digest in listed.stdout and "may not approve): alice" in listed.stdout
        body = {"artifacts": {"key": {"any_": [f"evidence-credit-risk-v1-{digest[:12]}"]}}, "limit": 5}
        [artifact] = httpx.post(f"{own_server['url']}/artifacts/filter", json=body, timeout=10).json()
        assert artifact["flow_run_id"] == run_id and artifact["type"] == "rich"
        assert 'id="verdict"' in artifact["data"]["html"]  # the evidence page, over HTTP from the Prefect UI
        link = f"{own_server['url'].removesuffix('/api')}/artifacts/artifact/{artifact['id']}"
        assert f"[{link}]({link})" in description and f"evidence in the Prefect UI: {link}" in listed.stdout

        short = _steward(project, env, "approve", run_id, "--as", "carol", "--evidence", digest[:8])
        assert short.returncode == 1 and "at least 12 hex characters" in short.stderr  # never sent

        refused = {
            ("alice", None, digest[:12]): "alice started this run and may not approve it",
            ("mallory", None, digest): "'mallory' is not an approver",
            ("carol", None, "deadbeefdeadbeef"): "evidence digest deadbeefdead is not the evidence of this sign-off",
            # one person, two names: alice answers as carol, signing with her own key (the run's author's, too)
            ("carol", "alice", digest): "the signature is not by a key registered to carol",
            ("bob", "mallory", digest): "the signature is not by a key registered to bob",  # an unregistered key
        }
        key = paused["state"]["state_details"]["pause_key"]
        for (name, signer, seen), message in refused.items():
            done = _steward(project, env, "approve", run_id[:8], "--as", name, "--evidence", seen, key=signer)
            assert done.returncode == 1 and message in done.stderr, done.stdout + done.stderr
            key = _paused_run(own_server["url"], key_after=key)["state"]["state_details"]["pause_key"]
        # the form itself, sent to Prefect's API without Steward's CLI, with a signature made up
        forged = {"decision": "approve", "approver": "bob", "comment": "", "evidence_digest": digest}
        forged["signature"] = f"{datetime.now(UTC).isoformat(timespec='seconds')} {'A' * 86}=="
        resumed = httpx.post(f"{own_server['url']}/flow_runs/{run_id}/resume", json={"run_input": forged}, timeout=10)
        assert resumed.status_code in (200, 201) and resumed.json()["status"] == "ACCEPT", resumed.text
        key = _paused_run(own_server["url"], key_after=key)["state"]["state_details"]["pause_key"]
        assert _state(project) is State.CANDIDATE

        stop_pid(own_server["pid"])  # the server goes away while the run waits, and comes back
        time.sleep(3)
        own_server["pid"] = start_server(own_server["settings"], auth=False).pid
        assert _paused_run(own_server["url"])["id"] == run_id

        granted = _steward(
            project,
            env,
            "approve",
            paused["name"],
            "--as",
            "carol",
            "--comment",
            "fairness checked",
            "--evidence",
            digest,
        )
        assert granted.returncode == 0 and "approval.granted by carol" in granted.stdout, (
            granted.stdout + granted.stderr
        )
        _paused_run(own_server["url"], key_after=key)
        assert _steward(project, env, "approve", run_id, "--as", "bob", "--evidence", digest[:16]).returncode == 0
        log = _finish(harness, project)
    finally:
        if harness.poll() is None:
            harness.kill()
    assert harness.returncode == 0 and "credit-risk:v1 is approved" in log, log
    assert _state(project) is State.APPROVED
    assert _actions(project) == [
        ("alice", "approval.requested"),
        ("alice", "approval.refused"),
        ("mallory", "approval.refused"),
        ("carol", "approval.refused"),
        ("carol", "approval.refused"),
        ("bob", "approval.refused"),
        ("bob", "approval.refused"),
        ("carol", "approval.granted"),
        ("bob", "approval.granted"),
    ]
    refusals = [r.payload["reason"] for r in _ledger(project).records() if r.action == "approval.refused"]
    assert refusals[-1].startswith("the signature is not by a key registered to bob")
    granted_records = [r for r in _ledger(project).records() if r.action == "approval.granted"]
    assert {r.payload["approver_kind"] for r in granted_records} == {"human"}
    assert granted_records[0].payload["comment"] == "fairness checked"
    assert _ledger(project).records()[-1].payload == {
        "from": "candidate",
        "to": "approved",
        "model_tag": "credit-risk:test",
        "data_md5": "d" * 32,
    }
    final = httpx.get(f"{own_server['url']}/flow_runs/{run_id}", timeout=10).json()
    assert final["state"]["type"] == "COMPLETED"

    verified = _steward(project, env, "ledger", "verify")
    assert verified.returncode == 0 and "chain intact, sign-off signatures verified" in verified.stdout
    copy = tmp_path / "ledger.jsonl"
    assert _steward(project, env, "ledger", "export", "--out", str(copy)).returncode == 0
    lines = copy.read_text().splitlines()
    record = json.loads(lines[4])
    record["payload"]["reason"] = "nothing to see"
    lines[4] = json.dumps(record)
    copy.write_text("\n".join(lines) + "\n")
    tampered = _steward(project, env, "ledger", "verify", "--file", str(copy))
    assert tampered.returncode == 1 and f"ledger broken at seq {record['seq']}" in tampered.stderr


@pytest.mark.parametrize("on_timeout", ["reject", "escalate"])
def test_a_sign_off_nobody_answers_in_time_is_escalated_or_rejected_never_silently_failed(
    tmp_path, prefect_server, on_timeout
):
    signoff = {"approvers": 1, "timeout_hours": 4 / 3600, "on_timeout": on_timeout}  # 4 s
    project = signoff_project(tmp_path / "p", signoff=signoff)
    env = steward_env(project, api_url=prefect_server, extra={"STEWARD_SIGNOFF_POLL_SECONDS": "1"})
    harness = start_harness(project, env, "credit-risk:v1", "alice")
    try:
        if on_timeout == "reject":
            log = _finish(harness, project)
            assert harness.returncode == 0 and "credit-risk:v1 is rejected" in log, log
            assert _actions(project) == [("alice", "approval.requested"), ("steward-signoff", "approval.expired")]
            expired = _ledger(project).records()[-2]
            assert expired.payload["reason"] == "no complete sign-off within 0.00111111 h (0 of 1 approvals)"
            assert _state(project) is State.REJECTED
            return
        escalated = wait_until(
            lambda: [a for a in _actions(project) if a[1] == "approval.escalated"][1:],
            timeout=60,
            what="two escalations",
        )
        assert escalated and _state(project) is State.CANDIDATE
        answer = _steward(
            project, env, "approve", _paused_run(prefect_server)["id"], "--as", "bob", "--evidence", _digest(project)
        )
        assert answer.returncode == 0, answer.stdout + answer.stderr
        log = _finish(harness, project)
    finally:
        if harness.poll() is None:
            harness.kill()
    assert harness.returncode == 0 and "credit-risk:v1 is approved" in log, log
    records = [r for r in _ledger(project).records() if r.action == "approval.escalated"]
    assert [r.payload["escalation"] for r in records] == list(range(1, len(records) + 1))
    body = {"filter": {"event": {"name": ["steward.approval.escalated"]}}, "limit": 10}
    events = wait_until(
        lambda: httpx.post(f"{prefect_server}/events/filter", json=body, timeout=10).json()["events"],
        timeout=30,
        what="a steward.approval.escalated event",
    )
    assert events[0]["resource"]["prefect.resource.id"] == "steward.model.credit-risk:v1"


def _suspended(project: Path, env: dict[str, str], api_url: str) -> tuple[subprocess.Popen[str], dict]:
    """Serve the harness as a deployment, start a run of it, and return the server and the suspended run."""
    name = f"signoff-{uuid.uuid4().hex[:8]}"  # a deployment of its own: no other test's server may pick it up
    server = start_harness(project, env, "--serve", name)
    try:
        wait_until(
            lambda: httpx.get(f"{api_url}/deployments/name/signoff-harness/{name}", timeout=10).is_success,
            timeout=60,
            what="the served deployment",
        )
        started = run(
            [str(BIN / "prefect"), "deployment", "run", f"signoff-harness/{name}", *PARAMS],
            cwd=project,
            env=env,
            timeout=120,
        )
        assert started.returncode == 0, started.stdout + started.stderr
        return server, _paused_run(api_url)
    except BaseException:
        stop_pid(server.pid)
        raise


def test_a_deployment_run_suspends_so_no_process_waits_and_resumes_from_the_top(tmp_path, prefect_server):
    project = signoff_project(tmp_path / "p", signoff={"approvers": 2, "roles": ["model-risk", "compliance"]})
    env = steward_env(project, api_url=prefect_server, extra={"PREFECT_RUNNER_POLL_FREQUENCY": "1"})
    server, suspended = _suspended(project, env, prefect_server)
    try:
        assert suspended["state"]["name"] == "Suspended"
        assert suspended["state"]["state_details"]["pause_reschedule"] is True  # no process is holding it
        listed = _steward(project, env, "approvals")
        assert "suspended (no process waiting)" in listed.stdout, listed.stdout + listed.stderr

        first = _steward(
            project, env, "approve", suspended["id"], "--as", "carol", "--wait", "90", "--evidence", _digest(project)
        )
        assert "approval.granted by carol" in first.stdout, first.stdout + first.stderr
        again = _paused_run(prefect_server, key_after=suspended["state"]["state_details"]["pause_key"])
        assert again["id"] == suspended["id"] and again["state"]["name"] == "Suspended"
        second = _steward(
            project, env, "approve", again["id"], "--as", "bob", "--wait", "90", "--evidence", _digest(project)
        )
        assert "approval.granted by bob" in second.stdout, second.stdout + second.stderr
        wait_until(
            lambda: (
                httpx.get(f"{prefect_server}/flow_runs/{again['id']}", timeout=10).json()["state"]["type"]
                == "COMPLETED"
            ),
            timeout=120,
            what="the resumed run to complete",
        )
    finally:
        stop_pid(server.pid)
    assert _state(project) is State.APPROVED
    assert [a for a in _actions(project)] == [
        ("alice", "approval.requested"),  # once, although the flow ran three times
        ("carol", "approval.granted"),
        ("bob", "approval.granted"),
    ]


def test_a_suspended_sign_off_past_its_deadline_is_expired_by_the_deadline_sweep(tmp_path, prefect_server):
    # 10 s: long enough for the run to suspend before its deadline on a loaded machine (1 s was not: the run
    # then expired the sign-off itself), short enough to wait out here
    signoff = {"approvers": 1, "timeout_hours": 10 / 3600, "on_timeout": "reject"}
    project = signoff_project(tmp_path / "p", signoff=signoff)
    env = steward_env(project, api_url=prefect_server, extra={"PREFECT_RUNNER_POLL_FREQUENCY": "1"})
    server, suspended = _suspended(project, env, prefect_server)
    try:
        requested = next(r for r in _ledger(project).records() if r.action == "approval.requested")
        deadline = datetime.fromisoformat(requested.payload["requested_at"]) + timedelta(seconds=10.5)
        time.sleep(max(0.0, (deadline - datetime.now(UTC)).total_seconds()))  # past it: only the sweep watches
        assert _state(project) is State.CANDIDATE
        swept = _steward(project, env, "approvals", "--sweep")
        assert swept.returncode == 0, swept.stdout + swept.stderr
        states = httpx.get(f"{prefect_server}/flow_runs/{suspended['id']}", timeout=10).json()["state"]
        assert "swept: credit-risk:v1 approval.expired" in swept.stdout, (
            swept.stdout,
            swept.stderr,
            states,
            _actions(project),
        )
        assert "no run is waiting for sign-off" in swept.stdout
    finally:
        stop_pid(server.pid)
    assert _state(project) is State.REJECTED
    expired = [r for r in _ledger(project).records() if r.action == "approval.expired"]
    assert expired[0].payload["reason"] == "no complete sign-off within 0.00277778 h (0 of 1 approvals)"
    final = httpx.get(f"{prefect_server}/flow_runs/{suspended['id']}", timeout=10).json()["state"]
    assert final["type"] == "CANCELLED" and "no complete sign-off" in final["message"]


def test_changes_requested_keep_the_candidate_for_a_new_run_and_a_rejection_rejects_it(tmp_path, prefect_server):
    project = signoff_project(tmp_path / "p", signoff={"approvers": 1})
    env = steward_env(project, api_url=prefect_server, extra={"STEWARD_SIGNOFF_POLL_SECONDS": "1"})
    outcomes = []
    for args in (["--request-changes", "--reason", "add the under-25 slice"], ["--reason", "AUC too low for v1"]):
        harness = start_harness(project, env, "credit-risk:v1", "alice")
        try:
            paused = _paused_run(prefect_server)
            no_reason = _steward(project, env, "reject", paused["id"], "--as", "bob", "--evidence", _digest(project))
            assert no_reason.returncode == 2 and "--reason" in no_reason.stderr  # Typer: a required option
            done = _steward(project, env, "reject", paused["id"], "--as", "bob", "--evidence", _digest(project), *args)
            assert done.returncode == 0 and "approval.declined by bob" in done.stdout, done.stdout + done.stderr
            log = _finish(harness, project)
        finally:
            if harness.poll() is None:
                harness.kill()
        outcomes.append((_state(project), log.strip().splitlines()[-1]))
    assert [state for state, _ in outcomes] == [State.CANDIDATE, State.REJECTED]
    declined = [r.payload for r in _ledger(project).records() if r.action == "approval.declined"]
    assert [(d["decision"], d["comment"]) for d in declined] == [
        ("request_changes", "add the under-25 slice"),
        ("reject", "AUC too low for v1"),
    ]
    assert [a for a in _actions(project) if a[1] == "approval.requested"] == [("alice", "approval.requested")] * 2

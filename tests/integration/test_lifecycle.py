"""The lifecycle end to end through the `steward` command, on data whose model passes the gate:
`steward train` pauses at sign-off and `steward approve` from other processes gets it registered as
approved; `steward run` does the same with its demo approvers; `steward evidence` packs the result."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import time

import httpx
import pandas as pd
import pytest
import yaml
from support import BIN, pseudonyms_of, run, steward_env

from steward.db import make_engine
from steward.keys import new_key
from steward.ledger import Ledger
from usecases.german_credit.generator import generate_applications

pytestmark = pytest.mark.integration


def _paused(api_url: str, *, key_after: str | None = None, timeout: float = 400) -> dict:
    deadline = time.monotonic() + timeout
    body = {"flow_runs": {"state": {"type": {"any_": ["PAUSED"]}}}, "limit": 10}
    while time.monotonic() < deadline:
        for flow_run in httpx.post(f"{api_url}/flow_runs/filter", json=body, timeout=10).json():
            details = flow_run["state"]["state_details"]
            if details.get("run_input_keyset") and details.get("pause_key") != key_after:
                return flow_run
        time.sleep(1)
    raise TimeoutError("no run paused for sign-off")


def _granted(project) -> list:
    ledger = Ledger(make_engine(f"sqlite:///{project / '.steward/steward.db'}"))
    return [r for r in ledger.records() if r.action == "approval.granted"]


@pytest.mark.slow  # about 100 s on 2 cores: `make test-slow` and CI
def test_steward_train_pauses_at_sign_off_and_steward_approve_registers_it_approved(project, prefect_server, tmp_path):
    params = yaml.safe_load((project / "params.yaml").read_text())
    keys = {name: new_key(tmp_path / "keys" / name) for name in ("alice", "bob", "olga")}  # each person's own key
    params["governance"]["approvers"] |= {
        "alice": {"roles": ["model-risk"], "keys": [keys["alice"].public.openssh]},
        "bob": {"roles": ["compliance"], "keys": [keys["bob"].public.openssh]},
    }
    params["governance"]["owners"] = [keys["olga"].public.openssh]  # olga owns the policy; she approves nothing
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    data = tmp_path / "applications.csv"
    generate_applications(100_000, seed=5, bias=0.0).to_csv(data, index=False)
    env = steward_env(project, api_url=prefect_server, extra={"STEWARD_SIGNOFF_POLL_SECONDS": "1"})
    steward = str(BIN / "steward")
    adopted = run(
        [steward, "policy", "adopt", "--key", str(tmp_path / "keys/olga"), "--as", "olga"], cwd=project, env=env
    )
    assert adopted.returncode == 0 and f"adopted by {keys['olga'].public.fingerprint}" in adopted.stdout, adopted.stderr
    train = subprocess.Popen(
        [steward, "train", "--data", str(data), "--author", "carol"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        paused = _paused(prefect_server)
        ledger = Ledger(make_engine(f"sqlite:///{project / '.steward/steward.db'}"))
        digest = ledger.records(actions=("approval.requested",))[0].payload["evidence_digest"]
        alice = ("--as", "alice", "--key", str(tmp_path / "keys/alice"))
        first = run([steward, "approve", paused["name"], *alice, "--evidence", digest], cwd=project, env=env)
        assert "approval.granted by alice" in first.stdout, first.stdout + first.stderr
        _paused(prefect_server, key_after=paused["state"]["state_details"]["pause_key"])
        second = run(
            [
                steward,
                "approve",
                paused["id"],
                "--as",
                "bob",
                "--key",
                str(tmp_path / "keys/bob"),
                "--comment",
                "impact assessment read",
                "--evidence",
                digest,
            ],
            cwd=project,
            env=env,
        )
        assert "approval.granted by bob" in second.stdout, second.stdout + second.stderr
        output, _ = train.communicate(timeout=120)
    finally:
        if train.poll() is None:
            train.kill()
    assert train.returncode == 0, output
    assert "Gate (high risk tier): PASS" in output and "approved: credit-risk:v1" in output
    assert "approved" in run([steward, "models"], cwd=project, env=env).stdout
    assert [(r.actor, r.payload["approver_kind"]) for r in _granted(project)] == [("alice", "human"), ("bob", "human")]
    verified = run([steward, "ledger", "verify"], cwd=project, env=env)
    assert verified.returncode == 0, verified.stderr

    pack = tmp_path / "pack"
    packed = run([steward, "evidence", "credit-risk:v1", "--out", str(pack)], cwd=project, env=env)
    assert packed.returncode == 0, packed.stdout + packed.stderr
    approvals = json.loads((pack / "approvals.json").read_text())
    assert approvals["approved_by"] == ["alice", "bob"]
    assert (tmp_path / "pack.zip").is_file() and (pack / "evidence/reports/gate.json").is_file()
    again = run([steward, "evidence", "credit-risk:v1", "--out", str(pack)], cwd=project, env=env)
    assert again.returncode == 1 and "never overwritten" in again.stderr
    checked = run([steward, "evidence", "verify", str(tmp_path / "pack.zip")], cwd=project, env=env)
    assert checked.returncode == 0 and "pack verified" in checked.stdout, checked.stdout + checked.stderr
    for name, key in keys.items():
        if name != "olga":  # each approver's signature, by their key's fingerprint, covers the gate's report
            assert f"by {name} ({key.public.fingerprint}) signed" in checked.stdout, checked.stdout
    (pack / "evidence/reports/gate.json").write_text('{"verdict": "pass"}')  # a report changed after signing
    tampered = run([steward, "evidence", "verify", str(pack)], cwd=project, env=env)
    assert tampered.returncode == 1 and "evidence/reports/gate.json: its sha256" in tampered.stderr, tampered.stderr


@pytest.mark.slow
@pytest.mark.timeout(2400)  # the whole demo: about 9-11 minutes on 2 cores, past the suite's 600 s default
def test_steward_run_trains_three_rolls_one_out_and_rolls_the_unfair_one_back(project, prefect_server, tmp_path):
    env = steward_env(project, api_url=prefect_server, extra={"STEWARD_SIGNOFF_POLL_SECONDS": "1"})
    status = run(["git", "status", "--porcelain"], cwd=project, env=env).stdout
    done = run([str(BIN / "steward"), "run"], cwd=project, env=env, timeout=2400)
    assert done.returncode == 0, done.stdout + done.stderr
    assert run(["git", "status", "--porcelain"], cwd=project, env=env).stdout == status  # the demo's own workspace
    assert (project / ".steward/workspaces/demo/reports/gate.json").is_file()
    assert "150,000 synthetic applicants of german_credit" in done.stdout
    assert "approval.granted by demo-risk-officer (demo)" in done.stdout
    assert "approval.granted by demo-compliance-officer (demo)" in done.stdout
    assert {r.payload["approver_kind"] for r in _granted(project)} == {"demo"}
    assert "chain intact" in done.stdout
    with sqlite3.connect(project / ".steward/steward.db") as db:
        states = dict(db.execute("SELECT version, state FROM model_versions WHERE name = 'credit-risk'").fetchall())
    assert states == {1: "standby", 2: "production", 3: "rolled_back"}, done.stdout  # A: the standby
    assert re.search(r"traffic: \d+ requests, 0 failed", done.stdout), done.stdout
    assert "[C]   canary 20%: breach" in done.stdout
    young = re.search(r"\[C\]\s+age_group=under 25\s+(\d\.\d+) vs (\d\.\d+)", done.stdout)
    assert young and float(young[1]) < 0.5 * float(young[2]), done.stdout  # the campaign's young, declined
    assert "steward status:" in done.stdout and re.search(r"production\W+credit-risk:v2", done.stdout)
    _erase_a_served_applicant(project, env, tmp_path)


def _erase_a_served_applicant(project, env, tmp_path) -> None:
    """An applicant the demo served asks to be erased: `steward erase`, then `steward ledger verify` passes on the
    fully signed ledger, and the evidence pack, the ledger export, the reports and the database hold neither
    their id nor their pseudonym."""
    steward = str(BIN / "steward")
    pseudonym = pseudonyms_of(env, "credit-risk")
    with sqlite3.connect(project / ".steward/steward.db") as db:
        logged = {subject for (subject,) in db.execute("SELECT DISTINCT subject_id FROM predictions")}
    ids = (i for f in sorted((project / ".steward/demo").glob("*.csv")) for i in pd.read_csv(f)["applicant_id"])
    subject = next(str(i) for i in ids if pseudonym(str(i)) in logged)
    erased = run([steward, "erase", subject, "--reason", "art. 17 request 2026-7", "--as", "dpo"], cwd=project, env=env)
    assert erased.returncode == 0 and "erased from credit-risk:" in erased.stdout, erased.stdout + erased.stderr
    verified = run([steward, "ledger", "verify"], cwd=project, env=env)
    assert verified.returncode == 0 and "ledger ok" in verified.stdout, verified.stdout + verified.stderr
    pack, export = tmp_path / "erased-pack", tmp_path / "ledger.jsonl"
    assert run([steward, "evidence", "credit-risk:v2", "--out", str(pack)], cwd=project, env=env).returncode == 0
    assert run([steward, "ledger", "export", "--out", str(export)], cwd=project, env=env).returncode == 0
    wanted = [subject.encode(), pseudonym(subject).encode()]
    searched = [
        export,
        pack.with_suffix(".zip"),
        *pack.rglob("*"),
        *(project / ".steward/workspaces/demo/reports").rglob("*"),
    ]
    found = [str(p) for p in searched if p.is_file() and any(w in p.read_bytes() for w in wanted)]
    with sqlite3.connect(project / ".steward/steward.db") as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        found += [
            t for t in tables if any(w.decode() in str(r) for r in db.execute(f'SELECT * FROM "{t}"') for w in wanted)
        ]
    assert found == [] and len(searched) > 20

"""The training flow's gate on synthetic data: biased against women → rejected, naming the metric and bound."""

import json
import sqlite3

import httpx
import pytest
from support import BIN, run, steward_env

from tasks.synthetic import generate_applications

pytestmark = pytest.mark.integration


def _gate_checks(project):
    gate = json.loads((project / "reports/gate.json").read_text())
    return {(c["check"], c["attribute"]): c for c in gate["checks"]}


def _state(project):
    with sqlite3.connect(project / ".steward/steward.db") as connection:
        return connection.execute("SELECT state FROM model_versions ORDER BY id DESC").fetchone()[0]


def test_a_dataset_biased_against_women_is_rejected_and_an_unbiased_one_is_not_rejected_for_it(
    project, prefect_server, tmp_path
):
    env = steward_env(project, api_url=prefect_server)
    fair, biased = tmp_path / "fair.csv", tmp_path / "biased.csv"
    generate_applications(6000, seed=5, bias=0.0).to_csv(fair, index=False)
    generate_applications(6000, seed=5, bias=1.0, bias_attribute="sex", bias_group="female").to_csv(biased, index=False)

    done = run([str(BIN / "steward"), "train", "--data", str(biased)], cwd=project, env=env)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "Gate (high risk tier): FAIL" in done.stdout
    assert "demographic_parity_ratio [sex]: ci_low" in done.stdout
    dp_sex = _gate_checks(project)[("demographic_parity_ratio", "sex")]
    assert dp_sex["passed"] is False and dp_sex["value"] < 0.8
    assert _state(project) == "rejected"
    assert "did not pass the gate" in done.stderr

    events = httpx.post(
        f"{prefect_server}/events/filter",
        json={"filter": {"event": {"name": ["steward.gate.failed"]}}, "limit": 10},
        timeout=10,
    ).json()["events"]
    assert any(event["resource"]["prefect.resource.id"].startswith("steward.model.credit-risk:v") for event in events)

    run([str(BIN / "steward"), "train", "--data", str(fair)], cwd=project, env=env)
    dp_sex = _gate_checks(project)[("demographic_parity_ratio", "sex")]
    assert dp_sex["passed"] is True, dp_sex

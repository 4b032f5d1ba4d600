"""The training flow's gate on synthetic data: biased against women → rejected, naming the metric and bound."""

import json
import sqlite3
import time

import httpx
import pytest
from support import BIN, run, steward_env

from usecases.german_credit.generator import generate_applications

pytestmark = pytest.mark.integration


def _gate_checks(project):
    gate = json.loads((project / "reports/gate.json").read_text())
    return {(c["check"], c["attribute"]): c for c in gate["checks"]}


def _events(api_url, name, *, timeout=30.0):
    """Events of that name; the server persists events a few seconds after they are emitted, so poll."""
    deadline = time.monotonic() + timeout
    while True:
        body = {"filter": {"event": {"name": [name]}}, "limit": 10}
        events = httpx.post(f"{api_url}/events/filter", json=body, timeout=10).json()["events"]
        if events or time.monotonic() > deadline:
            return events
        time.sleep(1)


def _state(project):
    with sqlite3.connect(project / ".steward/steward.db") as connection:
        return connection.execute("SELECT state FROM model_versions ORDER BY id DESC").fetchone()[0]


@pytest.mark.slow  # about 70 s on 2 cores: `make test-slow` and CI
def test_labels_biased_against_women_are_rejected_on_error_rates_and_fair_ones_pass_those_checks(
    project, prefect_server, tmp_path
):
    """The model sees neither sex nor its proxy, so label bias shows as unequal error rates (equalized odds)."""
    env = steward_env(project, api_url=prefect_server)
    fair, biased = tmp_path / "fair.csv", tmp_path / "biased.csv"
    generate_applications(20000, seed=5, bias=0.0).to_csv(fair, index=False)
    generate_applications(6000, seed=5, bias=1.0, bias_attribute="sex", bias_group="female").to_csv(biased, index=False)

    done = run([str(BIN / "steward"), "train", "--data", str(biased)], cwd=project, env=env)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "Gate (high risk tier): FAIL" in done.stdout
    assert "equalized_odds_difference [sex]: ci_high" in done.stdout
    eo_sex = _gate_checks(project)[("equalized_odds_difference", "sex")]
    assert eo_sex["passed"] is False and eo_sex["value"] > 0.1
    fairness = json.loads((project / "reports/fairness.json").read_text())
    assert fairness["attributes"]["sex"]["summary"]["equalized_odds_difference"]["value"] > 0.1  # not just the CI
    assert _state(project) == "rejected"
    assert "did not pass the gate" in done.stderr

    events = _events(prefect_server, "steward.gate.failed")
    assert any(event["resource"]["prefect.resource.id"].startswith("steward.model.credit-risk:v") for event in events)

    run([str(BIN / "steward"), "train", "--data", str(fair)], cwd=project, env=env)
    checks = _gate_checks(project)
    assert checks[("equalized_odds_difference", "sex")]["passed"] is True
    assert checks[("demographic_parity_ratio", "sex")]["passed"] is True

"""`steward train` against a real local Prefect server, on good and on bad data."""

import json
import shutil
import sqlite3

import httpx
import pandas as pd
import pytest
from support import BIN, run, steward_env

pytestmark = pytest.mark.integration


def _registry_rows(project):
    db = project / ".steward" / "steward.db"
    if not db.exists():
        return []
    with sqlite3.connect(db) as connection:
        try:
            return connection.execute("SELECT name, version, state, data_md5, model_tag FROM model_versions").fetchall()
        except sqlite3.OperationalError:
            return []


def _artifacts_of_run(api_url, flow_run_id):
    body = {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 50}
    response = httpx.post(f"{api_url}/artifacts/filter", json=body, timeout=10)
    response.raise_for_status()
    return {artifact["key"]: artifact for artifact in response.json()}


def _flow_run(api_url, flow_run_id):
    response = httpx.get(f"{api_url}/flow_runs/{flow_run_id}", timeout=10)
    response.raise_for_status()
    return response.json()


REPORTS = ("validate", "evaluate", "data_bias", "fairness", "mitigate", "explain", "robustness", "gate", "document")


def test_german_credit_gets_every_report_a_stated_verdict_and_a_recorded_rejection(project, prefect_server):
    """At the high risk tier, 300 held-out rows cannot bound the equalized odds difference under 0.1."""
    env = steward_env(project, api_url=prefect_server)
    done = run([str(BIN / "steward"), "train"], cwd=project, env=env)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "Gate (high risk tier): FAIL" in done.stdout
    assert "equalized_odds_difference [sex]: ci_high" in done.stdout
    assert "rejected: credit-risk:v1 did not pass the gate" in done.stderr
    for report in REPORTS:
        assert (project / f"reports/{report}.json").is_file(), report
    assert "FAIL" in (project / "reports/evidence/index.html").read_text()
    # The flow's stages ran forked from its warm stage server: to the byte what `dvc repro` alone commits.
    unchanged = run(["git", "diff", "--exit-code", "--", "dvc.lock", "reports"], cwd=project, env=env)
    assert unchanged.returncode == 0, "the flow's stages do not reproduce the committed dvc.lock:\n" + unchanged.stdout

    rows = _registry_rows(project)
    assert len(rows) == 1
    name, version, state, data_md5, _tag = rows[0]
    assert (name, version, state) == ("credit-risk", 1, "rejected")
    assert data_md5 in (project / "data/raw/snapshot.csv.dvc").read_text()
    assert (project / ".steward/bentoml/models/credit-risk").is_dir()

    with sqlite3.connect(project / ".steward/steward.db") as connection:
        (flow_run_id,) = connection.execute("SELECT flow_run_id FROM model_versions").fetchone()
    assert _flow_run(prefect_server, flow_run_id)["state"]["type"] == "COMPLETED"
    artifacts = _artifacts_of_run(prefect_server, flow_run_id)
    expected = {
        "ingest",
        "stage-validate",
        "stage-evaluate",
        "stage-fairness",
        "stage-data-bias",
        "stage-explain",
        "stage-robustness",
        "stage-mitigate",
        "stage-gate",
        "register",
    }
    assert expected <= set(artifacts)
    assert data_md5 in artifacts["ingest"]["data"]
    assert "auc" in artifacts["stage-evaluate"]["data"]
    assert "FAIL" in artifacts["stage-gate"]["data"]

    again = run([str(BIN / "steward"), "train"], cwd=project, env=env)
    assert again.returncode == 3, again.stdout + again.stderr
    assert "credit-risk:v1" in again.stderr
    assert len(_registry_rows(project)) == 1

    # The ledger holds the registration, the verdict (once: the second run had the same evidence) and the
    # rejection, and tells a tampered copy.
    verified = run([str(BIN / "steward"), "ledger", "verify"], cwd=project, env=env)
    assert verified.returncode == 0 and "ledger ok: 3 records" in verified.stdout, verified.stdout + verified.stderr
    copy = project.parent / "ledger.jsonl"
    assert run([str(BIN / "steward"), "ledger", "export", "--out", str(copy)], cwd=project, env=env).returncode == 0
    lines = copy.read_text().splitlines()
    assert [json.loads(line)["action"] for line in lines] == [
        "registry.transition",
        "gate.verdict",
        "registry.transition",
    ]
    lines[1] = lines[1].replace('"verdict":"fail"', '"verdict":"pass"')
    copy.write_text("\n".join(lines) + "\n")
    tampered = run([str(BIN / "steward"), "ledger", "verify", "--file", str(copy)], cwd=project, env=env)
    assert tampered.returncode == 1 and "ledger broken at seq 2" in tampered.stderr, tampered.stdout + tampered.stderr


def _bad_variants(good: pd.DataFrame) -> dict[str, tuple[pd.DataFrame, list[str]]]:
    out_of_range = good.copy()
    out_of_range.loc[:4, "age"] = [7, 150, -1, 0, 240]
    third_label = good.copy()
    third_label.loc[:2, "credit_risk"] = "maybe"
    wrong_types = good.copy()
    wrong_types["duration_months"] = "twelve"
    return {
        "not-a-csv": (None, ["a readable CSV file"]),
        "missing-column": (good.drop(columns=["savings"]), ["savings", "expect_table_columns_to_match_set"]),
        "wrong-types": (wrong_types, ["duration_months"]),
        "out-of-range-ages": (out_of_range, ["age", "expect_column_values_to_be_between"]),
        "third-label": (third_label, ["credit_risk", "expect_column_values_to_be_in_set", "maybe"]),
    }


@pytest.mark.parametrize("variant", ["missing-column", "wrong-types", "out-of-range-ages", "third-label", "not-a-csv"])
def test_bad_data_stops_at_validation_registers_nothing_and_keeps_the_earlier_version(project, prefect_server, variant):
    env = steward_env(project, api_url=prefect_server)
    assert run([str(BIN / "steward"), "ingest"], cwd=project, env=env).returncode == 0
    before_bytes = (project / "data/raw/snapshot.csv").read_bytes()
    before_dvc = (project / "data/raw/snapshot.csv.dvc").read_text()
    before_lock = (project / "dvc.lock").read_text()

    frame, named = _bad_variants(pd.read_csv(project / "data/german_credit.csv"))[variant]
    bad = project.parent / f"{variant}.csv"
    if frame is None:
        bad.write_bytes(b'"unterminated,quote\n\x00\xff' * 10)
    else:
        frame.to_csv(bad, index=False)
    done = run([str(BIN / "steward"), "train", "--data", str(bad)], cwd=project, env=env)

    assert done.returncode == 1, done.stdout + done.stderr
    for word in named:
        assert word in done.stderr
    assert _registry_rows(project) == []
    assert (project / "data/raw/snapshot.csv").read_bytes() == before_bytes
    assert (project / "data/raw/snapshot.csv.dvc").read_text() == before_dvc
    assert (project / "dvc.lock").read_text() == before_lock
    if frame is not None:  # an unreadable file has no Data Docs; a readable one keeps its docs
        assert "Data Docs: " in done.stderr and "rejected" in done.stderr


@pytest.mark.parametrize("earlier", ["not-in-the-cache", "absent"])
def test_a_rejected_snapshot_puts_back_an_earlier_version_the_cache_never_held(project, prefect_server, earlier):
    """A clone's data/raw (or a workspace's) was never `dvc add`ed there; with the file present it is put back
    byte for byte, and with the file absent the .dvc file is put back with the data still absent."""
    env = steward_env(project, api_url=prefect_server)
    assert run([str(BIN / "steward"), "ingest"], cwd=project, env=env).returncode == 0
    raw, pointer = project / "data/raw/snapshot.csv", project / "data/raw/snapshot.csv.dvc"
    before_bytes, before_dvc = raw.read_bytes(), pointer.read_text()
    cache = run([str(BIN / "dvc"), "cache", "dir"], cwd=project, env=env).stdout.strip()
    shutil.rmtree(cache)
    if earlier == "absent":
        raw.unlink()
    frame, _ = _bad_variants(pd.read_csv(project / "data/german_credit.csv"))["third-label"]
    bad = project.parent / "bad.csv"
    frame.to_csv(bad, index=False)

    done = run([str(BIN / "steward"), "train", "--data", str(bad)], cwd=project, env=env)

    assert done.returncode == 1 and "expect_column_values_to_be_in_set" in done.stderr, done.stdout + done.stderr
    assert pointer.read_text() == before_dvc
    if earlier == "absent":
        assert not raw.exists()
    else:
        assert raw.read_bytes() == before_bytes
    assert _registry_rows(project) == []


def test_a_malformed_params_file_is_refused_naming_the_key(project, prefect_server):
    params = (project / "params.yaml").read_text().replace("model: gradient_boosting", "model: xgboost")
    (project / "params.yaml").write_text(params)
    done = run([str(BIN / "steward"), "train"], cwd=project, env=steward_env(project, api_url=prefect_server))
    assert done.returncode == 1
    assert "train.model" in done.stderr and "xgboost" in done.stderr
    assert _registry_rows(project) == []


def test_a_stage_that_fails_fails_the_flow_naming_the_stage_with_its_output(project, prefect_server):
    evaluate = project / "tasks/model/evaluate.py"
    broken = evaluate.read_text().replace("    ctx = stage_context()\n", "    raise RuntimeError('evaluation broke')\n")
    evaluate.write_text(broken)
    done = run([str(BIN / "steward"), "train"], cwd=project, env=steward_env(project, api_url=prefect_server))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "DVC stage 'evaluate' failed (`dvc repro`, exit " in done.stderr
    assert "RuntimeError: evaluation broke" in done.stderr  # the stage's traceback, as DVC passed it on
    assert "failed to reproduce 'evaluate'" in done.stderr
    assert _registry_rows(project) == []

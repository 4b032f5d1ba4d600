"""`dvc repro` in a fresh clone: every stage runs once, then a re-run with nothing changed skips them all."""

import json

import pytest
import yaml
from support import BIN, run, steward_env

pytestmark = pytest.mark.integration
STAGES = ["validate", "prepare", "train", "evaluate"]
AUDITS = {"data_bias", "fairness", "mitigate", "explain", "robustness", "gate", "document"}
REFERENCE = "reference"  # the candidate's monitoring reference (tasks/model/reference.py)


def _ingest_and_repro(project, env):
    ingested = run([str(BIN / "steward"), "ingest"], cwd=project, env=env)
    assert ingested.returncode == 0, ingested.stderr
    done = run([str(BIN / "dvc"), "repro"], cwd=project, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_a_fresh_clone_reproduces_the_committed_lock_exactly_then_skips_everything(project):
    env = steward_env(project)
    _ingest_and_repro(project, env)
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    dvc_file = yaml.safe_load((project / "data/raw/snapshot.csv.dvc").read_text())
    assert lock["stages"]["validate"]["deps"][0]["md5"] == dvc_file["outs"][0]["md5"]
    unchanged = run(["git", "diff", "--exit-code", "--", "dvc.lock", "reports"], cwd=project, env=env)
    assert unchanged.returncode == 0, "the committed dvc.lock/reports do not reproduce:\n" + unchanged.stdout

    second = run([str(BIN / "dvc"), "repro"], cwd=project, env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "Running stage" not in second.stdout
    for stage in STAGES:
        assert f"Stage '{stage}' didn't change, skipping" in second.stdout

    # Shared code is a dependency of every stage that runs it: mitigate calls into the fairness audit.
    with (project / "tasks/audit/fairness.py").open("a") as source:
        source.write("\n# changed\n")
    status = run([str(BIN / "dvc"), "status", "--json"], cwd=project, env=env)
    assert status.returncode == 0, status.stderr
    assert set(json.loads(status.stdout)) == {"fairness", "mitigate"}, status.stdout


@pytest.mark.slow  # about 85 s on 2 cores: `make test-slow` and CI
def test_from_scratch_every_stage_runs_and_writes_its_reports(project):
    (project / "dvc.lock").unlink()
    done = _ingest_and_repro(project, steward_env(project))
    assert "Stage 'validate' didn't change" in done.stdout  # `steward ingest` ran it on the new snapshot
    for stage in STAGES[1:]:
        assert f"Running stage '{stage}'" in done.stdout
    assert set(yaml.safe_load((project / "dvc.lock").read_text())["stages"]) == set(STAGES) | AUDITS | {REFERENCE}
    assert json.loads((project / "models/reference.json").read_text())["groups"]
    for report in ("data_bias", "fairness", "mitigate", "explain", "robustness", "gate", "document"):
        assert (project / f"reports/{report}.json").is_file(), report
    assert (project / "reports/evidence/index.html").is_file()
    validated = json.loads((project / "reports/validate.json").read_text())
    assert validated["success"] is True
    assert [suite["suite"] for suite in validated["suites"]] == ["raw_german_credit", "features"]
    assert (project / "reports/data_docs/features/index.html").is_file()
    assert 0.6 < json.loads((project / "reports/evaluate.json").read_text())["metrics"]["auc"] < 1.0
    assert (project / "reports/data_docs/raw/index.html").is_file()
    assert (project / "reports/calibration.png").stat().st_size > 1000


@pytest.mark.slow  # about 60 s on 2 cores: `make test-slow` and CI
def test_changing_one_param_reruns_only_what_depends_on_it(project):
    env = steward_env(project)
    _ingest_and_repro(project, env)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["evaluate"]["calibration_bins"] = 5
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    again = run([str(BIN / "dvc"), "repro"], cwd=project, env=env)
    assert again.returncode == 0, again.stdout
    assert "Running stage 'evaluate'" in again.stdout
    for stage in ("validate", "prepare", "train"):
        assert f"Running stage '{stage}'" not in again.stdout

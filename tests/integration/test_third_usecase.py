"""A third decision problem, with column names no shipped use case has, brought in with `steward usecase draft`
and a person's review of the draft, then run through the whole offline pipeline with no code changed."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.integration.support import BIN, run, steward_env

N = 4000


def hiring_screen(n: int, seed: int) -> pd.DataFrame:
    """A synthetic hiring screen: shortlisted or not, from experience, a work-sample score and a degree."""
    rng = np.random.default_rng(seed)
    years = rng.integers(0, 30, n)
    score = np.round(rng.normal(60, 15, n).clip(0, 100), 1)
    degree = rng.choice(["none", "bachelor", "master", "doctorate"], n, p=[0.3, 0.45, 0.2, 0.05])
    logit = (
        -4
        + 0.08 * years
        + 0.05 * score
        + pd.Series(degree).map({"none": 0, "bachelor": 0.4, "master": 0.7, "doctorate": 0.9})
    )
    shortlisted = rng.random(n) < 1 / (1 + np.exp(-logit.to_numpy()))
    return pd.DataFrame(
        {
            "candidate_ref": [f"C{i:05d}" for i in range(n)],
            "years_experience": years,
            "work_sample_score": score,
            "degree": degree,
            "gender": rng.choice(["woman", "man", "non-binary"], n, p=[0.48, 0.48, 0.04]),
            "age": rng.integers(18, 66, n),
            "remote": rng.choice(["yes", "no", None], n, p=[0.45, 0.45, 0.1]),  # a gap: nullable end to end
            "outcome": np.where(shortlisted, "shortlist", "reject"),
        }
    )


@pytest.mark.slow  # about 45 s on 2 cores: `make test-slow` and CI
def test_a_drafted_and_reviewed_use_case_runs_the_pipeline_with_no_code_change(project, tmp_path):
    env = steward_env(project)
    steward = str(BIN / "steward")
    data = tmp_path / "hiring_screen.csv"
    hiring_screen(N, seed=1).to_csv(data, index=False)
    draft = ["usecase", "draft", "--data", str(data), "--label", "outcome", "--favourable", "shortlist"]
    drafted = run([steward, *draft, "--id", "candidate_ref"], cwd=project, env=env)
    assert drafted.returncode == 0, drafted.stdout + drafted.stderr
    spec_file = project / "usecases/hiring_screen/usecase.yaml"
    spec = yaml.safe_load(spec_file.read_text())
    assert spec["id_column"] == "candidate_ref" and spec["label"]["favourable"] == "shortlist"
    assert set(spec["protected"]) == {"gender", "age"} and spec["groups"]["age_group"]["column"] == "age"

    # The review: what a person may change, and how; the words; a slice. Configuration only.
    spec["actionable"] = {"work_sample_score": {"step": 5, "reach": 20, "direction": "up"}, "degree": {}}
    spec["words"] = {
        "favourable": "shortlist",
        "unfavourable": "reject",
        "subject": "candidate",
        "decision": "shortlisting decision",
        "outcome": "was shortlisted",
    }
    spec["slices"] = [{"name": "early career", "column": "years_experience", "op": "<", "value": 3}]
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    checked = run([steward, "usecase", "check", "hiring_screen"], cwd=project, env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    params = (project / "params.yaml").read_text()
    (project / "params.yaml").write_text(params.replace("usecase: german_credit", "usecase: hiring_screen", 1))
    ingested = run([steward, "ingest"], cwd=project, env=env)
    assert ingested.returncode == 0, ingested.stdout + ingested.stderr
    done = run([str(BIN / "dvc"), "repro"], cwd=project, env=env, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr

    reports = project / "reports"
    validated = json.loads((reports / "validate.json").read_text())
    assert [s["suite"] for s in validated["suites"]] == ["raw_hiring_screen", "features"]
    assert validated["success"]
    fairness = json.loads((reports / "fairness.json").read_text())
    assert {"gender", "age_group"} <= set(fairness["attributes"])
    gate = json.loads((reports / "gate.json").read_text())
    assert gate["verdict"] in {"pass", "fail"} and gate["checks"]
    robustness = json.loads((reports / "robustness.json").read_text())
    assert "early career" in json.dumps(robustness)
    card = (reports / "document/model_card.md").read_text()
    assert "candidate" in card and "shortlist" in card
    assert 0.6 < json.loads((reports / "evaluate.json").read_text())["metrics"]["auc"] < 1.0

    # No code changed: only the use case's files, its data, the selection and the pipeline's outputs.
    changed = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    code = [line for line in changed if line[3:].endswith(".py")]
    assert code == []

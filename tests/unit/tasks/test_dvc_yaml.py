"""dvc.yaml's stage order is the order the flow runs them in: it must respect every dependency."""

from pathlib import Path

import yaml

from tasks.dvc import pipeline_stages

PROJECT = Path(__file__).resolve().parents[3]


def test_stage_order_respects_the_dag():
    stages = yaml.safe_load((PROJECT / "dvc.yaml").read_text())["stages"]
    produced_by = {}
    for name, stage in stages.items():
        for entry in stage.get("outs", []) + stage.get("metrics", []) + stage.get("plots", []):
            path = next(iter(entry)) if isinstance(entry, dict) else entry
            produced_by[path] = name
    order = pipeline_stages(PROJECT)
    assert order[0] == "validate"
    for name, stage in stages.items():
        for dep in stage.get("deps", []):
            if dep in produced_by:
                assert order.index(produced_by[dep]) < order.index(name), f"{name} runs before {produced_by[dep]}"


def test_every_stage_runs_its_own_module():
    for name, stage in yaml.safe_load((PROJECT / "dvc.yaml").read_text())["stages"].items():
        assert stage["cmd"] == f"python -m tasks.{name}"
        assert f"tasks/{name}.py" in stage["deps"]
        assert (PROJECT / "tasks" / f"{name}.py").is_file()

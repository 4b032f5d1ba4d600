import subprocess
import sys

import pytest

from tasks.dvc import DvcError, DvcResult, Repro, locked_md5, tracked_md5


def test_tracked_md5_reads_the_data_version(tmp_path):
    dvc_file = tmp_path / "credit.csv.dvc"
    dvc_file.write_text("outs:\n- md5: 0123abc\n  size: 10\n  hash: md5\n  path: credit.csv\n")
    assert tracked_md5(dvc_file) == "0123abc"
    dvc_file.write_text("something: else\n")
    with pytest.raises(DvcError, match="not a DVC-tracked file"):
        tracked_md5(dvc_file)
    with pytest.raises(DvcError, match="not a DVC-tracked file"):
        tracked_md5(tmp_path / "missing.dvc")


def test_locked_md5_finds_a_stage_output(tmp_path):
    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  train:\n    cmd: python -m tasks.model.train\n"
        "    outs:\n    - path: models/model.joblib\n      md5: feed\n"
    )
    assert locked_md5(tmp_path, stage="train", path="models/model.joblib") == "feed"
    with pytest.raises(DvcError, match="no output 'x'"):
        locked_md5(tmp_path, stage="train", path="x")


def test_ran_tells_a_run_from_a_skip():
    ran = DvcResult(args=("repro",), output="Running stage 'train':\n> python -m tasks.model.train\n")
    skipped = DvcResult(args=("repro",), output="Stage 'train' didn't change, skipping\n")
    assert ran.ran("train") and not skipped.ran("train") and not ran.ran("evaluate")


def _fake_repro(output: str, *, code: int = 0) -> Repro:
    """A Repro reading a process that prints `output` the way `dvc repro` would, then exits with `code`."""
    script = f"import sys; sys.stdout.write({output!r}); sys.exit({code})"
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    return Repro(process, ("repro",))


def _stages(repro: Repro, logged: list[str], runs: list[str] | None = None) -> dict[str, DvcResult]:
    results = {}
    while (stage := repro.next_stage(on_line=logged.append)) is not None:
        if repro.runs_next and runs is not None:
            runs.append(stage)  # known as DVC reaches the stage, before its output
        results[stage] = repro.stage_output(stage, on_line=logged.append)
    return results


PIPELINE_OUTPUT = """\
'data/raw/snapshot.csv.dvc' didn't change, skipping
Stage 'validate' didn't change, skipping
Running stage 'prepare':
> python -m tasks.data.prepare
prepare: 700 training rows, 300 held out
Updating lock file 'dvc.lock'

Stage 'train' is cached - skipping run, checking out outputs
Updating lock file 'dvc.lock'

Running stage 'evaluate':
> python -m tasks.model.evaluate
evaluate: auc=0.757
Updating lock file 'dvc.lock'
Use `dvc push` to send your updates to remote storage.
"""


def test_repro_splits_dvc_output_into_stages_as_dvc_reaches_them():
    logged: list[str] = []
    runs: list[str] = []
    with _fake_repro(PIPELINE_OUTPUT) as repro:
        results = _stages(repro, logged, runs)
    assert list(results) == ["validate", "prepare", "train", "evaluate"]
    assert [stage for stage, result in results.items() if result.ran(stage)] == ["prepare", "evaluate"] == runs
    assert "prepare: 700 training rows" in results["prepare"].output
    assert "evaluate" not in results["prepare"].output and "prepare" not in results["evaluate"].output
    assert results["train"].output.startswith("Stage 'train' is cached")
    assert logged[0] == "'data/raw/snapshot.csv.dvc' didn't change, skipping"  # before any stage: still passed on
    assert logged[-1] == "Use `dvc push` to send your updates to remote storage."
    assert "" not in logged


def test_a_failing_stage_raises_in_that_stage_naming_it_with_dvc_output():
    output = (
        "Stage 'prepare' didn't change, skipping\n"
        "Running stage 'train':\n> python -m tasks.model.train\nTraceback (most recent call last):\nValueError: boom\n"
        "ERROR: failed to reproduce 'train': failed to run: python -m tasks.model.train, exited with 1\n"
    )
    with _fake_repro(output, code=1) as repro:
        assert repro.next_stage(on_line=None) == "prepare"
        assert not repro.stage_output("prepare", on_line=None).ran("prepare")
        assert repro.next_stage(on_line=None) == "train"
        with pytest.raises(DvcError) as failed:
            repro.stage_output("train", on_line=None)
    message = str(failed.value)
    assert message.startswith("DVC stage 'train' failed (`dvc repro`, exit 1):")
    assert "ValueError: boom" in message and "failed to reproduce 'train'" in message


def test_a_stage_dvc_could_not_start_fails_the_next_step_not_the_stage_before_it():
    output = (
        "Running stage 'prepare':\n> python -m tasks.data.prepare\nprepare: done\nUpdating lock file 'dvc.lock'\n\n"
        "ERROR: failed to reproduce 'train': missing dependency data/prepared/train.parquet\n"
    )
    with _fake_repro(output, code=1) as repro:
        assert repro.next_stage(on_line=None) == "prepare"
        assert repro.stage_output("prepare", on_line=None).ran("prepare")
        with pytest.raises(DvcError, match="DVC stage 'train' failed") as failed:
            repro.next_stage(on_line=None)
    assert "prepare: done" not in str(failed.value) and "missing dependency" in str(failed.value)


def test_dvc_failing_before_any_stage_says_so_with_its_output():
    invalid = r"`dvc repro` failed \(exit 255\):\nERROR: 'dvc.yaml' is invalid"
    with _fake_repro("ERROR: 'dvc.yaml' is invalid\n", code=255) as repro, pytest.raises(DvcError, match=invalid):
        repro.next_stage(on_line=None)


def test_leaving_a_repro_early_stops_dvc():
    script = "import sys, time; print(\"Running stage 'train':\", flush=True); time.sleep(60)"
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    with Repro(process, ("repro",)) as repro:
        assert repro.next_stage(on_line=None) == "train"
    assert process.returncode is not None

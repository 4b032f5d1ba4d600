import pytest

from tasks.dvc import DvcError, DvcResult, locked_md5, tracked_md5


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

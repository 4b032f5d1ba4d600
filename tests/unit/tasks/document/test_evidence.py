import hashlib
import json

import pytest

from steward.storage import Storage
from tasks.document import evidence


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "project"
    (root / "reports/evidence").mkdir(parents=True)
    (root / "reports/gate.json").write_text('{"verdict": "pass"}')
    (root / "reports/evidence/index.html").write_text("<html>evidence</html>")
    (root / "params.yaml").write_text("train: {}\n")
    (root / "dvc.lock").write_text("schema: '2.0'\n")
    (root / "data").mkdir()
    (root / "data/not-evidence.csv").write_text("a,b\n")
    return root


def _sha(text):
    return hashlib.sha256(text.encode()).hexdigest()


def test_the_digest_is_the_sha256_of_a_sorted_manifest_of_file_hashes(project, tmp_path):
    snap = evidence.snapshot(project, storage=Storage(local_root=tmp_path / "store"))
    files = {
        "dvc.lock": _sha("schema: '2.0'\n"),
        "params.yaml": _sha("train: {}\n"),
        "reports/evidence/index.html": _sha("<html>evidence</html>"),
        "reports/gate.json": _sha('{"verdict": "pass"}'),
    }
    manifest = json.dumps({"files": files, "schema_version": 1}, sort_keys=True, separators=(",", ":"))
    assert snap.files == files
    assert snap.digest == _sha(manifest)


def test_a_snapshot_survives_the_reports_being_overwritten(project, tmp_path):
    storage = Storage(local_root=tmp_path / "store")
    first = evidence.snapshot(project, storage=storage)
    (project / "reports/gate.json").write_text('{"verdict": "fail"}')
    second = evidence.snapshot(project, storage=storage)
    assert second.digest != first.digest

    loaded = evidence.load(first.digest, storage=storage)
    out = evidence.materialize(loaded, tmp_path / "out", storage=storage)
    assert (out / "reports/gate.json").read_text() == '{"verdict": "pass"}'
    assert (out / "reports/evidence/index.html").read_text() == "<html>evidence</html>"
    assert not (out / "data").exists()


def test_an_unknown_digest_and_a_corrupted_file_are_named(project, tmp_path):
    storage = Storage(local_root=tmp_path / "store")
    with pytest.raises(FileNotFoundError, match="no evidence snapshot with digest 00ff"):
        evidence.load("00ff" * 16, storage=storage)
    snap = evidence.snapshot(project, storage=storage)
    stored = next((tmp_path / "store/evidence/files").rglob("*.json"))
    stored.write_text("tampered")
    with pytest.raises(ValueError, match=r"reports/gate\.json .* does not match its manifest hash"):
        evidence.materialize(snap, tmp_path / "out", storage=storage)


def test_a_project_without_reports_has_no_evidence(tmp_path):
    (tmp_path / "params.yaml").write_text("{}")
    with pytest.raises(FileNotFoundError, match="run the pipeline first"):
        evidence.collect(tmp_path)

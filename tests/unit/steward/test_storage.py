import hashlib
from pathlib import Path

import pytest

from steward.storage import Storage, atomic_copy, split_s3_uri


def test_local_put_is_content_addressed_and_idempotent(tmp_path):
    source = tmp_path / "report.json"
    source.write_bytes(b'{"auc": 0.8}')
    store = Storage(local_root=tmp_path / "artifacts")
    uri = store.put_file(source, prefix="reports")
    digest = hashlib.sha256(b'{"auc": 0.8}').hexdigest()
    assert uri == str(tmp_path / "artifacts" / "reports" / digest[:2] / f"{digest}.json")
    assert Path(uri).read_bytes() == b'{"auc": 0.8}'
    assert store.put_file(source, prefix="reports") == uri
    assert not list((tmp_path / "artifacts").rglob("*.part"))


def test_fetch_names_a_missing_source(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no such file: .*nowhere\.csv"):
        Storage(local_root=tmp_path).fetch(str(tmp_path / "nowhere.csv"), tmp_path / "out.csv")


def test_atomic_copy_leaves_the_old_file_when_the_copy_fails(tmp_path):
    dest = tmp_path / "data.csv"
    dest.write_text("old")
    with pytest.raises(OSError):
        atomic_copy(tmp_path / "missing.csv", dest)
    assert dest.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["data.csv"]


@pytest.mark.parametrize("uri", ["s3://", "s3://bucket", "s3://bucket/", "http://x/y", "bucket/key"])
def test_bad_s3_uris_are_named(uri):
    with pytest.raises(ValueError, match="not an s3:// URI"):
        split_s3_uri(uri)


def test_split_s3_uri():
    assert split_s3_uri("s3://b/some/key.csv") == ("b", "some/key.csv")

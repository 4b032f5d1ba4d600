"""S3 through boto3 against a real S3 API on 127.0.0.1 (moto_server): storage, ingest, and a DVC remote."""

import hashlib

import boto3
import pytest
from support import BIN, run, steward_env

from steward.storage import Storage

pytestmark = pytest.mark.integration


@pytest.fixture
def bucket(s3_endpoint, aws_env, request):
    name = "steward-" + hashlib.sha1(request.node.name.encode()).hexdigest()[:12]
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


def test_content_addressed_put_and_fetch_round_trip(tmp_path, s3_endpoint, bucket):
    source = tmp_path / "model-card.md"
    source.write_bytes(b"# card\n" * 1000)
    store = Storage(local_root=tmp_path / "unused", bucket=bucket, endpoint_url=s3_endpoint)
    uri = store.put_file(source, prefix="evidence")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert uri == f"s3://{bucket}/evidence/{digest[:2]}/{digest}.md"
    assert store.put_file(source, prefix="evidence") == uri
    listed = boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket=bucket)["Contents"]
    assert [obj["Key"] for obj in listed] == [uri.split("/", 3)[3]]

    back = store.fetch(uri, tmp_path / "back" / "card.md")
    assert back.read_bytes() == source.read_bytes()
    assert not list((tmp_path / "unused").glob("**/*"))


def test_fetch_names_a_missing_object(tmp_path, s3_endpoint, bucket):
    store = Storage(local_root=tmp_path, bucket=bucket, endpoint_url=s3_endpoint)
    with pytest.raises(FileNotFoundError, match=f"s3://{bucket}/nope.csv"):
        store.fetch(f"s3://{bucket}/nope.csv", tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()
    assert not list(tmp_path.glob("*.part"))


def test_ingest_from_s3_and_push_data_to_a_dvc_s3_remote(project, s3_endpoint, bucket, aws_env):
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.upload_file(str(project / "data/german_credit.csv"), bucket, "snapshots/2026-11/applications.csv")
    env = steward_env(project, extra={**aws_env, "STEWARD_S3_ENDPOINT_URL": s3_endpoint})

    ingested = run(
        [str(BIN / "steward"), "ingest", f"s3://{bucket}/snapshots/2026-11/applications.csv"], cwd=project, env=env
    )
    assert ingested.returncode == 0, ingested.stderr
    assert (project / "data/raw/snapshot.csv").read_bytes() == (project / "data/german_credit.csv").read_bytes()

    dvc = str(BIN / "dvc")
    for args in (
        ["remote", "add", "-d", "s3", f"s3://{bucket}/dvc"],
        ["remote", "modify", "s3", "endpointurl", s3_endpoint],
        ["push"],
    ):
        done = run([dvc, *args], cwd=project, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
    md5 = (project / "data/raw/snapshot.csv.dvc").read_text().split("md5: ")[1].split()[0]
    keys = [obj["Key"] for obj in client.list_objects_v2(Bucket=bucket, Prefix="dvc/")["Contents"]]
    assert f"dvc/files/md5/{md5[:2]}/{md5[2:]}" in keys

    # A second clone of the same data pulls it back from S3 instead of re-ingesting.
    (project / "data/raw/snapshot.csv").unlink()
    run(["rm", "-rf", str(project / ".dvc/cache")], cwd=project, env=env)
    pulled = run([dvc, "pull", "data/raw/snapshot.csv.dvc"], cwd=project, env=env)
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    assert (project / "data/raw/snapshot.csv").read_bytes() == (project / "data/german_credit.csv").read_bytes()

"""Ledger export to a real S3 API on 127.0.0.1 (moto_server), with and without Object Lock."""

import contextlib
import hashlib
import os
import signal
import time
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.exceptions import ClientError
from support import moto_server

from steward.db import make_engine
from steward.ledger import Ledger, Record, verify_records
from steward.ledger_export import NO_OBJECT_LOCK, export_to_s3
from steward.storage import Storage

pytestmark = pytest.mark.integration


def _bucket_name(request, suffix):
    return "steward-" + hashlib.sha1((request.node.name + suffix).encode()).hexdigest()[:12]


@pytest.fixture
def client(s3_endpoint, aws_env):
    return boto3.client("s3", endpoint_url=s3_endpoint)


@pytest.fixture
def ledger(tmp_path):
    ledger = Ledger(make_engine(f"sqlite:///{tmp_path / 'steward.db'}"))
    ledger.append(actor="alice", action="gate.verdict", subject="credit-risk:v1", payload={"verdict": "pass"})
    ledger.append(actor="bob", action="approval.granted", subject="credit-risk:v1", payload={"note": "ok"})
    return ledger


def _records(client, bucket, key):
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    return [Record.from_json(line) for line in body.splitlines()]


def test_export_to_a_locked_bucket_is_retained_in_compliance_mode(tmp_path, request, client, s3_endpoint, ledger):
    bucket = _bucket_name(request, "locked")
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    storage = Storage(local_root=tmp_path / "unused", bucket=bucket, endpoint_url=s3_endpoint)

    before = datetime.now(UTC)
    result = export_to_s3(ledger, storage=storage, key="ledger/2026-11-22.jsonl", retain_days=30)

    assert result.locked and result.count == 2 and result.uri == f"s3://{bucket}/ledger/2026-11-22.jsonl"
    head = client.head_object(Bucket=bucket, Key="ledger/2026-11-22.jsonl")
    assert head["ObjectLockMode"] == "COMPLIANCE"
    retained = head["ObjectLockRetainUntilDate"]
    assert before + timedelta(days=29) < retained < before + timedelta(days=31)
    assert head["VersionId"] == result.version_id

    exported = _records(client, bucket, "ledger/2026-11-22.jsonl")
    assert exported == ledger.records()
    assert verify_records(exported).ok
    assert hashlib.sha256(
        client.get_object(Bucket=bucket, Key="ledger/2026-11-22.jsonl")["Body"].read()
    ).hexdigest() == (result.sha256)

    with pytest.raises(ClientError) as refused:
        client.delete_object(Bucket=bucket, Key="ledger/2026-11-22.jsonl", VersionId=result.version_id)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert client.head_object(Bucket=bucket, Key="ledger/2026-11-22.jsonl", VersionId=result.version_id)


def test_export_to_a_bucket_without_object_lock_is_a_plain_upload(tmp_path, request, client, s3_endpoint, ledger):
    bucket = _bucket_name(request, "plain")
    client.create_bucket(Bucket=bucket)
    storage = Storage(local_root=tmp_path / "unused", bucket=bucket, endpoint_url=s3_endpoint)

    result = export_to_s3(ledger, storage=storage, bucket=bucket, key="ledger.jsonl", retain_days=30)

    assert not result.locked and result.retain_until is None
    assert result.message == NO_OBJECT_LOCK.format(count=2, bucket=bucket)
    head = client.head_object(Bucket=bucket, Key="ledger.jsonl")
    assert "ObjectLockMode" not in head
    assert verify_records(_records(client, bucket, "ledger.jsonl")).ok


# --- the ledger's anchor: signed checkpoints in S3 -----------------------------------------------------------


def _anchored(tmp_path, s3_endpoint, bucket):
    """A home whose ledger checkpoints to s3://bucket/steward; five records, each a checkpoint."""
    from steward.anchor import anchor_from, anchored, verifying_keys
    from steward.settings import Settings

    settings = Settings(
        project_dir=tmp_path,
        home=tmp_path / "home",
        s3_endpoint_url=s3_endpoint,
        ledger_anchor=f"s3://{bucket}/steward",
    )
    engine = make_engine(settings.db_url)
    ledger = anchored(engine, settings)
    for n in range(1, 6):
        ledger.append(actor="rollout", action="rollout.step", subject="credit-risk:v1", payload={"n": n})
    assert ledger.checkpoints.last_error is None
    return ledger, engine, anchor_from(None, settings=settings), verifying_keys(settings)


def test_checkpoints_in_a_locked_bucket_are_retained_and_a_rewrite_is_caught(tmp_path, request, client, s3_endpoint):
    from steward.anchor_verify import verify

    bucket = _bucket_name(request, "anchor-locked")
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    ledger, engine, anchor, key = _anchored(tmp_path, s3_endpoint, bucket)

    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="steward/")["Contents"]]
    assert keys == [f"steward/checkpoints/{n:012d}.json" for n in range(1, 6)]
    head = client.head_object(Bucket=bucket, Key=keys[-1])
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert verify(ledger, anchor, key).ok

    # truncation, then a recomputed chain in its place: both named against the locked checkpoints
    with engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM ledger WHERE seq > 3")
    report = verify(ledger, anchor, key)
    assert report.first_divergence == 4 and report.problems[0].startswith("truncated: records 4..5 are missing")
    Ledger(engine).append(actor="mallory", action="rollout.step", subject="credit-risk:v1", payload={"n": 4})
    report = verify(ledger, anchor, key)
    assert report.first_divergence == 4 and report.problems[0].startswith("rewritten: record 4's hash differs")


def test_a_deleted_checkpoint_is_caught_whether_the_bucket_is_locked_or_not(tmp_path, request, client, s3_endpoint):
    from steward.anchor_verify import verify

    locked, plain = _bucket_name(request, "del-locked"), _bucket_name(request, "del-plain")
    client.create_bucket(Bucket=locked, ObjectLockEnabledForBucket=True)
    client.create_bucket(Bucket=plain)
    for bucket in (locked, plain):
        ledger, _, anchor, key = _anchored(tmp_path / bucket, s3_endpoint, bucket)
        client.delete_object(Bucket=bucket, Key="steward/checkpoints/000000000003.json")  # no version: allowed
        report = verify(ledger, anchor, key)
        assert not report.ok, bucket
        if bucket == locked:  # the locked version survives under a delete marker, and is named
            assert "checkpoint object steward/checkpoints/000000000003.json was deleted" in " ".join(report.problems)
        else:
            assert any(p.startswith("checkpoint(s) 3 missing from s3://") for p in report.problems), report.problems


def _grown(ledger, records):
    for n in range(records):
        ledger.append(
            actor="rollout", action="rollout.step", subject=f"credit-risk:v{n}", payload={"n": n, "pad": "x" * 80}
        )
    return ledger


def test_a_multipart_export_interrupted_after_two_parts_resumes_to_the_bytes_of_a_one_shot_export(
    tmp_path, request, client, s3_endpoint, ledger, monkeypatch
):
    from steward.ledger import LedgerError

    _grown(ledger, 60)  # about 23 KiB: six parts of 4 KiB
    bucket = _bucket_name(request, "multipart")
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    storage = Storage(local_root=tmp_path / "unused", bucket=bucket, endpoint_url=s3_endpoint)
    ledger.export_jsonl(tmp_path / "one-shot.jsonl")
    expected = (tmp_path / "one-shot.jsonl").read_bytes()
    real, calls = storage.s3.upload_part, []

    def fails_after_two(**kwargs):
        calls.append(kwargs["PartNumber"])
        if kwargs["PartNumber"] > 2:
            raise ConnectionError("connection reset by peer")
        return real(**kwargs)

    monkeypatch.setattr(storage.s3, "upload_part", fails_after_two)
    with pytest.raises(LedgerError, match="stopped after 2 part\\(s\\): part 3 failed 3 times") as stopped:
        export_to_s3(ledger, storage=storage, key="ledger/full.jsonl", retain_days=30, part_size=4096)
    assert calls == [1, 2, 3, 3, 3]  # bounded retries
    assert "Run the same export again to resume" in str(stopped.value)
    with pytest.raises(ClientError):  # nothing under the final key
        client.head_object(Bucket=bucket, Key="ledger/full.jsonl")
    [upload] = client.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert len(client.list_parts(Bucket=bucket, Key="ledger/full.jsonl", UploadId=upload["UploadId"])["Parts"]) == 2

    calls.clear()
    monkeypatch.setattr(
        storage.s3, "upload_part", lambda **kwargs: calls.append(kwargs["PartNumber"]) or real(**kwargs)
    )
    result = export_to_s3(ledger, storage=storage, key="ledger/full.jsonl", retain_days=30, part_size=4096)
    body = client.get_object(Bucket=bucket, Key="ledger/full.jsonl")["Body"].read()
    assert body == expected and len(expected) > 4 * 4096 and calls == [3, 4, 5, 6]  # parts 1 and 2 were kept
    assert result.count == 62 and result.sha256 == hashlib.sha256(expected).hexdigest()
    assert result.locked and "resumed upload" in result.message and "2 part(s) already uploaded" in result.message
    assert client.head_object(Bucket=bucket, Key="ledger/full.jsonl")["ObjectLockMode"] == "COMPLIANCE"
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []

    unbroken = export_to_s3(ledger, storage=storage, key="ledger/again.jsonl", retain_days=None, part_size=4096)
    assert client.get_object(Bucket=bucket, Key="ledger/again.jsonl")["Body"].read() == expected
    assert unbroken.sha256 == result.sha256 and not unbroken.locked


def test_a_resumed_export_of_a_ledger_that_grew_meanwhile_keeps_the_parts_that_still_match(
    tmp_path, request, client, s3_endpoint, ledger, monkeypatch
):
    from steward.ledger import LedgerError

    _grown(ledger, 40)
    bucket = _bucket_name(request, "grew")
    client.create_bucket(Bucket=bucket)
    storage = Storage(local_root=tmp_path / "unused", bucket=bucket, endpoint_url=s3_endpoint)
    real = storage.s3.upload_part

    def fails_at_four(**kwargs):
        if kwargs["PartNumber"] == 4:
            raise ConnectionError("reset")
        return real(**kwargs)

    monkeypatch.setattr(storage.s3, "upload_part", fails_at_four)
    with pytest.raises(LedgerError):
        export_to_s3(ledger, storage=storage, key="l.jsonl", retain_days=None, part_size=4096, tries=1)
    monkeypatch.setattr(storage.s3, "upload_part", real)
    _grown(ledger, 20)  # new records: the parts already sent are still the export's first bytes
    result = export_to_s3(ledger, storage=storage, key="l.jsonl", retain_days=None, part_size=4096)
    ledger.export_jsonl(tmp_path / "now.jsonl")
    assert client.get_object(Bucket=bucket, Key="l.jsonl")["Body"].read() == (tmp_path / "now.jsonl").read_bytes()
    assert result.count == 62 and "3 part(s) already uploaded were kept" in result.message


@pytest.fixture
def frozen_s3(aws_env):
    """An S3 endpoint of its own, which a test may freeze (SIGSTOP: it takes connections and never answers)."""
    with moto_server() as (url, pid):
        try:
            yield url, pid
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)  # thawed, so that it can be stopped


@pytest.mark.slow  # waits out every retry's timeout
def test_an_s3_endpoint_that_stops_answering_mid_export_gives_a_clear_error_in_bounded_time_and_no_object(
    tmp_path, request, ledger, frozen_s3, monkeypatch
):
    from steward.ledger import LedgerError

    url, pid = frozen_s3
    _grown(ledger, 60)  # six parts of 4 KiB
    bucket = _bucket_name(request, "frozen")
    boto3.client("s3", endpoint_url=url).create_bucket(Bucket=bucket)
    storage = Storage(local_root=tmp_path / "unused", bucket=bucket, endpoint_url=url, timeout=1)
    real = storage.s3.upload_part

    def stop_the_endpoint_before_part_three(**kwargs):
        if kwargs["PartNumber"] == 3:
            os.kill(pid, signal.SIGSTOP)  # the endpoint stops answering in the middle of the upload
        return real(**kwargs)

    monkeypatch.setattr(storage.s3, "upload_part", stop_the_endpoint_before_part_three)
    started = time.monotonic()
    with pytest.raises(LedgerError, match=r"stopped after 2 part\(s\): part 3 failed 3 times .*Read timeout"):
        export_to_s3(ledger, storage=storage, key="ledger/full.jsonl", retain_days=None, part_size=4096)
    assert time.monotonic() - started < 60  # bounded: 3 tries x 3 attempts x a 1 s timeout, not minutes
    os.kill(pid, signal.SIGCONT)
    fresh = boto3.client("s3", endpoint_url=url)
    with pytest.raises(ClientError):
        fresh.head_object(Bucket=bucket, Key="ledger/full.jsonl")  # no partial object under the key
    monkeypatch.setattr(storage.s3, "upload_part", real)
    export_to_s3(ledger, storage=storage, key="ledger/full.jsonl", retain_days=None, part_size=4096)
    ledger.export_jsonl(tmp_path / "one-shot.jsonl")
    assert (
        fresh.get_object(Bucket=bucket, Key="ledger/full.jsonl")["Body"].read()
        == (tmp_path / "one-shot.jsonl").read_bytes()
    )

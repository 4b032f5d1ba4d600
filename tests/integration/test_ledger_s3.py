"""Ledger export to a real S3 API on 127.0.0.1 (moto_server), with and without Object Lock."""

import hashlib
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.exceptions import ClientError

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

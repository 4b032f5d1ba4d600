"""Export the ledger to S3, under Object Lock (COMPLIANCE retention) when the bucket has it.

A locked copy cannot be deleted or overwritten before its retention date by anyone, root included: a full
copy for auditors. The continuous anchor of the chain is the signed checkpoints (steward.anchor), written
with the same `put_retained`.
"""

from __future__ import annotations

import base64
import hashlib
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from steward.ledger import Ledger, LedgerError
from steward.storage import NO_BUCKET, Storage

LOCKED = "uploaded {count} records under COMPLIANCE retention until {until}"
NO_OBJECT_LOCK = "uploaded {count} records without retention: bucket {bucket} has no Object Lock enabled"
NO_RETENTION = "uploaded {count} records without explicit retention (none requested)"
BAD_RETAIN_DAYS = "retain_days must be at least 1, got {days}"

_NO_LOCK_CODES = {"ObjectLockConfigurationNotFoundError", "NoSuchObjectLockConfiguration"}


@dataclass(frozen=True)
class S3Export:
    """Where the export went and whether it is locked."""

    uri: str
    version_id: str | None
    count: int
    sha256: str
    locked: bool
    retain_until: datetime | None
    message: str


def object_lock_enabled(client: object, bucket: str) -> bool:
    """Whether `bucket` was created with Object Lock (only possible at creation; it needs versioning)."""
    from botocore.exceptions import ClientError

    try:
        answer = client.get_object_lock_configuration(Bucket=bucket)  # type: ignore[attr-defined]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in _NO_LOCK_CODES:
            return False
        raise
    return bool(answer.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled")


@dataclass(frozen=True)
class Put:
    """One object written by `put_retained`."""

    version_id: str | None
    sha256: str
    retain_until: datetime | None
    message: str


def put_retained(
    client: Any, *, bucket: str, key: str, body: bytes, retain_days: int | None, content_type: str, count: int = 1
) -> Put:
    """Write `body` to `bucket`/`key` under COMPLIANCE retention for `retain_days` when the bucket has Object
    Lock (a plain write otherwise, said so in the message). The one Object Lock write of the export and the
    ledger's checkpoints (steward.anchor)."""
    if retain_days is not None and retain_days < 1:
        raise LedgerError(BAD_RETAIN_DAYS.format(days=retain_days))
    digest = hashlib.sha256(body).digest()
    arguments: dict[str, object] = {
        "Bucket": bucket,
        "Key": key,
        "Body": body,
        "ContentType": content_type,
        # Object Lock uploads must carry a checksum header; the server verifies it before the object exists.
        "ChecksumAlgorithm": "SHA256",
        "ChecksumSHA256": base64.b64encode(digest).decode(),
    }
    retain_until: datetime | None = None
    if not object_lock_enabled(client, bucket):
        message = NO_OBJECT_LOCK.format(count=count, bucket=bucket)
    elif retain_days is None:
        message = NO_RETENTION.format(count=count)
    else:
        retain_until = (datetime.now(UTC) + timedelta(days=retain_days)).replace(microsecond=0)
        arguments |= {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": retain_until}
        message = LOCKED.format(count=count, until=retain_until.isoformat())
    answer = client.put_object(**arguments)
    return Put(answer.get("VersionId"), digest.hex(), retain_until, message)


def export_to_s3(
    ledger: Ledger,
    *,
    storage: Storage,
    key: str,
    bucket: str | None = None,
    retain_days: int | None,
) -> S3Export:
    """Upload the ledger as JSONL to `bucket`/`key` (default bucket: the storage's) through its boto3 client."""
    bucket = bucket or storage.bucket
    if not bucket:
        raise LedgerError(NO_BUCKET)
    if retain_days is not None and retain_days < 1:
        raise LedgerError(BAD_RETAIN_DAYS.format(days=retain_days))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ledger.jsonl"
        count = ledger.export_jsonl(path)
        body = path.read_bytes()
    done = put_retained(
        storage.s3,
        bucket=bucket,
        key=key,
        body=body,
        retain_days=retain_days,
        content_type="application/x-ndjson",
        count=count,
    )
    return S3Export(
        uri=f"s3://{bucket}/{key}",
        version_id=done.version_id,
        count=count,
        sha256=done.sha256,
        locked=done.retain_until is not None,
        retain_until=done.retain_until,
        message=done.message,
    )

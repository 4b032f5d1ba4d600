"""Export the ledger to S3, under Object Lock (COMPLIANCE retention) when the bucket has it.

A locked copy is the external anchor of the chain: nobody, root included, can delete or overwrite that
version before its retention date, so truncating or rewriting the database is caught by comparing.
"""

from __future__ import annotations

import base64
import hashlib
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

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
    digest = hashlib.sha256(body).digest()
    arguments: dict[str, object] = {
        "Bucket": bucket,
        "Key": key,
        "Body": body,
        "ContentType": "application/x-ndjson",
        # Object Lock uploads must carry a checksum header; the server verifies it before the object exists.
        "ChecksumAlgorithm": "SHA256",
        "ChecksumSHA256": base64.b64encode(digest).decode(),
    }
    client = storage.s3
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
    return S3Export(
        uri=f"s3://{bucket}/{key}",
        version_id=answer.get("VersionId"),
        count=count,
        sha256=digest.hex(),
        locked=retain_until is not None,
        retain_until=retain_until,
        message=message,
    )

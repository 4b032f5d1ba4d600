"""Export the ledger to S3, under Object Lock (COMPLIANCE retention) when the bucket has it.

A locked copy cannot be deleted or overwritten before its retention date by anyone, root included: a full
copy for auditors. The continuous anchor of the chain is the signed checkpoints (steward.anchor), written
with the same `put_retained`.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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


PART_SIZE = 8 * 1024 * 1024  # S3 wants every part but the last at least 5 MiB
PART_TRIES = 3
INTERRUPTED = (
    "the ledger export to s3://{bucket}/{key} stopped after {done} part(s): part {part} failed {tries} times "
    "({error}); nothing is visible under the key yet. Run the same export again to resume upload {upload_id}"
)
RESUMED = "; resumed upload {upload_id}: {skipped} part(s) already uploaded were kept"


def _parts(lines: Iterator[bytes], size: int) -> Iterator[bytes]:
    """The export's bytes cut into `size`-byte parts (the last shorter), streamed."""
    buffer = bytearray()
    for line in lines:
        buffer += line
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)


def _open_upload(client: Any, bucket: str, key: str) -> str | None:
    """The newest unfinished multipart upload to exactly `key`, if any (what an interrupted export left)."""
    newest: dict[str, Any] | None = None
    for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=key):
        for upload in page.get("Uploads", []):
            if upload["Key"] == key and (newest is None or upload["Initiated"] > newest["Initiated"]):
                newest = upload
    return None if newest is None else str(newest["UploadId"])


def _uploaded(client: Any, bucket: str, key: str, upload_id: str) -> dict[int, tuple[int, str]]:
    """Part number -> (size, ETag) of the parts an upload already holds."""
    found = {}
    for page in client.get_paginator("list_parts").paginate(Bucket=bucket, Key=key, UploadId=upload_id):
        for part in page.get("Parts", []):
            found[int(part["PartNumber"])] = (int(part["Size"]), str(part["ETag"]).strip('"'))
    return found


def export_to_s3(
    ledger: Ledger,
    *,
    storage: Storage,
    key: str,
    bucket: str | None = None,
    retain_days: int | None,
    part_size: int = PART_SIZE,
    tries: int = PART_TRIES,
) -> S3Export:
    """Upload the ledger as JSONL to `bucket`/`key` (default bucket: the storage's) through its boto3 client,
    streamed: records are read a page at a time and sent as multipart parts of `part_size` bytes, so neither
    the ledger nor the export is ever whole in memory. The export covers the records up to the head when it
    starts. An export that fits one part is one put. Each part is tried `tries` times; then the export stops
    with a message naming the upload, which stays open (multipart parts are never visible under the key until
    completed). The next export to the same key resumes it: the parts already there whose size and MD5 match
    the bytes due are kept, the rest sent, so the object is byte for byte what one uninterrupted export writes
    (the ledger only grows, and its JSONL is canonical)."""
    bucket = bucket or storage.bucket
    if not bucket:
        raise LedgerError(NO_BUCKET)
    if retain_days is not None and retain_days < 1:
        raise LedgerError(BAD_RETAIN_DAYS.format(days=retain_days))
    client = storage.s3
    head = ledger.head()
    until = head[0] if head else 0
    counted = [0]

    def lines() -> Iterator[bytes]:
        for line in ledger.jsonl_lines(until_seq=until):
            counted[0] += 1
            yield line

    whole = hashlib.sha256()
    parts = _parts(lines(), part_size)
    first = next(parts, b"")
    upload_id = _open_upload(client, bucket, key)
    second = next(parts, None)
    if second is None and upload_id is None:  # one part: one put, as before
        done = put_retained(
            client,
            bucket=bucket,
            key=key,
            body=first,
            retain_days=retain_days,
            content_type="application/x-ndjson",
            count=counted[0],
        )
        return S3Export(
            f"s3://{bucket}/{key}",
            done.version_id,
            counted[0],
            done.sha256,
            done.retain_until is not None,
            done.retain_until,
            done.message,
        )
    resumed = upload_id is not None
    if upload_id is None:
        arguments: dict[str, Any] = {
            "Bucket": bucket,
            "Key": key,
            "ContentType": "application/x-ndjson",
            "ChecksumAlgorithm": "SHA256",
        }
        if retain_days is not None and object_lock_enabled(client, bucket):
            until_date = (datetime.now(UTC) + timedelta(days=retain_days)).replace(microsecond=0)
            arguments |= {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": until_date}
        upload_id = str(client.create_multipart_upload(**arguments)["UploadId"])
    have = _uploaded(client, bucket, key, upload_id) if resumed else {}
    sent: list[dict[str, Any]] = []
    skipped = 0
    rest = (p for p in (second,) if p is not None)
    for number, body in enumerate(itertools.chain((first,), rest, parts), start=1):
        whole.update(body)
        if have.get(number) == (len(body), hashlib.md5(body, usedforsecurity=False).hexdigest()):
            sent.append({"PartNumber": number, "ETag": f'"{have[number][1]}"', "ChecksumSHA256": _sha256_b64(body)})
            skipped += 1
            continue
        sent.append(
            _send_part(
                client,
                bucket=bucket,
                key=key,
                upload_id=upload_id,
                number=number,
                body=body,
                tries=tries,
                done=len(sent),
            )
        )
    client.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={"Parts": [{k: v for k, v in part.items() if k in ("PartNumber", "ETag")} for part in sent]},
    )
    found = client.head_object(Bucket=bucket, Key=key)
    retain_until = found.get("ObjectLockRetainUntilDate") if found.get("ObjectLockMode") == "COMPLIANCE" else None
    if retain_days is not None and retain_until is None and object_lock_enabled(client, bucket):
        # resumed (the retention was fixed when the upload opened) or a server that did not apply it: set it on
        # the version just completed, before anyone can have a reason to delete it
        retain_until = (datetime.now(UTC) + timedelta(days=retain_days)).replace(microsecond=0)
        client.put_object_retention(
            Bucket=bucket,
            Key=key,
            VersionId=found.get("VersionId"),
            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": retain_until},
        )
    if retain_until is not None:
        message = LOCKED.format(count=counted[0], until=retain_until.isoformat())
    elif not object_lock_enabled(client, bucket):
        message = NO_OBJECT_LOCK.format(count=counted[0], bucket=bucket)
    else:
        message = NO_RETENTION.format(count=counted[0])
    if resumed:
        message += RESUMED.format(upload_id=upload_id, skipped=skipped)
    return S3Export(
        uri=f"s3://{bucket}/{key}",
        version_id=found.get("VersionId"),
        count=counted[0],
        sha256=whole.hexdigest(),
        locked=retain_until is not None,
        retain_until=retain_until,
        message=message,
    )


def _send_part(
    client: Any, *, bucket: str, key: str, upload_id: str, number: int, body: bytes, tries: int, done: int
) -> dict[str, Any]:
    """Upload one part (with its SHA-256, which Object Lock requires), `tries` times at most."""
    checksum = _sha256_b64(body)
    error: Exception | None = None
    for attempt in range(tries):
        try:
            answer = client.upload_part(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=body,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=checksum,
            )
            return {"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": checksum}
        except Exception as exc:  # any failure of the transfer: retried, then reported
            error = exc
            time.sleep(min(0.2 * 2**attempt, 2.0))
    raise LedgerError(
        INTERRUPTED.format(
            bucket=bucket, key=key, done=done, part=number, tries=tries, error=error, upload_id=upload_id
        )
    )


def _sha256_b64(body: bytes) -> str:
    return base64.b64encode(hashlib.sha256(body).digest()).decode()

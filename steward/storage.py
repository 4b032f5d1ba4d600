"""Files in and out of Steward: local paths and s3:// URIs (boto3, configurable endpoint).

Writes are content-addressed (the key holds the sha256 of the bytes) and never partial: a local
write goes to a temporary file renamed into place, an S3 upload carries a SHA-256 checksum the
server verifies before the object exists.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steward.errors import NotFound, StewardError

if TYPE_CHECKING:
    from steward.settings import Settings

NOT_FOUND = "no such file: {uri}"
BAD_S3_URI = "not an s3:// URI with a bucket and a key: {uri!r}"
NO_BUCKET = "an s3 store needs a bucket: set STEWARD_S3_BUCKET"

CHUNK = 1 << 20


class StorageError(StewardError, ValueError):
    """Storage Steward cannot use: a malformed s3:// URI, no bucket configured."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def split_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/key` → (`bucket`, `some/key`)."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket or not key:
        raise StorageError(BAD_S3_URI.format(uri=uri))
    return bucket, key


def content_key(prefix: str, digest: str, suffix: str) -> str:
    return f"{prefix.strip('/')}/{digest[:2]}/{digest}{suffix}"


def atomic_copy(source: Path, dest: Path) -> None:
    """Copy so that `dest` is either absent, its old self, or complete."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


S3_TIMEOUT_SECONDS = 30.0  # an endpoint that stops answering fails a call after this, not after minutes
S3_ATTEMPTS = 3  # botocore's attempts per call (standard retry mode), each bounded by the timeout


class Storage:
    """A local folder or an S3 bucket holding content-addressed artifacts; reads any path or s3:// URI."""

    def __init__(
        self,
        *,
        local_root: Path,
        bucket: str | None = None,
        endpoint_url: str | None = None,
        timeout: float = S3_TIMEOUT_SECONDS,
    ) -> None:
        self.local_root = local_root
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.timeout = timeout  # seconds to connect, and for each read, before botocore retries (bounded)
        self._client: Any = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Storage:
        return cls(
            local_root=settings.artifacts_dir,
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
        )

    @property
    def s3(self) -> Any:
        """The boto3 S3 client, made on first use (credentials from the usual AWS_* sources)."""
        if self._client is None:
            import boto3
            from botocore.config import Config

            bounded = Config(
                connect_timeout=self.timeout,
                read_timeout=self.timeout,
                retries={"mode": "standard", "max_attempts": S3_ATTEMPTS},
            )
            self._client = boto3.client("s3", endpoint_url=self.endpoint_url, config=bounded)
        return self._client

    def uri(self, key: str) -> str:
        """Where `key` lives in this store: an s3:// URI, or a path under the local root."""
        return f"s3://{self.bucket}/{key}" if self.bucket else str(self.local_root / key)

    def describe(self) -> str:
        return f"s3://{self.bucket}" if self.bucket else str(self.local_root)

    def put_file(self, path: Path, *, prefix: str) -> str:
        """Store `path` under `prefix` by content and return its URI; the same bytes twice is a no-op."""
        digest = sha256_file(path)
        uri = self.uri(content_key(prefix, digest, "".join(path.suffixes)))
        if self.exists(uri):
            return uri
        if self.bucket:
            checksum = base64.b64encode(bytes.fromhex(digest)).decode()
            with path.open("rb") as body:
                self.s3.put_object(Bucket=self.bucket, Key=split_s3_uri(uri)[1], Body=body, ChecksumSHA256=checksum)
        else:
            atomic_copy(path, Path(uri))
        return uri

    def exists(self, uri: str) -> bool:
        if not uri.startswith("s3://"):
            return Path(uri).exists()
        from botocore.exceptions import ClientError

        bucket, key = split_s3_uri(uri)
        try:
            self.s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise
        return True

    def fetch(self, uri: str, dest: Path) -> Path:
        """Copy a local path or s3:// object to `dest` atomically; a missing source is named."""
        if not uri.startswith("s3://"):
            source = Path(uri)
            if not source.is_file():
                raise NotFound(NOT_FOUND.format(uri=uri))
            atomic_copy(source, dest)
            return dest
        from botocore.exceptions import ClientError

        bucket, key = split_s3_uri(uri)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        os.close(fd)
        try:
            self.s3.download_file(bucket, key, tmp)
            os.replace(tmp, dest)
        except ClientError as exc:
            Path(tmp).unlink(missing_ok=True)
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                raise NotFound(NOT_FOUND.format(uri=uri)) from None
            raise
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return dest

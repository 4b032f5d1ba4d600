"""Signed checkpoints of the ledger's head, kept outside its database: what makes a rewrite visible.

The hash chain (steward.ledger) shows an edited record, but someone who can write the database can also
recompute every hash after their edit, or cut the tail off: the chain is then valid and shorter or different.
A checkpoint fixes the head where the database cannot reach: its seq and hash, the time, the digest of the
checkpoint before it (so removing one breaks the checkpoint chain), signed by this instance's key (statement
kind `ledger-checkpoint`). Checkpoints go to an anchor: S3 under Object Lock (COMPLIANCE retention, so not
even the bucket's owner can delete them before their date) when `STEWARD_LEDGER_ANCHOR=s3://BUCKET/PREFIX`,
else an append-only file under STEWARD_HOME. `verify` then compares the database with the anchor.

One is written after every sign-off answer, registry transition, routing change and rollback commits, and
whenever the newest is older than `STEWARD_LEDGER_CHECKPOINT_SECONDS` and the head has moved (checked at
each append and by the prediction log's flush thread, so a serving system that goes quiet is covered too).
A checkpoint that cannot be written never undoes the ledger record it follows: it is logged, kept in
`Checkpoints.last_error`, and the next trigger tries again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from steward.canonical import canonical_json
from steward.errors import StewardError
from steward.keys import PublicKey, SigningKey
from steward.ledger import (
    ACTIONS,
    DECISIONS_BATCH,
    DECISIONS_INTERVAL,
    GATE_VERDICT,
    RETRAIN_REQUESTED,
    REVIEW_DECISION,
    ROLLOUT_ANALYSIS,
    Ledger,
    now_ts,
)

if TYPE_CHECKING:
    from steward.settings import Settings

KIND: Final = "ledger-checkpoint"  # the statement kind an instance key signs a checkpoint as
GENESIS: Final = "0" * 64  # the `prev` of checkpoint 1
LOCAL_FILE: Final = "ledger-checkpoints.jsonl"  # under STEWARD_HOME
# Written after these commit: every sign-off answer, model state change, routing change and rollback. The
# frequent or advisory ones (served decision batches, analyses, verdicts, reviews, retraining requests) are
# covered by the time-based checkpoint instead.
NOT_TRIGGERING: Final = frozenset(
    {DECISIONS_BATCH, DECISIONS_INTERVAL, ROLLOUT_ANALYSIS, GATE_VERDICT, REVIEW_DECISION, RETRAIN_REQUESTED}
)
TRIGGERS: Final = frozenset(ACTIONS) - NOT_TRIGGERING

NOT_WRITTEN = "ledger checkpoint not written to {anchor}: {error} (the ledger record stands; the next one retries)"
BAD_LINE = "{anchor}: entry {where} is not a checkpoint: {error}"
BAD_ANCHOR = "not a ledger anchor: {uri!r} (an s3://BUCKET/PREFIX URI or a file path)"
NO_VERIFYING_KEY = "no public key to check checkpoints with: {path} is missing"
HIDDEN = "checkpoint object {key} was deleted (a delete marker hides it; {versions} retained version(s) remain)"
OVERWRITTEN = "checkpoint object {key} was overwritten ({versions} versions): its first version is the one read"
LOCKED_UNTIL = "{uri}: COMPLIANCE retention until {until}"
UNLOCKED = "{uri}: NOT locked: bucket {bucket} has no Object Lock, so whoever can write it can delete checkpoints"

log = logging.getLogger("steward.anchor")


class AnchorError(StewardError, ValueError):
    """An anchor Steward cannot use: a malformed URI, a checkpoint that cannot be read, no key to check with."""


@dataclass(frozen=True)
class Checkpoint:
    """The ledger's head at one time, signed: checkpoint `number` says record `seq` has hash `head`."""

    number: int
    seq: int
    head: str
    ts: str
    prev: str  # the digest of checkpoint number - 1 (GENESIS for the first)
    signer: str  # fingerprint of the signing key
    signature: str

    def statement(self) -> dict[str, Any]:
        """What the signature covers."""
        return {"number": self.number, "seq": self.seq, "head": self.head, "ts": self.ts, "prev": self.prev}

    @property
    def digest(self) -> str:
        """What the next checkpoint's `prev` names: the sha256 of this one's canonical JSON, signature included."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()

    def to_json(self) -> str:
        return canonical_json(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Checkpoint:
        data = json.loads(text)
        found = cls(**{name: data[name] for name in cls.__dataclass_fields__})
        if not (isinstance(found.number, int) and isinstance(found.seq, int)):
            raise ValueError("number and seq must be integers")
        return found


def sign_checkpoint(key: SigningKey, *, number: int, seq: int, head: str, prev: str, ts: str) -> Checkpoint:
    unsigned = Checkpoint(
        number=number, seq=seq, head=head, ts=ts, prev=prev, signer=key.public.fingerprint, signature=""
    )
    return replace(unsigned, signature=key.sign(KIND, unsigned.statement()))


@dataclass(frozen=True)
class Contents:
    """Everything an anchor holds, in order, and what it could not read as a checkpoint."""

    checkpoints: list[Checkpoint]
    problems: list[str] = field(default_factory=list)


class Anchor(Protocol):
    """Where checkpoints are kept, out of the database's reach."""

    uri: str

    def newest(self) -> Checkpoint | None: ...

    def append(self, checkpoint: Checkpoint) -> str: ...

    def read(self) -> Contents: ...


class FileAnchor:
    """An append-only JSON-lines file: each checkpoint one line, written with O_APPEND and fsync'd.

    Weaker than S3 Object Lock (whoever can write the file can rewrite it, and removing its last lines shows
    only as an older newest checkpoint), so keep it where the database's writers cannot write."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.uri = str(path)

    def newest(self) -> Checkpoint | None:
        if not self.path.is_file():
            return None
        with self.path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - 8192))  # one line is ~400 bytes: the tail holds the newest whole line
            lines = [line for line in handle.read().splitlines() if line.strip()]
        try:
            return Checkpoint.from_json(lines[-1].decode("utf-8")) if lines else None
        except (ValueError, KeyError, TypeError) as exc:
            raise AnchorError(BAD_LINE.format(anchor=self.uri, where="last", error=exc)) from None

    def append(self, checkpoint: Checkpoint) -> str:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(descriptor, (checkpoint.to_json() + "\n").encode("utf-8"))
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        return f"appended to {self.uri}"

    def read(self) -> Contents:
        if not self.path.is_file():
            return Contents([])
        found, problems = [], []
        with self.path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    found.append(Checkpoint.from_json(line))
                except (ValueError, KeyError, TypeError) as exc:
                    problems.append(BAD_LINE.format(anchor=self.uri, where=f"on line {number}", error=exc))
        return Contents(found, problems)


class S3Anchor:
    """One object per checkpoint, `PREFIX/checkpoints/<number, 12 digits>.json`, under COMPLIANCE retention
    when the bucket has Object Lock (else written and reported unlocked). Reading lists object versions, so a
    checkpoint hidden by a delete marker is named even though a plain listing no longer shows it."""

    def __init__(self, client: Any, bucket: str, prefix: str, *, retain_days: int) -> None:
        self.client, self.bucket, self.retain_days = client, bucket, retain_days
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}"
        self._known: str | None = None  # the newest key this process has seen: listings start after it
        self._warned = False  # an unlocked bucket is logged once per process, not per checkpoint

    def _key(self, number: int) -> str:
        return f"{self.prefix}/checkpoints/{number:012d}.json"

    def newest(self) -> Checkpoint | None:
        start = self._known or f"{self.prefix}/checkpoints/"
        keys = [self._known] if self._known else []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self.prefix}/checkpoints/", StartAfter=start
        ):
            keys += [item["Key"] for item in page.get("Contents", [])]
        if not keys:
            return None
        self._known = keys[-1]
        return self._get(keys[-1])

    def _get(self, key: str, version: str | None = None) -> Checkpoint:
        extra = {"VersionId": version} if version else {}
        body = self.client.get_object(Bucket=self.bucket, Key=key, **extra)["Body"].read().decode("utf-8")
        try:
            return Checkpoint.from_json(body)
        except (ValueError, KeyError, TypeError) as exc:
            raise AnchorError(BAD_LINE.format(anchor=self.uri, where=key, error=exc)) from None

    def append(self, checkpoint: Checkpoint) -> str:
        from steward.ledger_export import put_retained

        key = self._key(checkpoint.number)
        done = put_retained(
            self.client, bucket=self.bucket, key=key, body=(checkpoint.to_json() + "\n").encode("utf-8"),
            retain_days=self.retain_days, content_type="application/json",
        )  # fmt: skip
        self._known = key
        if done.retain_until is None:
            message = UNLOCKED.format(uri=f"s3://{self.bucket}/{key}", bucket=self.bucket)
            if not self._warned:
                log.warning(message)
                self._warned = True
            return message
        return LOCKED_UNTIL.format(uri=f"s3://{self.bucket}/{key}", until=done.retain_until.isoformat())

    def read(self) -> Contents:
        found: list[Checkpoint] = []
        problems: list[str] = []
        versions: dict[str, list[dict[str, Any]]] = {}
        hidden: set[str] = set()
        for page in self.client.get_paginator("list_object_versions").paginate(
            Bucket=self.bucket, Prefix=f"{self.prefix}/checkpoints/"
        ):
            for item in page.get("Versions", []):
                versions.setdefault(item["Key"], []).append(item)
            hidden |= {m["Key"] for m in page.get("DeleteMarkers", []) if m.get("IsLatest")}
        for key in sorted(versions):
            if key in hidden:
                problems.append(HIDDEN.format(key=key, versions=len(versions[key])))
            elif len(versions[key]) > 1:
                problems.append(OVERWRITTEN.format(key=key, versions=len(versions[key])))
            # the oldest version is the one written; a later one under the same key is an overwrite
            first = min(versions[key], key=lambda v: v["LastModified"])
            try:
                found.append(self._get(key, first.get("VersionId") if first.get("VersionId") != "null" else None))
            except AnchorError as exc:
                problems.append(str(exc))
        return Contents(found, problems)


def anchor_from(uri: str | None, *, settings: Settings) -> Anchor:
    """The anchor `uri` names (s3://BUCKET/PREFIX or a file path); none: the configured one, or the local file."""
    uri = uri or settings.ledger_anchor
    if not uri:
        return FileAnchor(settings.state_dir / LOCAL_FILE)
    if uri.startswith("s3://"):
        from steward.storage import Storage

        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        if not bucket:
            raise AnchorError(BAD_ANCHOR.format(uri=uri))
        storage = Storage(local_root=settings.artifacts_dir, bucket=bucket, endpoint_url=settings.s3_endpoint_url)
        return S3Anchor(storage.s3, bucket, prefix or "ledger", retain_days=settings.ledger_anchor_retain_days)
    if "://" in uri:
        raise AnchorError(BAD_ANCHOR.format(uri=uri))
    return FileAnchor(Path(uri))


class Checkpoints:
    """Writes checkpoints of one database's ledger to one anchor (what `Ledger(checkpoints=...)` calls)."""

    def __init__(self, engine: Engine, anchor: Anchor, key: SigningKey, *, every_seconds: float = 300.0) -> None:
        self._engine, self.anchor, self._key, self._every = engine, anchor, key, every_seconds
        self._newest: Checkpoint | None = None
        self._loaded = False
        self._quiet_until = 0.0  # monotonic: nothing to check before then (the head had not moved)
        self.last_error: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings, engine: Engine) -> Checkpoints:
        from steward.keys import instance_key

        return cls(
            engine,
            anchor_from(None, settings=settings),
            instance_key(settings),
            every_seconds=settings.ledger_checkpoint_seconds,
        )

    def after_commit(self, action: str) -> None:
        """Called once a record of `action` is committed: a checkpoint now if it is a trigger or one is due."""
        if action in TRIGGERS:
            self._safely(self.write)
        else:
            self.if_due()

    def if_due(self) -> None:
        """A checkpoint if the newest is older than the interval and the head has moved since (never raises)."""
        if time.monotonic() < self._quiet_until:
            return
        self._safely(self._write_if_due)

    def _write_if_due(self) -> Checkpoint | None:
        newest = self._cached()
        if newest is not None and datetime.fromisoformat(newest.ts) > datetime.now(UTC) - timedelta(
            seconds=self._every
        ):
            return None
        done = self.write()
        if done is None:  # the head had not moved: look again in a tenth of the interval
            self._quiet_until = time.monotonic() + self._every / 10
        return done

    def _safely(self, write: Any) -> None:
        try:
            write()
            self.last_error = None
        except Exception as exc:  # a checkpoint must never undo or block the record it follows
            self.last_error = NOT_WRITTEN.format(anchor=self.anchor.uri, error=exc)
            self._loaded = False  # re-read the anchor next time: another process may have written
            log.warning(self.last_error)

    def _cached(self) -> Checkpoint | None:
        if not self._loaded:
            self._newest, self._loaded = self.anchor.newest(), True
        return self._newest

    def write(self) -> Checkpoint | None:
        """Sign and anchor the current head (None: the newest checkpoint already covers it). Holds the ledger's
        write lock meanwhile, so the head cannot move and two processes cannot fork the checkpoint chain."""
        with Session(self._engine) as session, session.begin():
            Ledger.lock(session)
            head = Ledger.head_of(session)
            newest = self.anchor.newest()  # re-read under the lock: another process may have written one
            if head is None or (newest is not None and (newest.seq, newest.head) == head):
                self._newest, self._loaded = newest, True
                return None
            checkpoint = sign_checkpoint(
                self._key,
                number=1 if newest is None else newest.number + 1,
                seq=head[0],
                head=head[1],
                prev=GENESIS if newest is None else newest.digest,
                ts=now_ts(),
            )
            self.anchor.append(checkpoint)
        self._newest, self._loaded = checkpoint, True
        return checkpoint


def anchored(engine: Engine, settings: Settings) -> Ledger:
    """The ledger of `engine`, checkpointed to the anchor `settings` configure, signed by the instance key."""
    return Ledger(engine, checkpoints=Checkpoints.from_settings(settings, engine))


def verifying_keys(settings: Settings, paths: list[Path] | None = None) -> list[PublicKey]:
    """The public keys checkpoints may be signed by: `paths` (each must exist; the instances that write to
    one anchor), else this instance's, if it ever made one (it is never created here: verifying signs nothing)."""
    for path in paths or []:
        if not path.is_file():
            raise AnchorError(NO_VERIFYING_KEY.format(path=path))
    own = settings.keys_dir / "instance.pub"
    chosen = paths or ([own] if own.is_file() else [])
    return [PublicKey.from_text(path.read_text(), source=str(path)) for path in chosen]

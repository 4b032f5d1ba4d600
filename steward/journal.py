"""The decision journal: a local append-only file each decision is written to, and fsync'd, before the service
answers it. The prediction log (steward/predictions.py) ships the journal into the database.

Group commit: the caller that finds nobody writing appends everything waiting as one write, fsyncs once, and only
then hands the entries on (in sequence order) and wakes the callers whose entries it wrote; callers that arrive
meanwhile queue, and one of them writes the next group. A caller waits at most `commit_seconds`; a write that
fails is cut back off the file, and its callers are told so (never answered).

A journal is a folder, written by one process at a time (an exclusive lock on `lock`, let go when the process
dies), one per serving replica under `STEWARD_HOME/journal/<model name>/` (`claim`):

- `journal.id`: the journal's name, made once; the database stores, per journal id, the last sequence number
  shipped, in the same transaction as the rows, so a crash between the two repeats nothing and loses nothing;
- `<first seq, 20 digits>.jsonl`: segments of lines `seq<TAB>crc32<TAB>json`. A new segment starts once the
  current one passes `segment_bytes` or is `segment_seconds` old; a segment wholly shipped is deleted. The
  journal holds personal data, so a quiet journal also starts a new segment once its current one is that old and
  wholly shipped (`shipped`): a decision leaves the journal within `segment_seconds` of reaching the database,
  and an erasure (steward/erasure.py) finds it only there.

Opening a journal reads every segment back. A torn last line (a kill in the middle of a write) was never
acknowledged: it is cut off. A bad line anywhere else is corruption: the journal refuses to open, naming it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steward.errors import StewardError

SEGMENT_BYTES = 64 * 1024 * 1024
SEGMENT_SECONDS = 300.0
MAX_REPLICAS = 64  # journals one use case's replicas may hold under one home
IN_USE = (
    "the decision journal {path} is in use by another process: each serving replica of a use case needs a "
    "journal of its own (STEWARD_REPLICA)"
)
CORRUPT = "the decision journal {path} is damaged at line {line}: {why}; it is kept as it is for a person to inspect"
NOT_WRITTEN = "the decision journal {path} could not be written: {error}"
TOO_SLOW = "the decision journal {path} did not confirm the write within {seconds:g} s"
CLOSED = "the decision journal {path} is closed"
BROKEN = "the decision journal {path} stopped taking decisions ({error}); a restart ships what it holds"
logger = logging.getLogger("steward.journal")

Entry = dict[str, Any]
Durable = Callable[[list[tuple[int, Entry]]], None]


class JournalError(StewardError, RuntimeError):
    """The journal cannot take an entry, or cannot be opened: the caller must not acknowledge the decision."""


class JournalInUse(JournalError):
    """Another live process writes this journal."""


@dataclass
class _Waiting:
    entries: list[Entry]
    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None


class Journal:
    """One process's decision journal in `directory`. `durable` is called by the writer thread, in sequence
    order, with each group once it is on disk (before any caller hears so)."""

    def __init__(
        self,
        directory: Path,
        *,
        durable: Durable,
        commit_seconds: float = 2.0,
        segment_bytes: int = SEGMENT_BYTES,
        segment_seconds: float = SEGMENT_SECONDS,
    ) -> None:
        self.path = directory
        self._durable = durable
        self._commit_seconds = commit_seconds
        self._segment_bytes = segment_bytes
        self._segment_seconds = segment_seconds
        self._segment_opened = time.monotonic()
        directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise JournalInUse(IN_USE.format(path=directory)) from None
        self.id = self._identity()
        self.recovered = self._read_back()  # every entry on disk, shipped or not: the log keeps what it lacks
        self._segments = self._segment_starts()
        self._next = max([self.recovered[-1][0] + 1 if self.recovered else 1, *self._segments[-1:]])
        if not self._segments or self._segment_size() >= segment_bytes:
            self._segments.append(self._next)
        self._fd = os.open(self._segment(self._segments[-1]), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._fsync_directory()
        if self._segment_size():  # entries of an earlier process: of unknown age, they go as soon as shipped
            self._segment_opened -= segment_seconds
        self._queue: list[_Waiting] = []
        self._cond = threading.Condition()
        self._writing = False  # a caller is writing the queue (the leader)
        self._closed = False
        self._broken: str | None = None

    # --- writing ---------------------------------------------------------------------------------

    def append(self, entries: list[Entry], *, wait: bool = True) -> None:
        """Append `entries`; with `wait`, return only once they are on disk (JournalError if they are not).

        A caller that finds nobody writing writes the whole queue (its own entries and everything queued before
        them) as one group; the others wait, and one of those still waiting writes the next group. A lone request
        thus writes its own entry, with no hand-over to another thread."""
        waiting = _Waiting(entries)
        deadline = time.monotonic() + self._commit_seconds
        with self._cond:
            if self._closed or self._broken:
                raise JournalError(self._broken or CLOSED.format(path=self.path))
            self._queue.append(waiting)
            if not wait and self._writing:
                return
            while not waiting.done.is_set():
                if not self._writing:
                    self._write_queue()
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise JournalError(TOO_SLOW.format(path=self.path, seconds=self._commit_seconds))
                self._cond.wait(remaining)
        if waiting.error is not None:
            raise JournalError(waiting.error)

    def _write_queue(self) -> None:
        """Write what is queued as one group, the condition's lock let go meanwhile (held on entry and exit)."""
        self._writing = True
        group, self._queue = self._queue, []
        self._cond.release()
        try:
            self._commit(group)
        finally:
            self._cond.acquire()
            self._writing = False
            self._cond.notify_all()

    def _commit(self, group: list[_Waiting]) -> None:
        numbered = [(self._next + i, entry) for i, entry in enumerate(e for w in group for e in w.entries)]
        blob = "".join(_line(seq, entry) for seq, entry in numbered).encode("utf-8")
        start = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            os.write(self._fd, blob)
            os.fsync(self._fd)
        except OSError as error:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)  # nothing of a failed group stays to be shipped
            for waiting in group:
                waiting.error = NOT_WRITTEN.format(path=self.path, error=error)
                waiting.done.set()
            return
        self._next += len(numbered)
        try:
            self._durable(numbered)
        except Exception as error:  # on disk but not handed on: stop taking entries (shipped at the next start)
            logger.exception("the decision journal %s stops: its entries could not be handed on", self.path)
            with self._cond:
                self._broken = BROKEN.format(path=self.path, error=error)
            for waiting in group:
                waiting.error = self._broken
        if start + len(blob) >= self._segment_bytes or self._segment_age() >= self._segment_seconds:
            self._rotate()
        for waiting in group:
            waiting.done.set()

    def _rotate(self) -> None:
        """Start the next segment (a failure leaves the current one growing: nothing is lost either way)."""
        try:
            fd = os.open(self._segment(self._next), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._fsync_directory()
        except OSError:
            logger.exception("the decision journal %s could not start a new segment", self.path)
            return
        os.close(self._fd)
        self._fd = fd
        self._segment_opened = time.monotonic()
        with self._cond:
            self._segments.append(self._next)

    def _segment_age(self) -> float:
        return time.monotonic() - self._segment_opened

    def shipped(self, seq: int) -> None:
        """Everything through `seq` is in the database: delete the segments that hold nothing newer (starting a
        new segment first when the current one is old, holds entries and all of them are shipped)."""
        with self._cond:
            idle = not self._writing and not self._closed and not self._broken
            stale = self._segment_age() >= self._segment_seconds and self._segments[-1] < self._next <= seq + 1
            if idle and stale:
                self._writing = True  # no group may be written while the segment changes
        if idle and stale:
            try:
                self._rotate()
            finally:
                with self._cond:
                    self._writing = False
                    self._cond.notify_all()
        with self._cond:
            while len(self._segments) > 1 and self._segments[1] <= seq + 1:
                with contextlib.suppress(FileNotFoundError):
                    self._segment(self._segments[0]).unlink()
                self._segments.pop(0)

    def close(self) -> None:
        """Let the last writer finish, then let the folder go."""
        with self._cond:
            self._closed = True
            self._cond.wait_for(lambda: not self._writing, timeout=10)
        os.close(self._fd)
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        os.close(self._lock_fd)

    # --- opening ---------------------------------------------------------------------------------

    def _identity(self) -> str:
        named = self.path / "journal.id"
        if named.is_file():
            return named.read_text().strip()
        made = uuid.uuid4().hex
        partial = self.path / "journal.id.partial"
        partial.write_text(made)
        with open(partial, "rb") as f:
            os.fsync(f.fileno())
        partial.replace(named)
        self._fsync_directory()
        return made

    def _segment(self, first: int) -> Path:
        return self.path / f"{first:020d}.jsonl"

    def _segment_starts(self) -> list[int]:
        return sorted(int(p.stem) for p in self.path.glob("*.jsonl") if p.stem.isdigit())

    def _segment_size(self) -> int:
        return self._segment(self._segments[-1]).stat().st_size

    def _read_back(self) -> list[tuple[int, Entry]]:
        found: list[tuple[int, Entry]] = []
        starts = self._segment_starts()
        for index, first in enumerate(starts):
            path = self._segment(first)
            data = path.read_bytes()
            good = 0
            for number, raw in enumerate(data.split(b"\n")[:-1], start=1):
                parsed = _parse(raw)
                last = index == len(starts) - 1 and good + len(raw) + 1 == len(data)
                if isinstance(parsed, str):
                    if last:  # a torn tail: never acknowledged
                        break
                    raise JournalError(CORRUPT.format(path=path, line=number, why=parsed))
                expected = found[-1][0] + 1 if found else first
                if parsed[0] != expected:
                    raise JournalError(CORRUPT.format(path=path, line=number, why=f"seq {parsed[0]}, not {expected}"))
                found.append(parsed)
                good += len(raw) + 1
            if good < len(data):
                if index != len(starts) - 1:
                    raise JournalError(CORRUPT.format(path=path, line="end", why="an unfinished line"))
                os.truncate(path, good)
        return found

    def _fsync_directory(self) -> None:
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def claim(base: Path, name: str | None, *, durable: Durable, **options: Any) -> Journal:
    """The journal `base/name`, or without a name the first one under `base` no live process holds ("0", "1",
    ...): a replica restarted after a crash takes up, and ships, the journal its predecessor left."""
    if name is not None:
        return Journal(base / name, durable=durable, **options)
    for slot in range(MAX_REPLICAS):
        try:
            return Journal(base / str(slot), durable=durable, **options)
        except JournalInUse:
            continue
    raise JournalInUse(IN_USE.format(path=base / f"0..{MAX_REPLICAS - 1}"))


def _line(seq: int, entry: Entry) -> str:
    text = json.dumps(entry, separators=(",", ":"), ensure_ascii=False)
    return f"{seq}\t{zlib.crc32(text.encode('utf-8')):08x}\t{text}\n"


def _parse(raw: bytes) -> tuple[int, Entry] | str:
    """(seq, entry), or why the line is not one."""
    parts = raw.split(b"\t", 2)
    if len(parts) != 3 or not parts[0].isdigit():
        return "not a journal line"
    if f"{zlib.crc32(parts[2]):08x}".encode() != parts[1]:
        return "its checksum does not match"
    try:
        return int(parts[0]), json.loads(parts[2])
    except ValueError:
        return "its entry is not JSON"

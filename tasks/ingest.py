"""Ingest: take a snapshot of applications (a path or an s3:// URI) into data/raw/ and version it with DVC.

A snapshot is accepted only if it meets the raw data contract: a bad file is refused at the door,
with the failed expectations listed and their Data Docs kept under STEWARD_HOME/rejected/, and
the data already in data/raw/ (and every earlier version in the DVC cache) stays as it was.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from steward.layout import Layout
from steward.params import Params
from steward.settings import Settings
from steward.storage import Storage, atomic_copy, sha256_file
from tasks.dvc import point_local_remote, run_dvc, tracked_md5
from tasks.validate import ValidationFailed, validate_frame

NOT_CSV = "could not read {source} as CSV: {error}"


class IngestError(ValueError):
    """A snapshot that could not be read."""


@dataclass(frozen=True)
class Snapshot:
    """An accepted snapshot: where it came from, where it lives, and its DVC md5 (the data version)."""

    source: str
    path: Path
    md5: str
    rows: int
    changed: bool


def fetch_snapshot(source: str, *, settings: Settings, storage: Storage) -> Path:
    """Copy the source to a private staging file under STEWARD_HOME/incoming."""
    staging = settings.state_dir / "incoming" / f"{uuid.uuid4().hex}.csv"
    return storage.fetch(source, staging)


def read_snapshot(path: Path, *, source: str) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise IngestError(NOT_CSV.format(source=source, error=exc)) from None


def accept_snapshot(staging: Path, *, source: str, settings: Settings, params: Params) -> Snapshot:
    """Check the staged file against the raw suite, then make it data/raw's current version (`dvc add`)."""
    layout = Layout(settings.project_dir)
    try:
        digest = sha256_file(staging)
        current = layout.raw_data.is_file() and layout.raw_data_dvc.is_file()
        if current and sha256_file(layout.raw_data) == digest:
            # The bytes already are the accepted version: they met the contract when they came in.
            rows = sum(1 for _ in staging.open("rb")) - 1
            return Snapshot(
                source=source,
                path=layout.raw_data,
                md5=tracked_md5(layout.raw_data_dvc),
                rows=rows,
                changed=False,
            )
        frame = read_snapshot(staging, source=source)
        suite = layout / params.validate_.raw_suite
        if not validate_frame(frame, suite_path=suite).success:
            rejected = settings.state_dir / "rejected" / digest[:16]
            raise ValidationFailed(validate_frame(frame, suite_path=suite, docs_dir=rejected / "data_docs"))
        atomic_copy(staging, layout.raw_data)
        run_dvc("add", str(layout.raw_data.relative_to(layout.project_dir)), settings=settings)
        return Snapshot(
            source=source,
            path=layout.raw_data,
            md5=tracked_md5(layout.raw_data_dvc),
            rows=len(frame),
            changed=True,
        )
    finally:
        staging.unlink(missing_ok=True)


def push_snapshot(*, settings: Settings) -> None:
    """Send the current snapshot to the DVC remote (a folder under STEWARD_HOME, or S3)."""
    layout = Layout(settings.project_dir)
    point_local_remote(settings)
    run_dvc("push", str(layout.raw_data_dvc.relative_to(layout.project_dir)), settings=settings)


# Prefect tasks: retries only where the network or a remote store is touched.
fetch_snapshot_task = task(
    name="fetch-snapshot", retries=3, retry_delay_seconds=[2, 5, 15], cache_policy=NO_CACHE
)(fetch_snapshot)
accept_snapshot_task = task(name="validate-and-version-snapshot", cache_policy=NO_CACHE)(accept_snapshot)
push_snapshot_task = task(
    name="push-snapshot", retries=3, retry_delay_seconds=[2, 5, 15], cache_policy=NO_CACHE
)(push_snapshot)

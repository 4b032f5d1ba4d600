"""Ingest: take a snapshot of applications (a path or an s3:// URI) into data/raw/, versioned by DVC.

A new snapshot becomes data/raw's current version (`dvc add`: its md5 is the data version), then the
`validate` stage checks it against both data contracts. If it fails, the failed expectations are
raised, its Data Docs are kept under STEWARD_HOME/rejected/<md5>/, and the previous version is put
back (the .dvc file and `dvc checkout`), so nothing already accepted is lost: the version a snapshot
replaces is committed to the DVC cache first (a clone's data never was), and stays there whatever happens.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from steward.layout import Layout
from steward.settings import Settings
from steward.storage import Storage, atomic_copy, sha256_file
from tasks.data.validate import ValidationFailed, first_failure
from tasks.dvc import DvcError, point_local_remote, reproduce, run_dvc, tracked_md5
from tasks.stage import read_report


@dataclass(frozen=True)
class Snapshot:
    """A snapshot in data/raw: where it came from, its DVC md5 (the data version), and what it replaced."""

    source: str
    path: Path
    md5: str
    changed: bool
    previous_dvc: str | None = None  # the .dvc file it replaced; None if it replaced nothing
    previous_data: bool = False  # the data that .dvc file names was here, and is now in the DVC cache


GZIP_MAGIC = b"\x1f\x8b"


@task(name="fetch-snapshot", retries=3, retry_delay_seconds=[2, 5, 15], cache_policy=NO_CACHE)
def fetch_snapshot(source: str, *, settings: Settings, storage: Storage) -> Path:
    """Copy the source to a private staging file under STEWARD_HOME/incoming (a gzipped CSV decompressed:
    data/raw holds plain CSV, whose md5 is the data version whatever the source was packed in)."""
    staging = storage.fetch(source, settings.state_dir / "incoming" / f"{uuid.uuid4().hex}.csv")
    with staging.open("rb") as head:
        packed = head.read(2) == GZIP_MAGIC
    if packed:
        plain = staging.with_suffix(".plain.csv")
        with gzip.open(staging, "rb") as reader, plain.open("wb") as writer:
            shutil.copyfileobj(reader, writer)
        staging.unlink()
        plain.replace(staging)
    return staging


@task(name="version-snapshot", cache_policy=NO_CACHE)
def version_snapshot(staging: Path, *, source: str, settings: Settings) -> Snapshot:
    """Make the staged file data/raw's current version (`dvc add`), unless it already is."""
    layout = Layout(settings.project_dir)
    try:
        # data/raw's file is current only if its .dvc file says so: a workspace reset to HEAD keeps an older file
        current = layout.raw_data.is_file() and layout.raw_data_dvc.is_file()
        current = current and tracked_md5(layout.raw_data_dvc) == md5_file(layout.raw_data)
        if current and sha256_file(layout.raw_data) == sha256_file(staging):
            return Snapshot(source=source, path=layout.raw_data, md5=tracked_md5(layout.raw_data_dvc), changed=False)
        previous = layout.raw_data_dvc.read_text() if layout.raw_data_dvc.is_file() else None
        if current:  # a clone or workspace never `dvc add`ed it: cache it, so a rejection can put it back
            run_dvc("commit", "--force", str(layout.raw_data_dvc.relative_to(layout.project_dir)), settings=settings)
        atomic_copy(staging, layout.raw_data)
        run_dvc("add", str(layout.raw_data.relative_to(layout.project_dir)), settings=settings)
        return Snapshot(
            source=source,
            path=layout.raw_data,
            md5=tracked_md5(layout.raw_data_dvc),
            changed=True,
            previous_dvc=previous,
            previous_data=current,
        )
    finally:
        staging.unlink(missing_ok=True)


def md5_file(path: Path) -> str:
    """The md5 DVC 3 records for a file (`hash: md5`: of its bytes)."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def restore_previous(snapshot: Snapshot, *, settings: Settings) -> None:
    """Put back the version `snapshot` replaced: its .dvc file, and its data if it was here (a .dvc file whose
    data was absent, say a fresh clone's, is put back with its data still absent); or remove both, if it
    replaced nothing."""
    layout = Layout(settings.project_dir)
    target = str(layout.raw_data_dvc.relative_to(layout.project_dir))
    if snapshot.previous_dvc is None:
        layout.raw_data.unlink(missing_ok=True)
        layout.raw_data_dvc.unlink(missing_ok=True)
        return
    layout.raw_data_dvc.write_text(snapshot.previous_dvc)
    if snapshot.previous_data:
        run_dvc("checkout", "--force", target, settings=settings)
    else:
        layout.raw_data.unlink(missing_ok=True)


@task(name="dvc repro validate", cache_policy=NO_CACHE)
def validate_snapshot(snapshot: Snapshot, *, settings: Settings, env: dict[str, str] | None = None) -> None:
    """Run the `validate` stage (`env` added to DVC's environment: the training flow's stage server); on a broken
    contract keep its evidence, restore the last version, raise."""
    layout = Layout(settings.project_dir)
    try:
        reproduce("validate", settings=settings, env=env)
        return
    except DvcError:
        failed = first_failure(read_report(layout.report("validate")))
        if failed is None or not snapshot.changed:
            raise  # not a contract failure (or not this snapshot's): let the DVC error speak
    rejected = settings.state_dir / "rejected" / snapshot.md5
    rejected.mkdir(parents=True, exist_ok=True)
    shutil.copy2(layout.report("validate"), rejected / "validate.json")
    if failed.data_docs is not None:  # keep the failed suite's Data Docs: the next run overwrites reports/
        docs = Path(failed.data_docs)
        shutil.copytree(layout / docs.parent, rejected / docs.parent.name, dirs_exist_ok=True)
        failed = failed.with_docs(str(rejected / docs.parent.name / docs.name))
    restore_previous(snapshot, settings=settings)
    if snapshot.previous_data:
        reproduce("validate", settings=settings, env=env)  # the reports describe the restored version again
    raise ValidationFailed(failed)


@task(name="push-snapshot", retries=3, retry_delay_seconds=[2, 5, 15], cache_policy=NO_CACHE)
def push_snapshot(*, settings: Settings) -> None:
    """Send the current snapshot to the DVC remote (a folder under STEWARD_HOME, or S3)."""
    layout = Layout(settings.project_dir)
    point_local_remote(settings)
    run_dvc("push", str(layout.raw_data_dvc.relative_to(layout.project_dir)), settings=settings)


def ingest(source: str, *, settings: Settings, storage: Storage) -> Snapshot:
    """Fetch, version and validate a snapshot: `steward ingest` (the flow runs these steps as tasks)."""
    staging = fetch_snapshot.fn(source, settings=settings, storage=storage)
    snapshot = version_snapshot.fn(staging, source=source, settings=settings)
    validate_snapshot.fn(snapshot, settings=settings)
    return snapshot

"""The evidence of a run, frozen: every report, plot and document, hashed into one manifest.

A sign-off is about exactly these bytes. `snapshot` stores each file in `Storage` by content and the
manifest beside them; the manifest's sha256 is the *evidence digest* an approver's answer must carry, so
an answer given on evidence that has since changed is refused. `materialize` lays a snapshot out again as
a folder (relative links work) from the storage alone, even after `reports/` was overwritten by a later run.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steward.canonical import canonical_json
from steward.errors import NotFound, StewardError
from steward.storage import Storage, content_key, sha256_file

FILES_PREFIX = "evidence/files"
MANIFEST_PREFIX = "evidence/manifests"
MANIFEST_SUFFIX = ".json"
# What counts as evidence: everything the stages wrote under reports/, and the lineage that produced it.
EVIDENCE_ROOTS = ("reports",)
EVIDENCE_FILES = ("dvc.lock", "params.yaml")

NO_EVIDENCE = "no evidence under {root}: run the pipeline first (reports/ is empty)"
UNKNOWN_DIGEST = "no evidence snapshot with digest {digest} in {where}"
CORRUPT_FILE = "evidence file {path} in storage does not match its manifest hash (expected {expected}, got {got})"


class EvidenceError(StewardError, ValueError):
    """Evidence Steward refuses: a file whose bytes are not the ones recorded, a pack that would overwrite one."""


@dataclass(frozen=True)
class Snapshot:
    """A stored evidence manifest: `digest` names it, `files` maps each relative path to its sha256."""

    digest: str
    manifest_uri: str
    files: dict[str, str]

    @property
    def short(self) -> str:
        return self.digest[:12]


def collect(project_dir: Path) -> dict[str, str]:
    """Relative path → sha256 of every evidence file in the project, sorted by path."""
    paths = [p for root in EVIDENCE_ROOTS for p in (project_dir / root).rglob("*") if p.is_file()]
    paths += [project_dir / name for name in EVIDENCE_FILES if (project_dir / name).is_file()]
    if not any(p.is_relative_to(project_dir / EVIDENCE_ROOTS[0]) for p in paths):
        raise NotFound(NO_EVIDENCE.format(root=project_dir))
    return {p.relative_to(project_dir).as_posix(): sha256_file(p) for p in sorted(paths)}


def manifest_text(files: dict[str, str]) -> str:
    """The one canonical text of a manifest; its sha256 is the evidence digest."""
    return canonical_json({"schema_version": 1, "files": dict(sorted(files.items()))})


def digest_of(files: dict[str, str]) -> str:
    import hashlib

    return hashlib.sha256(manifest_text(files).encode("utf-8")).hexdigest()


def _suffix(path: str) -> str:
    return "".join(Path(path).suffixes)


def snapshot(project_dir: Path, *, storage: Storage) -> Snapshot:
    """Store every evidence file by content, then the manifest; the same evidence twice stores nothing new."""
    files = collect(project_dir)
    for relative in files:
        storage.put_file(project_dir / relative, prefix=FILES_PREFIX)
    with tempfile.TemporaryDirectory() as scratch:
        manifest = Path(scratch) / f"manifest{MANIFEST_SUFFIX}"
        manifest.write_text(manifest_text(files), encoding="utf-8")
        uri = storage.put_file(manifest, prefix=MANIFEST_PREFIX)
    return Snapshot(digest=digest_of(files), manifest_uri=uri, files=files)


def load(digest: str, *, storage: Storage) -> Snapshot:
    """The stored snapshot of that digest (its manifest is read back and checked against the digest)."""
    uri = storage.uri(content_key(MANIFEST_PREFIX, digest, MANIFEST_SUFFIX))
    with tempfile.TemporaryDirectory() as scratch:
        try:
            local = storage.fetch(uri, Path(scratch) / "manifest.json")
        except FileNotFoundError:
            raise NotFound(UNKNOWN_DIGEST.format(digest=digest, where=storage.describe())) from None
        data: dict[str, Any] = json.loads(local.read_text(encoding="utf-8"))
    files = {str(k): str(v) for k, v in data["files"].items()}
    if digest_of(files) != digest:
        raise EvidenceError(CORRUPT_FILE.format(path=uri, expected=digest, got=digest_of(files)))
    return Snapshot(digest=digest, manifest_uri=uri, files=files)


def materialize(snap: Snapshot, dest: Path, *, storage: Storage) -> Path:
    """Lay the snapshot's files out under `dest` at their relative paths, each checked against its hash."""
    for relative, sha in snap.files.items():
        target = dest / relative
        storage.fetch(storage.uri(content_key(FILES_PREFIX, sha, _suffix(relative))), target)
        got = sha256_file(target)
        if got != sha:
            raise EvidenceError(CORRUPT_FILE.format(path=relative, expected=sha, got=got))
    return dest

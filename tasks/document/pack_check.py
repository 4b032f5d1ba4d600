"""Which signatures cover which reports in an evidence pack, and checking a pack offline (`steward evidence
verify PACK`).

An approver signs the evidence digest: the sha256 of the manifest of the run's frozen evidence, which a pack
holds under `evidence/`. A signature over this pack's digest therefore covers every one of those files (the
test reports Annex IV point 2(g) asks to be "dated and signed by the responsible persons"); `signatures.json`
lists each signature with its signer, key, time and the files it covers. `verify_pack` needs nothing but the
pack: every file against `manifest.json`, the evidence digest recomputed from `evidence/`, every ledger
record's own hash, every signature against the key its sign-off pinned, and an approval over this evidence.
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from steward.ledger import LedgerError, Record, read_jsonl
from steward.signoff import latest, signatures
from steward.storage import sha256_file
from tasks.document.evidence import EvidenceError, digest_of

SIGNATURES = "signatures.json"
MANIFEST = "manifest.json"
EXCERPT = "ledger/excerpt.jsonl"
EVIDENCE = "evidence/"

NOT_A_PACK = "{path} is not an evidence pack: {reason}"
UNSAFE_MEMBER = "{path}: the zip holds {member!r}, a path outside the pack"
CHANGED = "{file}: its sha256 is not the manifest's (changed after the pack was written)"
MISSING = "{file}: listed in the manifest, missing from the pack"
UNLISTED = "{file}: in the pack but not in its manifest (added after it was written)"
DIGEST_DIFFERS = "evidence/ recomputes to digest {got}, the pack says {said}"
EDITED_RECORD = "ledger record {seq} in the excerpt does not match its own hash (edited)"
NOT_COVERED = "{model} is approved, but no verified approval signature covers this pack's evidence ({digest})"


def covered(records: list[Record], *, files: list[str], digest: str) -> list[dict[str, Any]]:
    """Each sign-off signature in `records`, verified, with the evidence files it covers: all of `files` when it
    signs `digest` and verifies, none otherwise."""
    return [
        asdict(s)
        | {"verified": s.problem is None, "covers": files if s.problem is None and s.evidence_digest == digest else []}
        for s in signatures(records)
    ]


@dataclass(frozen=True)
class PackCheck:
    """What `verify_pack` found: the evidence digest it recomputed, the signatures, and every problem."""

    model: str
    evidence_digest: str
    files: int
    signatures: list[dict[str, Any]]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_pack(path: Path) -> PackCheck:
    """Check the pack at `path` (its folder or its zip) offline; EvidenceError when it is no pack at all."""
    with _opened(path) as folder:
        try:
            manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
            listed = {name: entry["sha256"] for name, entry in manifest["files"].items()}
            records = read_jsonl(folder / EXCERPT)
        except (OSError, ValueError, KeyError, TypeError, LedgerError) as exc:
            raise EvidenceError(NOT_A_PACK.format(path=path, reason=exc)) from None
        present = {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}
    present.pop(MANIFEST, None)
    problems = [MISSING.format(file=name) for name in sorted(set(listed) - set(present))]
    problems += [UNLISTED.format(file=name) for name in sorted(set(present) - set(listed))]
    problems += [
        CHANGED.format(file=name) for name in sorted(set(listed) & set(present)) if listed[name] != present[name]
    ]
    evidence = {name.removeprefix(EVIDENCE): sha for name, sha in present.items() if name.startswith(EVIDENCE)}
    digest = digest_of(evidence)
    if digest != manifest.get("evidence_digest"):
        problems.append(DIGEST_DIFFERS.format(got=digest, said=manifest.get("evidence_digest")))
    problems += [EDITED_RECORD.format(seq=r.seq) for r in records if not r.intact()]
    found = covered(records, files=sorted(evidence), digest=digest)
    problems += [s["problem"] for s in found if s["problem"]]
    model = str(manifest.get("model", ""))
    state = latest(records, model=model) if records else None
    approvals = [s for s in found if s["covers"] and s["action"] == "approval.granted"]
    if state is not None and state.outcome == "approved" and not approvals:
        problems.append(NOT_COVERED.format(model=model, digest=digest))
    return PackCheck(model=model, evidence_digest=digest, files=len(present), signatures=found, problems=problems)


@contextmanager
def _opened(path: Path) -> Iterator[Path]:
    """The pack's folder: `path` itself, or a zip's members extracted to a temporary folder (none may escape it)."""
    if path.is_dir():
        yield path
        return
    if not zipfile.is_zipfile(path):
        raise EvidenceError(NOT_A_PACK.format(path=path, reason="neither a folder nor a zip"))
    with zipfile.ZipFile(path) as archive, tempfile.TemporaryDirectory(prefix="steward-pack-") as tmp:
        for member in archive.namelist():
            parts = PurePosixPath(member).parts
            if member.startswith("/") or ".." in parts or "\\" in member:
                raise EvidenceError(UNSAFE_MEMBER.format(path=path, member=member))
        archive.extractall(tmp)
        yield Path(tmp)

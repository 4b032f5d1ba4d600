"""Verified model bytes: what serves is what was approved.

A model is a directory in the BentoML model store (the pickled estimator, its pickled custom objects, the
model.yaml BentoML reads). At registration its manifest (every file's path relative to the directory and its
sha256, sorted by path) is signed by this instance's key as a `model-manifest` statement naming the version
(`name:vN`), its store tag and the manifest's digest. The seal (digest, files, signature, signer) is kept
twice: in the `model_seals` row of the version, and in the version's registration record in the ledger.

Before any load (the service, the monitor, each rollout step) `check` recomputes the manifest from the store
and compares it with both copies, and checks the signature with this instance's public key. So:

- a file of the model swapped or edited in the store (another model's pickle, code, one byte) changes the
  manifest: refused, naming the file;
- a registry row whose `model_tag` was UPDATEd to another model (or its `model_md5` or `data_md5`, the
  lineage a decision is logged with), or whose seal was rewritten, no longer matches its ledger registration
  record (read by subject, through the ledger's index): refused;
- a seal made with any other key (an attacker's, another instance's) does not verify: refused, naming both
  fingerprints.

Loading BentoML stays loading by tag after the check; the bytes could still change between the check and the
load (a race the attacker must win within milliseconds; the next load refuses them).

BentoML does not rewrite any file of a model directory on load (checked with `bentoml.sklearn.load_model` and
`custom_objects` on BentoML 1.4), so every file is in the manifest: none is exempt.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import JSON, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from steward.canonical import canonical_json
from steward.db import Base
from steward.errors import StewardError
from steward.keys import PublicKey, SigningKey
from steward.ledger import MODEL_REFUSED

if TYPE_CHECKING:
    from steward.ledger import Ledger, Record
    from steward.registry import ModelVersion, Registry

MANIFEST_KIND: Final = "model-manifest"
REFUSED_ACTOR: Final = "steward-integrity"

NO_SEAL = "model {ref} has no signed manifest (registered before model signing, or its seal was deleted): refused"
NO_REGISTRATION = "model {ref} has no registration record in the ledger to check its registry row against: refused"
EDITED_REGISTRATION = "model {ref}: its ledger registration record (seq {seq}) was edited (its hash no longer matches)"
ROW_DIFFERS = (
    "model {ref}: the registry's {field} is {value!r} but its ledger registration record's is {recorded!r} "
    "(the registry row was changed outside Steward)"
)
RECORDED_FIELDS: Final = ("model_tag", "model_md5", "data_md5")  # the row's lineage its registration record holds
SEAL_DIFFERS = (
    "model {ref}: the registry's recorded {field} differs from its ledger registration record "
    "(the registry row was changed outside Steward)"
)
SEAL_INCONSISTENT = "model {ref}: its recorded files do not add up to its recorded manifest digest"
OTHER_SIGNER = "model {ref}: its manifest is signed by {signer}, not by this instance's key {expected}: refused"
BAD_SIGNATURE = "model {ref}: the signature over its manifest does not verify with this instance's key {expected}"
NOT_IN_STORE = "model {ref}: its tag {tag!r} is not in the BentoML model store"
FILES_DIFFER = "model {ref} ({tag}) differs from what was signed at registration: {changes}"


class ModelRefused(StewardError, RuntimeError):
    """A model whose bytes or records do not verify: it is never loaded."""


class ModelSealRow(Base):
    """A version's signed manifest (one row per sealed version; a version without one is never loaded)."""

    __tablename__ = "model_seals"

    version_id: Mapped[int] = mapped_column(Integer, ForeignKey("model_versions.id"), primary_key=True)
    manifest: Mapped[str] = mapped_column(String(64))
    files: Mapped[dict[str, str]] = mapped_column(JSON)
    signature: Mapped[str] = mapped_column(String(200))
    signer: Mapped[str] = mapped_column(String(100))


@dataclass(frozen=True)
class Manifest:
    """A model directory's files, each with its sha256 (relative POSIX paths)."""

    files: dict[str, str]

    @property
    def digest(self) -> str:
        """sha256 of the canonical JSON of the files (sorted by path): what the signature names."""
        return hashlib.sha256(canonical_json(dict(sorted(self.files.items()))).encode()).hexdigest()

    def changes(self, found: Manifest) -> list[str]:
        """How `found` differs from this manifest, file by file (empty when they are the same)."""
        changed = [
            f"{name} changed"
            for name in sorted(self.files)
            if name in found.files and found.files[name] != self.files[name]
        ]
        missing = [f"{name} missing" for name in sorted(set(self.files) - set(found.files))]
        added = [f"{name} added" for name in sorted(set(found.files) - set(self.files))]
        return changed + missing + added


@dataclass(frozen=True)
class Seal:
    """A signed manifest, as recorded with the registry version and in its ledger registration record."""

    manifest: str
    files: dict[str, str]
    signature: str
    signer: str

    def payload(self) -> dict[str, Any]:
        return {
            "manifest": self.manifest,
            "files": dict(self.files),
            "signature": self.signature,
            "signer": self.signer,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Seal | None:
        try:
            return cls(
                manifest=str(payload["manifest"]),
                files={str(k): str(v) for k, v in dict(payload["files"]).items()},
                signature=str(payload["signature"]),
                signer=str(payload["signer"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


def manifest_of(directory: Path) -> Manifest:
    """The manifest of a model directory as it is on disk now (symlinks followed: their target's bytes count)."""
    files = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            files[path.relative_to(directory).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return Manifest(files)


def statement(*, ref: str, model_tag: str, manifest: str) -> dict[str, str]:
    """The fields of a `model-manifest` statement: which version, which store tag, which bytes."""
    return {"model": ref, "model_tag": model_tag, "manifest": manifest}


def seal(*, ref: str, model_tag: str, manifest: Manifest, key: SigningKey) -> Seal:
    """Sign `manifest` as the bytes of version `ref` stored under `model_tag`."""
    signature = key.sign(MANIFEST_KIND, statement(ref=ref, model_tag=model_tag, manifest=manifest.digest))
    return Seal(
        manifest=manifest.digest, files=dict(manifest.files), signature=signature, signer=key.public.fingerprint
    )


def verify(
    version: ModelVersion, *, seal: Seal | None, registered: Record | None, found: Manifest | None, key: PublicKey
) -> None:
    """Raise `ModelRefused`, naming the first thing that is wrong, unless `version`'s registry row, its ledger
    registration record, its signature and its bytes in the store (`found`; None: not there) all agree."""
    ref = version.ref
    if seal is None:
        raise ModelRefused(NO_SEAL.format(ref=ref))
    if registered is None:
        raise ModelRefused(NO_REGISTRATION.format(ref=ref))
    if not registered.intact():
        raise ModelRefused(EDITED_REGISTRATION.format(ref=ref, seq=registered.seq))
    for name in RECORDED_FIELDS:  # model_tag always; model_md5 from when registration recorded it too
        if name not in registered.payload and name != "model_tag":
            continue
        if (recorded_value := registered.payload.get(name)) != (value := getattr(version, name)):
            raise ModelRefused(ROW_DIFFERS.format(ref=ref, field=name, value=value, recorded=recorded_value))
    recorded = Seal.from_payload(registered.payload.get("seal") or {})
    for field in ("manifest", "files", "signature", "signer"):
        if recorded is None or getattr(recorded, field) != getattr(seal, field):
            raise ModelRefused(SEAL_DIFFERS.format(ref=ref, field=field))
    if Manifest(seal.files).digest != seal.manifest:
        raise ModelRefused(SEAL_INCONSISTENT.format(ref=ref))
    fields = statement(ref=ref, model_tag=version.model_tag, manifest=seal.manifest)
    if seal.signer != key.fingerprint:
        raise ModelRefused(OTHER_SIGNER.format(ref=ref, signer=seal.signer, expected=key.fingerprint))
    if not key.verifies(MANIFEST_KIND, fields, seal.signature):
        raise ModelRefused(BAD_SIGNATURE.format(ref=ref, expected=key.fingerprint))
    if found is None:
        raise ModelRefused(NOT_IN_STORE.format(ref=ref, tag=version.model_tag))
    if changes := Manifest(seal.files).changes(found):
        raise ModelRefused(FILES_DIFFER.format(ref=ref, tag=version.model_tag, changes=", ".join(changes)))


def check(ref: str, *, registry: Registry, key: PublicKey, directory_of: Callable[[str], Path | None]) -> ModelVersion:
    """`ref`'s registry version once its bytes (in `directory_of(tag)`, None: not in the store) and records
    verify (see `verify`); raises `ModelRefused` otherwise."""
    version = registry.get(ref)
    directory = directory_of(version.model_tag)
    found = manifest_of(directory) if directory is not None and directory.is_dir() else None
    verify(version, seal=registry.seal(version.id), registered=registry.registration(version.ref), found=found, key=key)
    return version


def refuse(ledger: Ledger, ref: str, *, reason: str, where: str, actor: str = REFUSED_ACTOR) -> Record:
    """Record that `ref` was refused at `where` (the service, the monitor, a rollout step) and why."""
    return ledger.append(actor=actor, action=MODEL_REFUSED, subject=ref, payload={"where": where, "reason": reason})

"""A model version's evidence pack: its frozen evidence, sign-off and ledger excerpt, every file with its sha256,
mapped to the EU AI Act's technical documentation (Annex IV, points 1-9) and instructions for use (Article 13).

`write_pack` lays the pack out as a folder and a zip beside it. A pack is never overwritten: an existing
non-empty folder or an existing zip is refused before anything is written, and the pack is built in a
temporary sibling renamed into place, so a failure leaves no half pack. Where Steward holds nothing for a
point, the pack says so as a gap rather than pointing at something that does not answer it.

Layout of `DIR/`: `index.html` (the offline page), `manifest.json` (every other file's sha256 and size),
`annex_iv.json`, `approvals.json`, `signatures.json` (which signature covers which report, pack_check.py),
`model.json` (the registry entry), `ledger/excerpt.jsonl`,
`ledger/verification.json`, and `evidence/` (the snapshot at its project-relative paths).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, fields
from datetime import datetime
from fnmatch import fnmatch
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from steward.layout import EVIDENCE_PAGE
from steward.ledger import (
    APPROVAL_DECLINED,
    APPROVAL_ESCALATED,
    APPROVAL_EXPIRED,
    APPROVAL_GRANTED,
    APPROVAL_REFUSED,
    APPROVAL_REQUESTED,
    APPROVAL_WITHDRAWN,
    Record,
    canonical_json,
)
from steward.registry import ModelVersion
from steward.signoff import latest
from steward.storage import Storage, sha256_file
from tasks.document.document import render
from tasks.document.evidence import EvidenceError, Snapshot, materialize
from tasks.document.pack_check import EXCERPT, MANIFEST, SIGNATURES, covered

SCHEMA_VERSION = 1
EVIDENCE = "evidence"
VERIFICATION = "ledger/verification.json"
APPROVALS = "approvals.json"
MODEL = "model.json"
ANNEX = "annex_iv.json"
INDEX = "index.html"

PACK_EXISTS = "{path} exists and is not empty: an evidence pack is never overwritten; choose a new --out"
ZIP_EXISTS = "{path} exists: an evidence pack is never overwritten; choose a new --out"
NOTHING_HELD = "Steward holds nothing for this point in this pack: none of {patterns} is in the evidence"
EXCERPT_SCOPE = (
    "Each record's hash is recomputed from its own prev_hash and contents. Records about other subjects sit "
    "between these in the full chain, so the links between them are not checked here: "
    "`steward ledger verify` checks the whole chain."
)


@dataclass(frozen=True)
class Pack:
    """A written pack: its folder, its zip, the sha256 of its manifest, and the points it leaves open."""

    folder: Path
    zip_path: Path
    digest: str
    gaps: list[str]


@dataclass(frozen=True)
class Point:
    """An Annex IV point (or Article 13) in our words, and the pack files that answer it (fnmatch per segment)."""

    key: str
    title: str
    covers: str
    patterns: tuple[str, ...] = ()
    gap: str | None = None

    @property
    def label(self) -> str:
        return f"Annex IV point {self.key}" if self.key.isdigit() else self.key


_R = f"{EVIDENCE}/reports"
_CARD = (f"{_R}/document/model_card.html", f"{_R}/document/model_card.md")
_IMPACT = (f"{_R}/document/impact_assessment.html", f"{_R}/document/impact_assessment.md")
_PARAMS = f"{EVIDENCE}/params.yaml"
_LOCK = f"{EVIDENCE}/dvc.lock"
_PERFORMANCE = (f"{_R}/evaluate.json", f"{_R}/calibration.png")
_FAIRNESS = (f"{_R}/fairness.json", f"{_R}/fairness/*.png")
_EXPLAIN = (f"{_R}/explain.json", f"{_R}/explain/*.png")
_ROBUSTNESS = (f"{_R}/robustness.json", f"{_R}/robustness/*.png")

POINTS: tuple[Point, ...] = (
    Point(
        "1",
        "General description: what the system is for, who provides it, which version this is",
        "Model card (details, intended and out-of-scope use) and the registry entry of this version.",
        (*_CARD, MODEL),
    ),
    Point(
        "2",
        "How it was developed: design choices, training data and its preparation, validation and testing",
        "Datasheet of the data version, the data contract results and Data Docs, raw-data bias, "
        "the pipeline lock (every input's hash) and the parameters.",
        (
            f"{_R}/document/datasheet.md",
            f"{_R}/validate.json",
            f"{_R}/prepare.json",
            f"{_R}/data_bias.json",
            f"{_R}/data_bias/*.png",
            f"{_R}/data_docs/*/index.html",
            _LOCK,
            _PARAMS,
            SIGNATURES,
        ),
    ),
    Point(
        "3",
        "How it performs and is controlled: capabilities and limits, accuracy for groups of people, "
        "foreseeable risks, human oversight",
        "Held-out performance, fairness by group and intersection with intervals, robustness, explanations "
        "and proxy detection, the impact assessment, and the human sign-off.",
        (*_PERFORMANCE, *_FAIRNESS, *_ROBUSTNESS, *_EXPLAIN, *_IMPACT, APPROVALS),
    ),
    Point(
        "4",
        "Why the chosen performance metrics are appropriate",
        "The held-out metrics and the gate's report: each tier threshold, the interval bound it is checked "
        "against, and the result; the tiers themselves are in params.yaml (governance).",
        (f"{_R}/evaluate.json", f"{_R}/gate.json", _PARAMS),
    ),
    Point(
        "5",
        "The risk management system",
        "Risk register and mitigation in the impact assessment, the gate's verdict, the mitigation report, "
        "and the sign-off.",
        (*_IMPACT, f"{_R}/gate.json", f"{_R}/mitigate.json", f"{_R}/mitigate/*.png", APPROVALS),
    ),
    Point(
        "6",
        "Changes made to the system through its lifecycle",
        "The ledger records of this version (verdicts, approvals, state transitions), the registry lineage "
        "and the pipeline lock.",
        (EXCERPT, VERIFICATION, MODEL, _LOCK),
    ),
    Point(
        "7",
        "Harmonised standards or other specifications applied",
        "",
        gap="Steward applies and records no standard: the provider lists the harmonised standards or other "
        "specifications it applied.",
    ),
    Point(
        "8",
        "The EU declaration of conformity",
        "",
        gap="The declaration of conformity is the provider's to draw up and sign; Steward does not produce it.",
    ),
    Point(
        "9",
        "How performance is evaluated after release (post-market monitoring plan)",
        "",
        gap="Not built yet: Steward has no post-market monitoring plan, and this run's params.yaml has no "
        "monitor section.",
    ),
    Point(
        "Article 13",
        "Instructions for use for deployers: intended purpose, accuracy and its limits, performance for "
        "groups of people, explanations of outputs, human oversight",
        "Model card (intended use, out-of-scope use, caveats), performance, fairness by group, robustness, "
        "explanations, and the sign-off.",
        (*_CARD, *_PERFORMANCE, *_FAIRNESS, *_ROBUSTNESS, *_EXPLAIN, APPROVALS),
    ),
)
MONITORING = Point(
    "9",
    POINTS[8].title,
    "The monitoring configuration of this run: the monitor section of params.yaml.",
    (_PARAMS,),
)


def _matches(path: str, pattern: str) -> bool:
    parts, wanted = path.split("/"), pattern.split("/")
    return len(parts) == len(wanted) and all(fnmatch(p, w) for p, w in zip(parts, wanted, strict=True))


def annex_iv(files: dict[str, str], *, monitored: bool) -> list[dict[str, Any]]:
    """Each point with the pack files (path → sha256) that address it, and its gap if it has one."""
    entries: list[dict[str, Any]] = []
    for point in POINTS:
        if point.key == MONITORING.key and monitored:
            point = MONITORING
        found = [{"path": p, "sha256": s} for p, s in files.items() if any(_matches(p, w) for w in point.patterns)]
        gap = point.gap or (None if found else NOTHING_HELD.format(patterns=", ".join(point.patterns)))
        entries.append(
            {
                "point": point.key,
                "label": point.label,
                "title": point.title,
                "covers": point.covers,
                "files": found,
                "gap": gap,
            }
        )
    return entries


def verification(records: list[Record]) -> dict[str, Any]:
    """Whether each record's hash recomputes from its own prev_hash and contents."""
    checked = [
        {"seq": r.seq, "ts": r.ts, "actor": r.actor, "action": r.action, "hash": r.hash, "hash_ok": r.intact()}
        for r in records
    ]
    return {"scope": EXCERPT_SCOPE, "all_ok": all(c["hash_ok"] for c in checked), "records": checked}


def sign_off_story(records: list[Record], *, digest: str) -> dict[str, Any]:
    """The sign-off story from the ledger; `digest_matches` says whether a named evidence digest is `digest`."""

    def entry(r: Record, *keys: str) -> dict[str, Any]:
        base = {"seq": r.seq, "ts": r.ts, "hash": r.hash, "action": r.action, "actor": r.actor}
        return base | {key: r.payload.get(key) for key in keys}

    def named(r: Record, *keys: str) -> dict[str, Any]:
        e = entry(r, *keys, "evidence_digest")
        return e | {"digest_matches": None if e["evidence_digest"] is None else e["evidence_digest"] == digest}

    def of(*actions: str) -> list[Record]:
        return [r for r in records if r.action in actions]

    state = latest(records, model=records[0].subject) if records else None

    requests = [
        named(r, "flow_run_id", "author", "tier", "policy", "evidence_page", "requested_at")
        for r in of(APPROVAL_REQUESTED)
    ]
    answers = [
        named(r, "decision", "approver", "approver_kind", "roles", "comment", "flow_run_id")
        for r in of(APPROVAL_GRANTED, APPROVAL_DECLINED)
    ]
    return {
        "requests": requests,
        "answers": answers,
        "refusals": [entry(r, "approver", "decision", "reason") for r in of(APPROVAL_REFUSED)],
        "timeouts": [
            entry(r) | {"payload": r.payload} for r in of(APPROVAL_ESCALATED, APPROVAL_EXPIRED, APPROVAL_WITHDRAWN)
        ],
        "outcome": state.outcome if state else None,
        "approved_by": list(state.progress.granted) if state and state.outcome == "approved" else [],
        "digest_mismatches": [e["seq"] for e in requests + answers if e["digest_matches"] is False],
    }


def model_entry(model: ModelVersion) -> dict[str, Any]:
    """The registry entry as plain JSON data, with its ref."""
    plain = {f.name: getattr(model, f.name) for f in fields(model)}
    return {"ref": model.ref} | {k: v.isoformat() if isinstance(v, datetime) else v for k, v in plain.items()}


# --- the I/O shell ---------------------------------------------------------------------------------


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")


def _hashes(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def _gate(evidence: Path) -> dict[str, Any]:
    """The verdict, tier and failed checks of the snapshot's gate report ("not run" without one)."""
    path = evidence / "reports/gate.json"
    gate: dict[str, Any] = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    verdict = gate.get("verdict") if gate.get("verdict") in ("pass", "fail") else "not run"
    failed = [check for check in gate.get("checks", []) if check.get("passed") is False]
    return {"verdict": verdict, "tier": gate.get("tier"), "failed": failed}


def _monitored(evidence: Path) -> bool:
    # The run's own params.yaml, read as evidence of how it was configured, not as this process's knobs.
    params = evidence / "params.yaml"
    loaded = yaml.safe_load(params.read_text(encoding="utf-8")) if params.is_file() else None
    return isinstance(loaded, dict) and bool(loaded.get("monitor"))


def _zip(folder: Path, dest: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                archive.write(path, arcname=path.relative_to(folder).as_posix())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_pack(model: ModelVersion, *, records: list[Record], snapshot: Snapshot, storage: Storage, out: Path) -> Pack:
    """Write the evidence pack of `model` to the folder `out` and the zip `out.zip` beside it.

    Args:
        records: the ledger records whose subject is `model.ref`, in seq order.
        snapshot: the evidence the model was signed off on.
    """
    out = out.absolute()
    zip_path = out.with_name(f"{out.name}.zip")
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise EvidenceError(PACK_EXISTS.format(path=out))
    if zip_path.exists():
        raise EvidenceError(ZIP_EXISTS.format(path=zip_path))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part"))
    try:
        points, manifest = _fill(tmp, model=model, records=records, snapshot=snapshot, storage=storage)
        _zip(tmp, zip_path)
        try:
            os.replace(tmp, out)
        except BaseException:
            zip_path.unlink(missing_ok=True)
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    gaps = [f"{p['label']}: {p['gap']}" for p in points if p["gap"]]
    return Pack(folder=out, zip_path=zip_path, digest=hashlib.sha256(manifest.encode("utf-8")).hexdigest(), gaps=gaps)


def _fill(
    folder: Path, *, model: ModelVersion, records: list[Record], snapshot: Snapshot, storage: Storage
) -> tuple[list[dict[str, Any]], str]:
    """Write every file of the pack into `folder`; returns the Annex IV points and the manifest text."""
    head = {"schema_version": SCHEMA_VERSION, "model": model.ref, "evidence_digest": snapshot.digest}
    evidence = materialize(snapshot, folder / EVIDENCE, storage=storage)
    entry = model_entry(model)
    _write(folder / MODEL, canonical_json(entry))
    _write(folder / EXCERPT, "".join(r.to_json() + "\n" for r in records))
    checked = verification(records)
    _write(folder / VERIFICATION, canonical_json(head | checked))
    signoff = sign_off_story(records, digest=snapshot.digest)
    _write(folder / APPROVALS, canonical_json(head | signoff))
    signed = covered(records, files=sorted(snapshot.files), digest=snapshot.digest)
    _write(folder / SIGNATURES, canonical_json(head | {"signatures": signed}))
    points = annex_iv(_hashes(folder), monitored=_monitored(evidence))
    _write(folder / ANNEX, canonical_json(head | {"points": points}))
    page = render(
        "evidence_pack.html.j2",
        model=entry,
        gate=_gate(evidence),
        signoff=signoff,
        ledger=checked,
        points=points,
        evidence_digest=snapshot.digest,
        files=_hashes(folder),
        run_page=f"{EVIDENCE}/{EVIDENCE_PAGE}",
        href=quote,
    )
    _write(folder / INDEX, page)
    files = {path: {"sha256": sha, "size": (folder / path).stat().st_size} for path, sha in _hashes(folder).items()}
    manifest = canonical_json(head | {"files": files})
    _write(folder / MANIFEST, manifest)
    return points, manifest

"""Register: put a trained model in the BentoML model store with its lineage, and in the registry with its
manifest signed by this instance's key (tasks/model/integrity.py); record the gate's verdict on it, and reject
it there when the gate failed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from steward.keys import SigningKey
from steward.ledger import GATE_VERDICT, Ledger
from steward.registry import ModelVersion, Registry, State
from steward.settings import Settings
from steward.storage import Storage
from tasks.document import evidence
from tasks.model.integrity import stored_manifest
from tasks.signoff.policy import resource

GATE_ACTOR = "steward-gate"  # the ledger's actor for what the gate decides


def lineage_labels(
    *, data_md5: str, params_hash: str, git_commit: str | None, flow_run_id: str | None
) -> dict[str, str]:
    """BentoML labels (strings only) recording where a model came from."""
    return {
        "data_md5": data_md5,
        "params_hash": params_hash,
        "git_commit": git_commit or "none",
        "flow_run_id": flow_run_id or "none",
    }


def save_to_model_store(
    model: Any,
    *,
    name: str,
    labels: dict[str, str],
    metadata: dict[str, Any],
    reference: dict[str, Any] | None = None,
) -> str:
    """Save a scikit-learn model in the BentoML store (BENTOML_HOME), with its monitoring `reference` as a
    custom object if given; returns its pinned tag."""
    import bentoml

    objects = {"reference": reference} if reference is not None else None
    saved = bentoml.sklearn.save_model(name, model, labels=labels, metadata=metadata, custom_objects=objects)
    return str(saved.tag)


def stored_reference(model_tag: str) -> dict[str, Any] | None:
    """The monitoring reference stored with a model (None for a model saved without one)."""
    import bentoml

    reference = bentoml.models.get(model_tag).custom_objects.get("reference")
    return dict(reference) if reference is not None else None


@task(name="register-candidate", retries=2, retry_delay_seconds=[2, 5], cache_policy=NO_CACHE)
def register_candidate(
    *,
    model_file: Path,
    model_md5: str,
    registry: Registry,
    name: str,
    data_md5: str,
    params_hash: str,
    git_commit: str | None,
    flow_run_id: str | None,
    metrics: dict[str, Any],
    signer: SigningKey,
    reference_file: Path | None = None,
) -> ModelVersion:
    """Store the model with its lineage (and its monitoring reference, if the file is given) and enter it in
    the registry as a candidate, its stored files' manifest signed by `signer` (the instance key): every
    loader checks the bytes against it before unpickling them.

    The same model bytes trained on the same data are registered once: a re-run that changed
    nothing returns the existing version.
    """
    import joblib

    existing = registry.find(name=name, model_md5=model_md5, data_md5=data_md5)
    if existing is not None:
        return existing
    labels = lineage_labels(data_md5=data_md5, params_hash=params_hash, git_commit=git_commit, flow_run_id=flow_run_id)
    reference = json.loads(reference_file.read_text()) if reference_file and reference_file.is_file() else None
    tag = save_to_model_store(joblib.load(model_file), name=name, labels=labels, metadata=metrics, reference=reference)
    return registry.register(
        name=name,
        model_tag=tag,
        model_md5=model_md5,
        data_md5=data_md5,
        params_hash=params_hash,
        git_commit=git_commit,
        flow_run_id=flow_run_id,
        metrics=metrics,
        manifest=stored_manifest(tag),
        signer=signer,
    )


@task(name="act-on-verdict", cache_policy=NO_CACHE)
def act_on_verdict(
    model: ModelVersion,
    gate: dict[str, Any],
    *,
    registry: Registry,
    ledger: Ledger,
    storage: Storage,
    settings: Settings,
) -> ModelVersion:
    """Record the verdict with the digest of its evidence (once per evidence); a failed gate rejects the
    candidate and emits `steward.gate.failed`."""
    snap = evidence.snapshot(settings.project_dir, storage=storage)
    verdict = {key: gate.get(key) for key in ("verdict", "tier", "reasons")} | {"evidence_digest": snap.digest}
    recorded = ledger.records(subject=model.ref, actions=(GATE_VERDICT,))
    if not any(r.payload.get("evidence_digest") == snap.digest for r in recorded):
        ledger.append(actor=GATE_ACTOR, action=GATE_VERDICT, subject=model.ref, payload=verdict)
    if gate.get("verdict") == "pass" or model.state is not State.CANDIDATE:
        return model
    rejected = registry.transition(model.id, State.REJECTED, actor=GATE_ACTOR)
    emit_event(
        event="steward.gate.failed",
        resource=resource(model.ref),
        payload={"tier": gate.get("tier"), "reasons": gate.get("reasons", [])},
    )
    return rejected

"""The model store's side of verified model bytes (steward/model_integrity.py): where a tag's files are, their
manifest at registration, and the check every loader runs before it unpickles anything, which records a
refusal in the ledger before it raises."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from sqlalchemy import Engine

from steward.keys import instance_key
from steward.ledger import Ledger
from steward.model_integrity import REFUSED_ACTOR, Manifest, ModelRefused, check, manifest_of, refuse
from steward.registry import ModelVersion, Registry, State
from steward.rollouts import Rollouts
from steward.routing import model_name_of
from steward.settings import Settings

NO_STORE_DIR = "model tag {tag!r} is not in the BentoML model store"


def store_dir(model_tag: str) -> Path | None:
    """The directory of `model_tag` in the BentoML model store (BENTOML_HOME), None if it is not there.
    Reading it parses only model.yaml (YAML, never a pickle)."""
    import bentoml
    from bentoml.exceptions import BentoMLException

    try:
        return Path(bentoml.models.get(model_tag).path)
    except (BentoMLException, ValueError):
        return None


def stored_manifest(model_tag: str) -> Manifest:
    """The manifest of `model_tag`'s files as saved (registration signs it)."""
    directory = store_dir(model_tag)
    if directory is None:
        raise ModelRefused(NO_STORE_DIR.format(tag=model_tag))
    return manifest_of(directory)


def verified(
    ref: str, *, registry: Registry, ledger: Ledger, settings: Settings, where: str, actor: str = REFUSED_ACTOR
) -> ModelVersion:
    """`ref`'s version once its bytes and records verify with this instance's key; otherwise a `model.refused`
    ledger record (`where`: who refused it) and `ModelRefused`."""
    try:
        return check(ref, registry=registry, key=instance_key(settings).public, directory_of=store_dir)
    except ModelRefused as refused:
        refuse(ledger, ref, reason=str(refused), where=where, actor=actor)
        raise


def verified_or_withdrawn(ref: str, *, moves: Rollouts, settings: Settings, where: str, actor: str) -> ModelVersion:
    """As `verified`; a refused model that mirrors or takes traffic (the canary or shadow of its routing, or in
    those states) is also withdrawn at once (routing first, then rolled_back), so nothing routes to it."""
    try:
        return verified(ref, registry=moves.registry, ledger=moves.ledger, settings=settings, where=where, actor=actor)
    except ModelRefused as refused:
        routing = moves.table.get(model_name_of(ref))
        if ref in (routing.canary, routing.shadow) or moves.registry.get(ref).state in (State.SHADOW, State.CANARY):
            moves.withdraw(ref, actor=actor, reason=f"{where}: {refused}")
        raise


def verifying_rollouts(engine: Engine, ledger: Ledger, settings: Settings, *, where: str, actor: str) -> Rollouts:
    """The rollout moves with this instance's byte check for the models a rollback restores: one that does not
    verify is refused in the ledger (`where`: who refused it) before it goes back into routing."""
    check_bytes = partial(
        verified, registry=Registry(engine, ledger=ledger), ledger=ledger, settings=settings, where=where, actor=actor
    )
    return Rollouts(engine, ledger, verify=check_bytes)

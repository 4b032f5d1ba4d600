"""Whose keys a sign-off uses: the key that opens it, and the keys it pins for each approver (the policy it
runs under is steward.governance's).

A run is opened by its author's key (`STEWARD_KEY_FILE`), or, when none is set (a scheduled deployment run), by
this instance's own key, created under STEWARD_HOME/keys on first use; an instance key is registered to no
approver, so it never approves. Demo identities (`demo: true`) have keys only in the demo's STEWARD_HOME
(keys/demo/NAME), created by `steward run`: a non-demo run pins none for them.
"""

from __future__ import annotations

from pathlib import Path

from steward.governance import GovernanceParams
from steward.keys import Signer, SigningKey, instance_key, own_key
from steward.settings import Settings
from steward.ssh_agent import load_signer

NO_KEY = (
    "no signing key: give --key FILE or set STEWARD_KEY_FILE to your Ed25519 private key "
    "(its public line must be registered under your name in governance.approvers; `steward keys new FILE` makes one)"
)
DEMO = "demo"


def opening_key(settings: Settings) -> Signer:
    """The key that opens a run's sign-off: its author's, else this instance's."""
    if settings.key_file is not None:
        return load_signer(settings.key_file)
    return instance_key(settings)


def answering_key(settings: Settings, key: Path | None = None) -> Signer:
    """The approver's own key: `key`, else STEWARD_KEY_FILE; never the instance's."""
    path = key or settings.key_file
    if path is None:
        raise ValueError(NO_KEY)
    return load_signer(path)


def demo_key(settings: Settings, name: str) -> SigningKey:
    """A demo identity's key in this (demo) STEWARD_HOME, created on first use."""
    return own_key(settings.keys_dir / DEMO / name, comment=f"{name} (demo identity)")


def pinned_keys(governance: GovernanceParams, settings: Settings, *, demo: bool) -> dict[str, list[str]]:
    """Each approver's public keys as a sign-off pins them: the registered ones, and for a demo run the demo
    identities' keys of this STEWARD_HOME (created if missing)."""
    pinned: dict[str, list[str]] = {}
    for name, approver in governance.approvers.items():
        if approver.demo:
            pinned[name] = [demo_key(settings, name).public.openssh] if demo else []
        else:
            pinned[name] = list(approver.public_keys)
    return pinned

"""`steward policy adopt` and `steward policy show`: the governance policy sign-offs run under.

params.yaml's `governance:` section (or another YAML file holding one) is a proposal; a policy owner puts it in
force by signing it (steward/policy_in_force.py). A run never reads its own working tree's copy for sign-off."""

from __future__ import annotations

from pathlib import Path

import typer
import yaml

from flows.cli.common import _fail, console
from steward.errors import StewardError
from steward.settings import Settings

PROPOSAL_NOT_FOUND = "{path} has no `governance:` section (a policy proposal is params.yaml's, or a file like it)"


def policy_adopt(
    proposal: Path | None = typer.Option(
        None, "--from", help="A YAML file whose `governance:` section is the policy to adopt (default: params.yaml)."
    ),
    key: Path | None = typer.Option(
        None, "--key", help="Your private key as a policy owner (default: STEWARD_KEY_FILE)."
    ),
    actor: str | None = typer.Option(None, "--as", help="Your name in the ledger (default: STEWARD_USER)."),
) -> None:
    """Put a governance policy in force, signed by an owner of the one in force (the first: by an owner it names)."""
    from pydantic import ValidationError

    from steward.anchor import anchored
    from steward.db import make_engine
    from steward.governance import GovernanceParams
    from steward.policy_in_force import adopt
    from steward.ssh_agent import load_signer

    settings = Settings()
    proposal = proposal or settings.project_dir / "params.yaml"
    try:
        document = yaml.safe_load(proposal.read_text()) if proposal.is_file() else None
        if not isinstance(document, dict) or not isinstance(document.get("governance"), dict):
            raise StewardError(PROPOSAL_NOT_FOUND.format(path=proposal))
        try:
            governance = GovernanceParams.model_validate(document["governance"])
        except ValidationError as exc:
            raise StewardError(f"{proposal}: governance: {exc}") from None
        path = key or settings.key_file
        if path is None:
            raise StewardError("no signing key: give --key FILE or set STEWARD_KEY_FILE to a policy owner's key")
        engine = make_engine(settings.db_url)
        signer = load_signer(path)
        policy = adopt(engine, governance, signer, actor=actor or settings.user, ledger=anchored(engine, settings))
    except StewardError as exc:
        _fail(exc)
        return
    console.print(
        f"policy {policy.digest[:16]} in force (ledger record {policy.seq}), adopted by {policy.signer}",
        highlight=False,
    )


def policy_show() -> None:
    """The policy in force: its digest, who adopted it, its owners and floors, and whether params.yaml proposes it."""
    from steward.db import make_engine
    from steward.governance import policy_digest
    from steward.keys import fingerprints
    from steward.params import load_params
    from steward.policy_in_force import in_force

    settings = Settings()
    try:
        policy = in_force(make_engine(settings.db_url))
        if policy is None:
            console.print("no governance policy in force (`steward policy adopt --key OWNER_KEY`)")
            return
        proposal = load_params(settings.project_dir / "params.yaml").governance
    except StewardError as exc:
        _fail(exc)
        return
    governance = policy.governance
    kind = "a demo policy (this is a demo home)" if policy.demo else "a real policy"
    console.print(f"policy {policy.digest} in force since ledger record {policy.seq}: {kind}", highlight=False)
    console.print(f"adopted by {policy.signer}; owners {', '.join(fingerprints(governance.owners))}", highlight=False)
    floors = ", ".join(f"{name} {tier}" for name, tier in sorted(governance.floors.items())) or "none"
    console.print(f"default floor {governance.risk_tier}; use case floors: {floors}", highlight=False)
    same = policy_digest(proposal.model_copy(update={"owners": governance.owners})) == policy.digest
    console.print(f"params.yaml's governance section {'is' if same else 'is not'} this policy", highlight=False)

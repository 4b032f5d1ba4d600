"""`steward policy adopt` and `steward policy show` on a real database under a temporary STEWARD_HOME."""

import yaml
from typer.testing import CliRunner

from flows.cli import app
from steward.keys import new_key


def _proposal(tmp_path, owner, **governance):
    path = tmp_path / "proposal.yaml"
    section = {"owners": [owner.public.openssh], "signoff": {"minimal": {}, "limited": {}, "high": {}}} | governance
    path.write_text(yaml.safe_dump({"governance": section}))
    return path


def _out(result):
    return " ".join(result.output.split())


def test_an_owner_adopts_and_show_names_the_policy_in_force(steward_home, tmp_path):
    olga = new_key(tmp_path / "olga")
    proposal = _proposal(tmp_path, olga)
    adopted = CliRunner().invoke(
        app, ["policy", "adopt", "--from", str(proposal), "--key", str(tmp_path / "olga"), "--as", "olga"]
    )
    assert adopted.exit_code == 0, adopted.output
    assert f"in force (ledger record 1), adopted by {olga.public.fingerprint}" in _out(adopted)
    shown = CliRunner().invoke(app, ["policy", "show"])
    assert shown.exit_code == 0 and "in force since ledger record 1: a real policy" in _out(shown), shown.output
    assert f"owners {olga.public.fingerprint}" in _out(shown)


def test_a_non_owner_and_a_bad_proposal_are_refused_by_name(steward_home, tmp_path):
    olga, mallory = new_key(tmp_path / "olga"), new_key(tmp_path / "mallory")
    proposal = _proposal(tmp_path, olga)
    refused = CliRunner().invoke(app, ["policy", "adopt", "--from", str(proposal), "--key", str(tmp_path / "mallory")])
    assert refused.exit_code == 1 and f"signed by {mallory.public.fingerprint}, not by an owner" in _out(refused)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"governance": {"risk_tier": "extreme", "owners": [olga.public.openssh]}}))
    invalid = CliRunner().invoke(app, ["policy", "adopt", "--from", str(bad), "--key", str(tmp_path / "olga")])
    assert invalid.exit_code == 1 and "risk_tier" in _out(invalid) and str(bad) in _out(invalid)
    empty = tmp_path / "empty.yaml"
    empty.write_text("train: {}\n")
    missing = CliRunner().invoke(app, ["policy", "adopt", "--from", str(empty), "--key", str(tmp_path / "olga")])
    assert missing.exit_code == 1 and "has no `governance:` section" in _out(missing)
    assert "no governance policy in force" in _out(CliRunner().invoke(app, ["policy", "show"]))

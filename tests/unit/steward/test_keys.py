"""Keys and signed statements, checked against OpenSSH's own tools (ssh-keygen) where they overlap."""

from __future__ import annotations

import shutil
import stat
import subprocess

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from steward.keys import KeyFileError, PublicKey, load_signing_key, new_key

FIELDS = {"model": "credit-risk:v3", "decision": "approve", "evidence_digest": "ab" * 32, "n": 2}
needs_ssh_keygen = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen not installed")


def _ssh_keygen(path, kind="ed25519"):
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "kim@bank", "-f", str(path)], check=True)


@needs_ssh_keygen
def test_the_fingerprint_is_the_one_ssh_keygen_prints(tmp_path):
    key = new_key(tmp_path / "kim", comment="kim@bank")
    printed = subprocess.run(["ssh-keygen", "-l", "-f", str(tmp_path / "kim.pub")], capture_output=True, text=True)
    assert printed.stdout.split()[1] == key.public.fingerprint
    assert printed.stdout.split()[2] == "kim@bank"


@needs_ssh_keygen
def test_a_key_ssh_keygen_made_signs_and_its_public_line_verifies(tmp_path):
    _ssh_keygen(tmp_path / "id_ed25519")
    signer = load_signing_key(tmp_path / "id_ed25519")
    public = PublicKey.from_text((tmp_path / "id_ed25519.pub").read_text())
    signature = signer.sign("approval", FIELDS)
    assert public.verifies("approval", FIELDS, signature)
    assert public.verifies("approval", dict(reversed(FIELDS.items())), signature)  # the same statement
    pem = public.key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    assert PublicKey.from_text(pem.decode()).fingerprint == public.fingerprint


def test_a_signature_counts_for_nothing_else(tmp_path):
    signer, other = new_key(tmp_path / "a"), new_key(tmp_path / "b")
    signature = signer.sign("approval", FIELDS)
    assert signer.public.verifies("approval", FIELDS, signature)
    assert not signer.public.verifies("approval", {**FIELDS, "decision": "reject"}, signature)
    assert not signer.public.verifies("approval", {**FIELDS, "extra": 1}, signature)
    assert not signer.public.verifies("checkpoint", FIELDS, signature)  # another kind of statement
    assert not other.public.verifies("approval", FIELDS, signature)  # another key
    assert not signer.public.verifies("approval", FIELDS, signature[:-8])
    assert not signer.public.verifies("approval", FIELDS, "not base64!")
    assert not signer.public.verifies("approval", FIELDS, "")


def test_a_new_key_is_private_and_never_overwritten(tmp_path):
    key = new_key(tmp_path / "keys" / "me", comment="me")
    assert stat.S_IMODE((tmp_path / "keys" / "me").stat().st_mode) == 0o600
    assert load_signing_key(tmp_path / "keys" / "me").public == key.public
    before = (tmp_path / "keys" / "me").read_bytes()
    with pytest.raises(KeyFileError, match="exists: a key is never overwritten"):
        new_key(tmp_path / "keys" / "me")
    assert (tmp_path / "keys" / "me").read_bytes() == before


@needs_ssh_keygen
def test_keys_of_another_type_and_unreadable_files_are_refused_naming_what_is_wrong(tmp_path):
    _ssh_keygen(tmp_path / "ecdsa", kind="ecdsa")
    with pytest.raises(KeyFileError, match=r"not an unencrypted Ed25519 private key.*it is an EC key"):
        load_signing_key(tmp_path / "ecdsa")
    with pytest.raises(KeyFileError, match=r"not an Ed25519 public key.*it is an EC key"):
        PublicKey.from_text((tmp_path / "ecdsa.pub").read_text(), source="kim")
    with pytest.raises(KeyFileError, match=r"^kim: not an Ed25519 public key"):
        PublicKey.from_text("ssh-ed25519 bm90IGEga2V5", source="kim")
    with pytest.raises(KeyFileError, match="no such key file"):
        load_signing_key(tmp_path / "missing")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", str(tmp_path / "locked")], check=True)
    with pytest.raises(KeyFileError, match="not an unencrypted"):
        load_signing_key(tmp_path / "locked")

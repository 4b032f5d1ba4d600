"""Identities as keys: Ed25519 key pairs, their fingerprints, and signatures over statements.

A person (an approver, a run's author, an administrator) or a Steward instance is a key pair; the governance
policy maps public keys to names and roles. Keys are the ones people already have: a public key is an OpenSSH
line (`ssh-ed25519 AAAA... comment`, what `ssh-keygen -t ed25519` writes) or a PEM block, and a private key is
an OpenSSH or PKCS#8 PEM file. A fingerprint is the one `ssh-keygen -l` prints (`SHA256:` and the unpadded
base64 of the SHA-256 of the key's SSH encoding), so a person can check theirs with the tool they know.

What is signed is a statement: a kind (what the signer decides, e.g. `approval`) and a JSON object of fields.
The signed bytes are a domain-separation prefix naming the kind, then the canonical JSON of the fields, so a
signature over one kind of statement never counts as another, and the same fields always give the same bytes
on every machine: a signature is re-verified offline from the recorded fields alone.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from steward.canonical import canonical_json
from steward.errors import StewardError

if TYPE_CHECKING:
    from steward.settings import Settings

DOMAIN = "steward-statement-v1"
NOT_A_PUBLIC_KEY = "{source}: not an Ed25519 public key (an `ssh-ed25519 AAAA...` line or a PEM block): {reason}"
NOT_A_PRIVATE_KEY = "{path}: not an unencrypted Ed25519 private key (OpenSSH or PKCS#8 PEM): {reason}"
NO_KEY_FILE = "{path}: no such key file (create one with `steward keys new {path}` or `ssh-keygen -t ed25519`)"
KEY_EXISTS = "{path} exists: a key is never overwritten (move it away first)"
BAD_SIGNATURE_TEXT = "the signature is not base64 text of 64 bytes"


class KeyFileError(StewardError, ValueError):
    """A key that cannot be read, or a key file that would be overwritten."""


@dataclass(frozen=True)
class PublicKey:
    """An Ed25519 public key, as an OpenSSH line and a fingerprint."""

    key: Ed25519PublicKey

    @classmethod
    def from_text(cls, text: str, *, source: str = "public key") -> PublicKey:
        """An `ssh-ed25519` line (its comment ignored) or a PEM `PUBLIC KEY` block."""
        data = text.strip().encode("ascii", errors="replace")
        try:
            if data.startswith(b"-----BEGIN"):
                key = serialization.load_pem_public_key(data)
            else:
                key = serialization.load_ssh_public_key(b" ".join(data.split()[:2]))
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise KeyFileError(NOT_A_PUBLIC_KEY.format(source=source, reason=exc)) from None
        if not isinstance(key, Ed25519PublicKey):
            raise KeyFileError(NOT_A_PUBLIC_KEY.format(source=source, reason=_other(key)))
        return cls(key)

    @property
    def openssh(self) -> str:
        """The `ssh-ed25519 AAAA...` line (no comment)."""
        return self.key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()

    @property
    def fingerprint(self) -> str:
        """`SHA256:...`, as `ssh-keygen -l` prints it."""
        blob = base64.b64decode(self.openssh.split()[1])
        return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")

    def verifies(self, kind: str, fields: dict[str, Any], signature: str) -> bool:
        """Whether `signature` (base64) is this key's signature over the statement (`kind`, `fields`)."""
        try:
            raw = base64.b64decode(signature.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        if len(raw) != 64:
            return False
        try:
            self.key.verify(raw, statement_bytes(kind, fields))
        except InvalidSignature:
            return False
        return True


class Signer(Protocol):
    """What signs a statement: a key file (`SigningKey`) or a key in ssh-agent (`steward.ssh_agent.AgentKey`)."""

    @property
    def public(self) -> PublicKey: ...

    def sign(self, kind: str, fields: dict[str, Any]) -> str: ...


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 private key: signs statements."""

    key: Ed25519PrivateKey

    @property
    def public(self) -> PublicKey:
        return PublicKey(self.key.public_key())

    def sign(self, kind: str, fields: dict[str, Any]) -> str:
        """The base64 signature over the statement (`kind`, `fields`)."""
        return base64.b64encode(self.key.sign(statement_bytes(kind, fields))).decode()


def own_key(path: Path, *, comment: str) -> SigningKey:
    """The key at `path`, created there on first use (an instance's key, a demo identity's)."""
    return load_signing_key(path) if path.exists() else new_key(path, comment=comment)


def instance_key(settings: Settings) -> SigningKey:
    """This Steward instance's own key (STEWARD_HOME/keys/instance, created on first use): it opens scheduled
    runs' sign-offs, signs ledger checkpoints and model manifests, and is registered to no approver."""
    return own_key(settings.keys_dir / "instance", comment=f"steward instance {settings.state_dir}")


def readable(lines: list[str]) -> list[PublicKey]:
    """The public keys among `lines` that can be read (an unreadable one verifies nothing)."""
    found = []
    for line in lines:
        try:
            found.append(PublicKey.from_text(line))
        except KeyFileError:
            continue
    return found


def fingerprints(lines: list[str]) -> list[str]:
    """The fingerprints of the readable public keys among `lines`."""
    return [key.fingerprint for key in readable(lines)]


def statement_bytes(kind: str, fields: dict[str, Any]) -> bytes:
    """What a signature covers: the domain, the kind, and the canonical JSON of the fields."""
    if not kind or "\n" in kind:
        raise ValueError(f"a statement kind is one non-empty line, not {kind!r}")
    return f"{DOMAIN}\n{kind}\n{canonical_json(fields)}".encode()


def load_signing_key(path: Path) -> SigningKey:
    """The private key in `path` (OpenSSH, as `ssh-keygen -t ed25519 -N ''` writes it, or PKCS#8 PEM)."""
    if not path.is_file():
        raise KeyFileError(NO_KEY_FILE.format(path=path))
    data = path.read_bytes()
    key: object
    try:
        if b"OPENSSH PRIVATE KEY" in data:
            key = serialization.load_ssh_private_key(data, password=None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(NOT_A_PRIVATE_KEY.format(path=path, reason=exc)) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(NOT_A_PRIVATE_KEY.format(path=path, reason=_other(key)))
    return SigningKey(key)


def new_key(path: Path, *, comment: str = "") -> SigningKey:
    """A new key pair: the private key at `path` (OpenSSH format, mode 0600) and the public line at
    `path` + `.pub`, as `ssh-keygen -t ed25519` lays them out. An existing file is never overwritten."""
    public_path = path.with_name(path.name + ".pub")
    for target in (path, public_path):
        if target.exists():
            raise KeyFileError(KEY_EXISTS.format(path=target))
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(private)
    signing = SigningKey(key)
    public_path.write_text(f"{signing.public.openssh} {comment}".rstrip() + "\n")
    return signing


def _other(key: object) -> str:
    """What a key of another algorithm is, for an error (`an EC key`, `an RSA key`)."""
    kind = type(key).__name__.lstrip("_").replace("Private", "").replace("Public", "").removesuffix("Key")
    return f"it is {'an' if kind[:1] in 'AEIOR' else 'a'} {kind or 'unknown'} key"

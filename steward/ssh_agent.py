"""Signing with a key ssh-agent holds: the private key never leaves the agent (a hardware token's agent works
the same way), as git signs commits when `user.signingKey` names a public key file.

The agent speaks a small binary protocol on the Unix socket SSH_AUTH_SOCK (draft-miller-ssh-agent): every
message is a uint32 length and a type byte; strings are a uint32 length and bytes. Steward asks for the
identities (11 → 12) to check the key is there, then for one signature (13 → 14). An Ed25519 signature is
deterministic and covers exactly the bytes sent, so the agent's signature over a statement is the one the
key file would give, and verifies the same way.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steward.keys import KeyFileError, PublicKey, Signer, load_signing_key, statement_bytes

REQUEST_IDENTITIES, IDENTITIES_ANSWER, SIGN_REQUEST, SIGN_RESPONSE = 11, 12, 13, 14
TIMEOUT_SECONDS = 10.0

NO_AGENT = "{key} is a public key: signing with it needs ssh-agent, and SSH_AUTH_SOCK is not set"
AGENT_UNREACHABLE = "ssh-agent at {path} does not answer: {error}"
NOT_IN_AGENT = "ssh-agent at {path} does not hold key {fingerprint} (add it with `ssh-add PRIVATE_KEY_FILE`)"
AGENT_REFUSED = "ssh-agent at {path} refused to sign with {fingerprint} (message type {kind})"
BAD_ANSWER = "ssh-agent at {path} answered something that is not an Ed25519 signature"


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _read_string(data: bytes, at: int) -> tuple[bytes, int]:
    (length,) = struct.unpack_from(">I", data, at)
    end = at + 4 + length
    if end > len(data):
        raise ValueError("a string runs past the end of the message")
    return data[at + 4 : end], end


def _blob(key: PublicKey) -> bytes:
    """The key's SSH wire encoding (what the agent names keys by)."""
    return base64.b64decode(key.openssh.split()[1])


def _exchange(path: str, message: bytes) -> bytes:
    """Send one message to the agent and return its answer (type byte first)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(TIMEOUT_SECONDS)
            conn.connect(path)
            conn.sendall(_string(message))
            head = _receive(conn, 4)
            (length,) = struct.unpack(">I", head)
            return _receive(conn, length)
    except OSError as exc:
        raise KeyFileError(AGENT_UNREACHABLE.format(path=path, error=exc)) from None


def _receive(conn: socket.socket, size: int) -> bytes:
    chunks = b""
    while len(chunks) < size:
        chunk = conn.recv(size - len(chunks))
        if not chunk:
            raise OSError("the agent closed the connection mid-answer")
        chunks += chunk
    return chunks


def _identities(path: str) -> list[bytes]:
    answer = _exchange(path, bytes([REQUEST_IDENTITIES]))
    if not answer or answer[0] != IDENTITIES_ANSWER:
        raise KeyFileError(AGENT_UNREACHABLE.format(path=path, error=f"message type {answer[:1].hex() or 'none'}"))
    (count,) = struct.unpack_from(">I", answer, 1)
    at, blobs = 5, []
    for _ in range(count):
        blob, at = _read_string(answer, at)
        _comment, at = _read_string(answer, at)
        blobs.append(blob)
    return blobs


@dataclass(frozen=True)
class AgentKey:
    """A key held by ssh-agent: signs statements as a key file does (`steward.keys.SigningKey`)."""

    public: PublicKey
    socket_path: str

    def sign(self, kind: str, fields: dict[str, Any]) -> str:
        """The base64 Ed25519 signature over the statement (`kind`, `fields`), made by the agent."""
        request = bytes([SIGN_REQUEST]) + _string(_blob(self.public)) + _string(statement_bytes(kind, fields))
        answer = _exchange(self.socket_path, request + struct.pack(">I", 0))
        if not answer or answer[0] != SIGN_RESPONSE:
            kind_byte = answer[0] if answer else "none"
            raise KeyFileError(
                AGENT_REFUSED.format(path=self.socket_path, fingerprint=self.public.fingerprint, kind=kind_byte)
            )
        try:
            signature, _ = _read_string(answer, 1)
            algorithm, at = _read_string(signature, 0)
            raw, _ = _read_string(signature, at)
        except (ValueError, struct.error):
            raise KeyFileError(BAD_ANSWER.format(path=self.socket_path)) from None
        if algorithm != b"ssh-ed25519" or len(raw) != 64:
            raise KeyFileError(BAD_ANSWER.format(path=self.socket_path))
        return base64.b64encode(raw).decode()


def agent_key(public: PublicKey, *, source: str, socket_path: str | None = None) -> AgentKey:
    """The agent's handle on `public` (read from `source`), checked to be in the agent at SSH_AUTH_SOCK."""
    path = socket_path or os.environ.get("SSH_AUTH_SOCK")
    if not path:
        raise KeyFileError(NO_AGENT.format(key=source))
    if _blob(public) not in _identities(path):
        raise KeyFileError(NOT_IN_AGENT.format(path=path, fingerprint=public.fingerprint))
    return AgentKey(public=public, socket_path=path)


def load_signer(path: Path) -> Signer:
    """The key a person signs with: the private key in `path`, or, when `path` holds a public key (a `.pub`
    line, as git's `user.signingKey` may name), that key in ssh-agent."""
    if path.is_file() and path.stat().st_size < 16_384:
        text = path.read_text(errors="replace").strip()
        if text.startswith(("ssh-ed25519 ", "-----BEGIN PUBLIC KEY-----")):
            return agent_key(PublicKey.from_text(text, source=str(path)), source=str(path))
    return load_signing_key(path)

"""How a system of record proves that a /feedback is its own: an HMAC-SHA256 of the exact request body under the
feedback key, sent as `X-Steward-Signature: sha256=<64 hex digits>` (the service checks it in deployments/guards.py
before the body is parsed, in constant time).

An HMAC rather than a bearer token, because it binds the payload: a token lifted from one request (a proxy's log, a
debugging dump) authorises any body, an outcome of the attacker's choosing for any request id; a signature lifted
from one request authorises only that very body, and the key itself never travels. Sending the same signed body
again changes nothing (an outcome is recorded once, and the same outcome again is answered as recorded).

The key is text: `STEWARD_FEEDBACK_KEY` (`Settings.feedback_key`) or, when that is unset, a random one made once
at STEWARD_HOME/keys/feedback.key (mode 0600), which the service and Steward's own clients (the demo traffic)
read. A system of record elsewhere is given that text, and signs the bytes it sends with it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from steward.errors import StewardError
from steward.settings import Settings

SIGNATURE_HEADER = "X-Steward-Signature"
SIGNATURE_PREFIX = "sha256="
KEY_FILE = Path("keys") / "feedback.key"  # under STEWARD_HOME
MIN_KEY_CHARS = 32
MISSING_SIGNATURE = (
    "missing X-Steward-Signature header: this endpoint needs sha256=<hex HMAC-SHA256 of the body under the feedback "
    "key>"
)
MALFORMED_SIGNATURE = "malformed X-Steward-Signature header: expected sha256= followed by 64 hex digits"
BAD_SIGNATURE = "bad signature: X-Steward-Signature is not the HMAC-SHA256 of this body under the feedback key"
KEY_FILE_EXPOSED = "{path} may be read by others (mode {mode:o}): chmod 600 it, or set STEWARD_FEEDBACK_KEY instead"
KEY_FILE_SHORT = "{path} holds no key of at least {n} characters: delete it and a new one is made"
CONFIGURED_KEY_SHORT = (
    "STEWARD_FEEDBACK_KEY has fewer than {n} characters: set a longer one (e.g. `python -c 'import secrets; "
    "print(secrets.token_hex(32))'`), or unset it for the key file under STEWARD_HOME"
)
_SIGNATURE = re.compile(re.escape(SIGNATURE_PREFIX) + "([0-9a-fA-F]{64})")


class FeedbackKeyError(StewardError, ValueError):
    """A feedback key too short to be a secret, or a key file others may read."""


def sign(body: bytes, *, key: str) -> str:
    """The X-Steward-Signature value of `body` under `key`: `sha256=` and the hex HMAC-SHA256."""
    return SIGNATURE_PREFIX + hmac.new(key.encode("utf-8"), body, hashlib.sha256).hexdigest()


def signed_json(payload: Mapping[str, Any], *, key: str) -> tuple[bytes, dict[str, str]]:
    """`payload` as the JSON body to send, and the headers that go with it (its content type and signature):
    send exactly these bytes, since the signature covers them and not the payload re-serialised."""
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    return body, {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, key=key)}


def signature_problem(body: bytes, signature: str | None, *, key: str) -> str | None:
    """None if `signature` (the header's value, None when absent) signs `body` under `key`, else what is wrong
    with it (one of MISSING_SIGNATURE, MALFORMED_SIGNATURE, BAD_SIGNATURE). The comparison takes constant time."""
    if signature is None:
        return MISSING_SIGNATURE
    sent = _SIGNATURE.fullmatch(signature.strip())
    if sent is None:
        return MALFORMED_SIGNATURE
    expected = hmac.new(key.encode("utf-8"), body, hashlib.sha256).digest()
    return None if hmac.compare_digest(bytes.fromhex(sent[1]), expected) else BAD_SIGNATURE


def feedback_key(settings: Settings) -> str:
    """The key /feedback is signed with: `settings.feedback_key`, else the key file under STEWARD_HOME, made with
    a random key the first time any process asks (the service or a client: whichever comes first)."""
    if settings.feedback_key is not None:
        key = settings.feedback_key.get_secret_value()
        if len(key) < MIN_KEY_CHARS:  # said here, not in Settings: a pydantic error would repeat the secret
            raise FeedbackKeyError(CONFIGURED_KEY_SHORT.format(n=MIN_KEY_CHARS))
        return key
    return read_or_make_key(settings.state_dir / KEY_FILE)


def read_or_make_key(path: Path) -> str:
    """The key in `path`, made there (0600, atomically: the first process to make it wins) when missing."""
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "w") as out:
                out.write(secrets.token_hex(32) + "\n")
                out.flush()
                os.fsync(out.fileno())
            os.link(draft, path)  # atomic, and refused if another process made the key meanwhile: theirs stands
        except FileExistsError:
            pass
        finally:
            draft.unlink(missing_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise FeedbackKeyError(KEY_FILE_EXPOSED.format(path=path, mode=mode))
    key = path.read_text(encoding="utf-8").strip()
    if len(key) < MIN_KEY_CHARS:
        raise FeedbackKeyError(KEY_FILE_SHORT.format(path=path, n=MIN_KEY_CHARS))
    return key

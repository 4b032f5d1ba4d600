"""Personal data in Steward's records: who a decision is about is kept as a pseudonym, and what the ledger vouches
for about a person is a salted commitment, so a person's data can be erased and every hash stays verifiable.

- **Pseudonym.** The service never stores a subject id (the use case's id column) as sent: it stores
  `HMAC-SHA256(instance key, model name || id)` (`Pseudonyms`). The key is `STEWARD_PSEUDONYM_KEY` or a random one
  made once at STEWARD_HOME/keys/pseudonym.key (0600). Sticky routing buckets the pseudonym, so the canary analysis
  derives each decision's side from the log alone. Erasure finds a person's rows by recomputing the pseudonym.
- **Salt.** Each subject (pseudonym) has a random 32-byte salt in `subject_salts`, made with their first decision.
- **Commitments.** A logged decision's personal parts (`PARTS`: the pseudonym, the protected attributes, the
  application's fields) enter its Merkle leaf only as `sha256(salt || part name || 0x00 || canonical JSON)`
  (`commitment`), one per part, stored with the decision. `steward ledger verify` recomputes each commitment
  whose part and salt are still here (so an edited field is caught) and takes the stored one where the part was
  erased or retired.
- **Crypto-shredding.** Erasing a subject deletes their parts and their salt. Every leaf, root and ledger hash still
  verifies; a guess at the erased data cannot be checked against any commitment, wherever copies of the
  ledger went (the Object-Lock export holds roots and commitments, never the data or the salt).

Review notes use the same rule with a salt of their own, kept beside the note (steward/reviews.py).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from sqlalchemy import String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from steward.canonical import canonical_json
from steward.db import Base
from steward.feedback_auth import FeedbackKeyError, read_or_make_key
from steward.settings import Settings

KEY_FILE = Path("keys") / "pseudonym.key"  # under STEWARD_HOME
PARTS: Final = ("subject", "groups", "inputs")  # a decision's personal parts, each committed to apart
ERASED: Final = ""  # a decision's subject once erased or retired (the pseudonym column keeps no trace)
PSEUDONYM_PREFIX: Final = "p-"
SHORT_KEY = "STEWARD_PSEUDONYM_KEY must be at least {n} characters"
MIN_KEY_CHARS = 32


def pseudonym_key(settings: Settings) -> str:
    """The key pseudonyms are made with: `settings.pseudonym_key`, else the key file under STEWARD_HOME (made
    with a random key by whichever process asks first). Losing it makes the log's subjects unfindable by id."""
    if settings.pseudonym_key is not None:
        key = settings.pseudonym_key.get_secret_value()
        if len(key) < MIN_KEY_CHARS:
            raise FeedbackKeyError(SHORT_KEY.format(n=MIN_KEY_CHARS))
        return key
    return read_or_make_key(settings.state_dir / KEY_FILE)


class Pseudonyms:
    """Subject ids to pseudonyms for one use case (its model name), under the instance's key."""

    def __init__(self, key: str, *, model_name: str) -> None:
        self._key = key.encode("utf-8")
        self._scope = model_name.encode("utf-8") + b"\x00"

    @classmethod
    def of(cls, settings: Settings, *, model_name: str) -> Pseudonyms:
        return cls(pseudonym_key(settings), model_name=model_name)

    def __call__(self, subject_id: object) -> str:
        mac = hmac.new(self._key, self._scope + str(subject_id).encode("utf-8"), hashlib.sha256)
        return PSEUDONYM_PREFIX + mac.hexdigest()[:40]


class SaltRow(Base):
    """One subject's salt: deleted when the subject is erased (or has no personal data left), never copied."""

    __tablename__ = "subject_salts"

    subject: Mapped[str] = mapped_column(String(64), primary_key=True)  # the pseudonym
    salt: Mapped[str] = mapped_column(String(64))  # 32 random bytes, hex


def new_salt() -> str:
    return secrets.token_hex(32)


def commitment(salt: str, part: str, value: Any) -> str:
    """The commitment to one personal part: hiding without the salt, binding with it."""
    text = canonical_json(value).encode("utf-8")
    return hashlib.sha256(bytes.fromhex(salt) + part.encode("ascii") + b"\x00" + text).hexdigest()


def commitments(salt: str, parts: Mapping[str, Any]) -> dict[str, str]:
    """The commitments of a decision's present parts (a shadow's answer has no inputs of its own)."""
    return {part: commitment(salt, part, parts[part]) for part in PARTS if part in parts}


def salts_for(session: Session, subjects: Iterable[str]) -> dict[str, str]:
    """Each subject's salt, made for those who have none yet (call it under the ledger's lock: one writer)."""
    wanted = sorted(set(subjects) - {ERASED})
    found: dict[str, str] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        rows = session.execute(select(SaltRow.subject, SaltRow.salt).where(SaltRow.subject.in_(chunk)))
        found |= {subject: salt for subject, salt in rows}
    for subject in wanted:
        if subject not in found:
            found[subject] = new_salt()
            session.add(SaltRow(subject=subject, salt=found[subject]))
    return found

"""Personal data in Steward's records: who a decision is about is kept as a pseudonym, and what the ledger vouches
for about a person is a salted commitment, so a person's data can be erased and every hash stays verifiable.

- **Pseudonym.** The service never stores a subject id (the use case's id column) as sent: it stores
  `HMAC-SHA256(instance key, model name || 0x00 || id)` (`Pseudonyms`). The key is `STEWARD_PSEUDONYM_KEY` or a
  random one made once at STEWARD_HOME/keys/pseudonym.key (0600); the database keeps a check value of it
  (`check_key`), so a replica or a command holding another key refuses to start rather than write or look for
  pseudonyms nobody else can match. Sticky routing buckets the pseudonym, so the canary analysis derives each
  decision's side from the log alone. Erasure finds a person's rows by recomputing the pseudonym.
- **Commitments.** A logged decision's personal parts (`PARTS`: the pseudonym, the protected attributes, the
  application's fields) enter its Merkle leaf only as `sha256(salt || part name || 0x00 || canonical JSON)`
  (`commitment`), one per part, stored with the decision. Each part has a salt of its own (32 random bytes), kept
  in the part's own row: the pseudonym's beside it in `predictions`, the groups' and the inputs' in their tables.
  `steward ledger verify` recomputes each commitment whose part is still held (so an edited field is caught) and
  takes the stored one where the part was removed on the record (steward/erasure.py).
- **Crypto-shredding.** Removing a part removes its salt with it. Every leaf, root and ledger hash still verifies;
  a guess at the removed data (even a field with two possible values) cannot be checked against its commitment,
  wherever copies of the ledger went (the Object-Lock export holds roots, never data or salts), and no salt left
  behind links a retired decision to its subject.

Review notes use the same rule with a salt of their own, kept beside the note (steward/reviews.py).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Engine, Integer, String
from sqlalchemy.orm import Mapped, Session, mapped_column

from steward.canonical import canonical_json
from steward.db import Base
from steward.errors import StewardError
from steward.feedback_auth import read_or_make_key
from steward.settings import Settings

KEY_FILE = Path("keys") / "pseudonym.key"  # under STEWARD_HOME
PARTS: Final = ("subject", "groups", "inputs")  # a decision's personal parts, each committed to apart
ERASED: Final = ""  # a decision's subject once erased or retired (the pseudonym column keeps no trace)
PSEUDONYM_PREFIX: Final = "p-"
SHORT_KEY = "STEWARD_PSEUDONYM_KEY must be at least {n} characters"
OTHER_KEY = (
    "the pseudonym key here is not the one {url} was written with: every replica and command of one database needs "
    "the same key (STEWARD_PSEUDONYM_KEY, or one STEWARD_HOME/keys/pseudonym.key copied to each machine)"
)
MIN_KEY_CHARS = 32


class PseudonymKeyError(StewardError, ValueError):
    """A pseudonym key too short, or another than the database's."""


def pseudonym_key(settings: Settings) -> str:
    """The key pseudonyms are made with: `settings.pseudonym_key`, else the key file under STEWARD_HOME (made
    with a random key by whichever process asks first). Losing it makes the log's subjects unfindable by id."""
    if settings.pseudonym_key is not None:
        key = settings.pseudonym_key.get_secret_value()
        if len(key) < MIN_KEY_CHARS:
            raise PseudonymKeyError(SHORT_KEY.format(n=MIN_KEY_CHARS))
        return key
    return read_or_make_key(settings.state_dir / KEY_FILE)


class Pseudonyms:
    """Subject ids to pseudonyms for one use case (its model name), under the instance's key."""

    def __init__(self, key: str, *, model_name: str) -> None:
        self._key = key.encode("utf-8")
        self._scope = model_name.encode("utf-8") + b"\x00"

    @classmethod
    def of(cls, settings: Settings, *, model_name: str, engine: Engine | None = None) -> Pseudonyms:
        """The pseudonyms under `settings`' key; with `engine`, refused unless it is the database's key."""
        if engine is not None:
            check_key(engine, settings)
        return cls(pseudonym_key(settings), model_name=model_name)

    def __call__(self, subject_id: object) -> str:
        mac = hmac.new(self._key, self._scope + str(subject_id).encode("utf-8"), hashlib.sha256)
        return PSEUDONYM_PREFIX + mac.hexdigest()[:40]


class PseudonymKeyRow(Base):
    """A check value of the pseudonym key (HMAC of a fixed text under it): one key per database."""

    __tablename__ = "pseudonym_key"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    check: Mapped[str] = mapped_column(String(64))


def key_check(key: str) -> str:
    return hmac.new(key.encode("utf-8"), b"steward pseudonym key check", hashlib.sha256).hexdigest()


def check_key(engine: Engine, settings: Settings) -> None:
    """Record the pseudonym key's check value in the database the first time, and refuse a different key after."""
    check = key_check(pseudonym_key(settings))
    with Session(engine) as session, session.begin():
        row = session.get(PseudonymKeyRow, 1)
        if row is None:
            session.add(PseudonymKeyRow(id=1, check=check))
        elif not hmac.compare_digest(row.check, check):
            raise PseudonymKeyError(OTHER_KEY.format(url=engine.url.render_as_string(hide_password=True)))


def new_salt() -> str:
    return secrets.token_hex(32)


def commitment(salt: str, part: str, value: Any) -> str:
    """The commitment to one personal part: hiding without the salt, binding with it."""
    text = canonical_json(value).encode("utf-8")
    return hashlib.sha256(bytes.fromhex(salt) + part.encode("ascii") + b"\x00" + text).hexdigest()

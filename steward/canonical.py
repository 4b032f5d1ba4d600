"""Canonical JSON: the one text of a value that is hashed (the ledger's chain) and signed (statements)."""

from __future__ import annotations

import json
from typing import Any


def canonical_json(value: Any) -> str:
    """The one JSON text of `value` that hashing and signing use: sorted keys, no spaces, UTF-8, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)

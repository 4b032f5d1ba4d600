"""Merkle trees over served decisions: one ledger record vouches for an interval's decisions, and one decision
can be shown to be among them with a path of sibling hashes, without the other decisions.

- leaf: sha256 of the canonical JSON of one sealed decision (`steward.canonical`: sorted keys, no spaces, UTF-8):
  its public fields and the salted commitments of its personal parts (`steward.predictions.sealed`), never the
  personal data itself. The JSON text starts with `{`, never with 0x01, so no leaf preimage is ever a node
  preimage (second preimages across levels are impossible).
- node: sha256(0x01 || left || right) over the two children's 32 raw bytes.
- a level with an odd count carries its last hash up unchanged (no duplication, so no two leaf lists share a root).

An interval's tree is a tree of trees: each batch's root over its decisions ordered by (request id, role),
then the interval root over the batch roots in batch order. A proof is the concatenated path.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Final, Literal

from steward.canonical import canonical_json

TREE: Final = "sha256-merkle/v2"  # named in every interval record, so a verifier knows the rules above
EMPTY_ROOT: Final = hashlib.sha256(b"").hexdigest()  # the root of no leaves (never sealed: an interval has one)

Side = Literal["left", "right"]  # where the sibling sits
Step = tuple[Side, str]


def leaf_hash(decision: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(decision).encode("utf-8")).hexdigest()


def node_hash(left: str, right: str) -> str:
    return hashlib.sha256(b"\x01" + bytes.fromhex(left) + bytes.fromhex(right)).hexdigest()


def _up(level: Sequence[str]) -> list[str]:
    parents = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
    if len(level) % 2:
        parents.append(level[-1])
    return parents


def merkle_root(leaves: Sequence[str]) -> str:
    if not leaves:
        return EMPTY_ROOT
    level = list(leaves)
    while len(level) > 1:
        level = _up(level)
    return level[0]


def merkle_path(leaves: Sequence[str], index: int) -> list[Step]:
    """The sibling hashes from leaf `index` up to the root."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf {index} of {len(leaves)}")
    steps: list[Step] = []
    level = list(leaves)
    while len(level) > 1:
        sibling = index ^ 1
        if sibling < len(level):
            steps.append(("left" if sibling < index else "right", level[sibling]))
        level, index = _up(level), index // 2
    return steps


def root_of_path(leaf: str, path: Sequence[Step]) -> str:
    value = leaf
    for side, sibling in path:
        value = node_hash(sibling, value) if side == "left" else node_hash(value, sibling)
    return value


def verify_proof(decision: dict[str, Any], path: Sequence[Step], root: str) -> bool:
    """Whether `decision` (as sealed: steward.predictions.sealed) is a leaf of the tree with `root`, by `path`.
    Needs nothing but the sealed decision, the path and the root named in the ledger record."""
    try:
        return root_of_path(leaf_hash(decision), path) == root
    except (ValueError, TypeError):
        return False

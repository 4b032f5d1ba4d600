"""Compare the ledger with its anchor: name where the database and the signed checkpoints first disagree.

Three attacks by someone who can write the database but not the anchor, and what catches each:

- a record edited in place: its hash no longer matches its contents (the chain check names the record);
- the chain recomputed after an edit (every hash valid again): the record at the first checkpoint past the
  edit no longer has the hash that checkpoint signed; the edit lies after the last checkpoint that still
  matches, so that checkpoint bounds the first divergence from below;
- the tail cut off: the newest checkpoint names a seq the ledger no longer reaches.

And on the anchor's side, a deleted checkpoint: the checkpoints are numbered and each names the digest of
the one before, so a missing one leaves a gap (in S3 a delete marker over a locked version is named too).

Reads are indexed: the chain is walked a page at a time by seq, the checkpointed records are fetched by
primary key, the head is one lookup.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from steward.anchor import GENESIS, KIND, Anchor, Checkpoint
from steward.keys import PublicKey
from steward.ledger import Record, VerifyResult, verify_records

EMPTY_ANCHOR = "{anchor} holds no checkpoint: nothing outside the database vouches for the ledger"
GAP = "checkpoint(s) {number} missing from {anchor} (deleted): checkpoint {found} follows checkpoint {before}"
BROKEN_LINK = "checkpoint {number} does not follow checkpoint {before} (its prev digest differs): one was replaced"
BAD_SIGNATURE = "checkpoint {number} (seq {seq}) is not signed by the instance key(s) {fingerprint}"
BACKWARDS = "checkpoint {number} covers seq {seq}, before checkpoint {before}'s seq {earlier}: forged order"
TRUNCATED = (
    "truncated: records {first}..{last} are missing (checkpoint {number} of {ts} covers seq {last}; "
    "the ledger ends at seq {head})"
)
CHAIN_BROKEN = "the chain breaks at record {seq}: {problem}"
REWRITTEN = (
    "rewritten: record {seq}'s hash differs from checkpoint {number} of {ts} ({found}... vs {signed}...); "
    "a record in {first}..{seq} was changed and every hash after it recomputed (record {good} still matches "
    "checkpoint {good_number}, so the first divergence is at or after seq {first})"
)
REWRITTEN_FROM_START = (
    "rewritten: record {seq}'s hash differs from checkpoint {number} of {ts} ({found}... vs {signed}...); "
    "a record in 1..{seq} was changed and every hash after it recomputed"
)
ANCHORED_OK = "anchored: {count} checkpoint(s) verified; the newest ({ts}) covers records 1..{seq} of {head}"
NO_KEY = "{anchor} holds {count} checkpoint(s) but there is no public key to check them with (pass --key FILE)"
NOT_YET = "; records {first}..{head} are newer than it (the next checkpoint covers them)"


class Chain(Protocol):
    """The ledger as `verify` reads it: the database (`steward.ledger.Ledger`) or an exported copy."""

    def verify(self) -> VerifyResult: ...

    def head(self) -> tuple[int, str] | None: ...

    def hashes_at(self, seqs: Iterable[int]) -> dict[int, str]: ...


class Exported:
    """An exported JSONL copy (`steward.ledger.read_jsonl`) read as a chain."""

    def __init__(self, records: list[Record]) -> None:
        self._records = records

    def verify(self) -> VerifyResult:
        return verify_records(self._records)

    def head(self) -> tuple[int, str] | None:
        return (self._records[-1].seq, self._records[-1].hash) if self._records else None

    def hashes_at(self, seqs: Iterable[int]) -> dict[int, str]:
        wanted = set(seqs)
        return {r.seq: r.hash for r in self._records if r.seq in wanted}


@dataclass(frozen=True)
class AnchorReport:
    """What `verify` found: `first_divergence` is the first seq the anchor does not vouch for as stored;
    `chain` is the hash chain's own check (steward.ledger.verify_records)."""

    ok: bool
    checkpoints: int
    first_divergence: int | None
    problems: list[str]
    summary: str
    chain: VerifyResult


def verify(chain: Chain, anchor: Anchor, keys: list[PublicKey]) -> AnchorReport:
    """Check the anchor's checkpoints (signed by one of `keys`, numbered without gaps, each linked to the one
    before: every instance writing to one anchor signs with its own key),
    then the ledger against them: intact, not rewritten, not truncated. Problems are listed by the seq where
    each begins; the first is the first divergence. Without a key no checkpoint counts (an anchor that holds
    some is then a problem, not a pass)."""
    contents = anchor.read()
    problems = list(contents.problems)
    if not keys and contents.checkpoints:
        problems.append(NO_KEY.format(count=len(contents.checkpoints), anchor=anchor.uri))
    checkpoints = _trusted(contents.checkpoints, keys, anchor.uri, problems) if keys else []
    result = chain.verify()
    head = chain.head()
    divergences: list[tuple[int, str]] = []
    if not result.ok and result.first_bad_seq is not None:
        divergences.append(
            (result.first_bad_seq, CHAIN_BROKEN.format(seq=result.first_bad_seq, problem=result.problem))
        )
    if not checkpoints and head is not None:
        problems.append(EMPTY_ANCHOR.format(anchor=anchor.uri))
    hashes = chain.hashes_at(c.seq for c in checkpoints)
    head_seq = head[0] if head else 0
    good: Checkpoint | None = None
    for checkpoint in checkpoints:
        if checkpoint.seq > head_seq:
            newest, first = max(checkpoints, key=lambda c: c.seq), head_seq + 1
            divergences.append(
                (
                    first,
                    TRUNCATED.format(first=first, last=newest.seq, number=newest.number, ts=newest.ts, head=head_seq),
                )
            )
            break
        found = hashes.get(checkpoint.seq, "")
        if found != checkpoint.head:
            first = good.seq + 1 if good else 1
            common = {"seq": checkpoint.seq, "number": checkpoint.number, "ts": checkpoint.ts, "first": first}
            shown = {"found": found[:12], "signed": checkpoint.head[:12]}
            message = (
                REWRITTEN.format(**common, **shown, good=good.seq, good_number=good.number)
                if good
                else REWRITTEN_FROM_START.format(**common, **shown)
            )
            divergences.append((first, message))
            break
        good = checkpoint
    divergences.sort(key=lambda d: d[0])
    problems = [message for _, message in divergences] + problems
    first_divergence = divergences[0][0] if divergences else None
    if problems:
        return AnchorReport(False, len(checkpoints), first_divergence, problems, problems[0], result)
    if not checkpoints:
        return AnchorReport(True, 0, None, [], "the ledger and its anchor are both empty", result)
    newest = checkpoints[-1]
    summary = ANCHORED_OK.format(count=len(checkpoints), ts=newest.ts, seq=newest.seq, head=head_seq)
    if head_seq > newest.seq:
        summary += NOT_YET.format(first=newest.seq + 1, head=head_seq)
    return AnchorReport(True, len(checkpoints), None, [], summary, result)


def _trusted(checkpoints: list[Checkpoint], keys: list[PublicKey], where: str, problems: list[str]) -> list[Checkpoint]:
    """The checkpoints signed by one of `keys`, in order; every gap, broken link, bad signature or step back in
    `problems`. A checkpoint that is not signed is not used to judge the ledger."""
    trusted: list[Checkpoint] = []
    before: Checkpoint | None = None
    for checkpoint in checkpoints:
        if not any(key.verifies(KIND, checkpoint.statement(), checkpoint.signature) for key in keys):
            fingerprints = ", ".join(key.fingerprint for key in keys)
            problems.append(
                BAD_SIGNATURE.format(number=checkpoint.number, seq=checkpoint.seq, fingerprint=fingerprints)
            )
            continue
        expected = before.number + 1 if before else 1
        if checkpoint.number != expected:
            missing = str(expected) if checkpoint.number == expected + 1 else f"{expected}..{checkpoint.number - 1}"
            problems.append(
                GAP.format(number=missing, anchor=where, found=checkpoint.number, before=before.number if before else 0)
            )
        elif checkpoint.prev != (before.digest if before else GENESIS):
            problems.append(BROKEN_LINK.format(number=checkpoint.number, before=expected - 1))
        if before is not None and checkpoint.seq < before.seq:
            problems.append(
                BACKWARDS.format(number=checkpoint.number, seq=checkpoint.seq, before=before.number, earlier=before.seq)
            )
        trusted.append(checkpoint)
        before = checkpoint
    return trusted

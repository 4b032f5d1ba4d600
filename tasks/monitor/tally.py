"""What a monitoring window's decisions add up to: requests, errors, and per sensitive group the answered
decisions, approvals, decisions with an outcome, wrong ones among those, and what reviewers decided. All are
integers that add up across chunks and Dask partitions, so a window read in pieces is judged on the very same
figures as one held in a frame (tasks/monitor/window.py judges them).

A window row: `decision` (approve, decline, referred, or error where the model raised), `outcome` (None until
/feedback stores one), `review` (None unless a reviewer resolved the case) and the sensitive attributes. An
approval is wrong unless its outcome is the use case's favourable value, a decline unless it is not.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from steward.predictions import ERROR

REVIEWS = ("resolved", "referred_approved", "referred_declined", "contested_overturned")


@dataclass(frozen=True)
class Tally:
    """The answered decisions of some rows: how many, approved, with an outcome, wrong among those, and the
    review counts in `REVIEWS` order."""

    n: int = 0
    approved: int = 0
    with_outcome: int = 0
    wrong: int = 0
    reviews: tuple[int, ...] = (0,) * len(REVIEWS)

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            self.n + other.n,
            self.approved + other.approved,
            self.with_outcome + other.with_outcome,
            self.wrong + other.wrong,
            tuple(a + b for a, b in zip(self.reviews, other.reviews, strict=True)),
        )

    def review_counts(self) -> dict[str, int]:
        return dict(zip(REVIEWS, self.reviews, strict=True))


@dataclass(frozen=True)
class WindowTally:
    """A window's requests, the ones the model raised on, and the `Tally` of its answered decisions, overall and
    per group ("attribute=value", for the groups asked about whose attribute the window holds)."""

    requests: int = 0
    errors: int = 0
    answered: Tally = field(default_factory=Tally)
    groups: dict[str, Tally] = field(default_factory=dict)

    def __add__(self, other: WindowTally) -> WindowTally:
        groups = dict(self.groups)
        for name, counted in other.groups.items():
            groups[name] = groups.get(name, Tally()) + counted
        return WindowTally(
            self.requests + other.requests, self.errors + other.errors, self.answered + other.answered, groups
        )


def _is(values: pd.Series, value: str) -> np.ndarray:
    """Where `values` equal `value`, a missing value not (text columns read from Parquet hold pd.NA)."""
    return (values == value).to_numpy(dtype=bool, na_value=False)


def _reviews(rows: pd.DataFrame) -> tuple[int, ...]:
    """Referred cases reviewers approved or declined, and contested decisions they overturned."""
    if "review" not in rows:
        return (0,) * len(REVIEWS)
    resolved = rows[rows["review"].notna().to_numpy()]
    is_referred = _is(resolved["decision"], "referred")
    referred, contested = resolved[is_referred], resolved[~is_referred]
    return (
        len(resolved),
        int(_is(referred["review"], "approve").sum()),
        int(_is(referred["review"], "decline").sum()),
        int((~(contested["review"] == contested["decision"]).to_numpy(dtype=bool, na_value=False)).sum()),
    )


def _tally(rows: pd.DataFrame, approved: np.ndarray, known: np.ndarray, wrong: np.ndarray) -> Tally:
    return Tally(len(rows), int(approved.sum()), int(known.sum()), int(wrong.sum()), _reviews(rows))


def tally(window: pd.DataFrame, groups: Iterable[str], *, favourable: str) -> WindowTally:
    """The `WindowTally` of `window`; `favourable` is the use case's favourable outcome as /feedback stores it."""
    failed = _is(window["decision"], ERROR)
    answered = window[~failed]
    approved = _is(answered["decision"], "approve")
    known = answered["outcome"].notna().to_numpy()
    wrong = (approved != _is(answered["outcome"], favourable)) & known
    by_group: dict[str, Tally] = {}
    for name in groups:
        attribute, _, value = name.partition("=")
        if attribute not in answered:
            continue
        member = _is(answered[attribute].astype(str), value)
        by_group[name] = _tally(answered[member], approved[member], known[member], wrong[member])
    return WindowTally(len(window), int(failed.sum()), _tally(answered, approved, known, wrong), by_group)

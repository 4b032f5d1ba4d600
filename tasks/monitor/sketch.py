"""Drift's sufficient statistics: a column's reference summarised once at training, and a window's integer
counts against it, which add up across chunks, files and Dask partitions (so the figures are the same however a
window is split).

A numeric column's reference holds the deciles and their shares (the PSI's bins), and a grid of at most `GRID`
points with the exact number of training values below each and at or below it. The grid is every distinct value
when there are at most `GRID` of them: the reference's distribution function is then known everywhere, and the
Kolmogorov-Smirnov statistic computed from the counts is the one against the whole training column, to the bit.
Otherwise the grid is `GRID` order statistics, the statistic at the grid is a lower bound, and the true one is
at most `error` above it (the largest share of training values strictly between two grid points, about
1/GRID). A reference made before the grid existed (a seeded sample of 20,000 values, `sample`) reads into the
same structure, and gives the statistic against that sample, as before.

A categorical column's reference holds each value's share of training rows; a window's counts are its values'.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

BINS = 10  # the PSI's bins: deciles of the training column
GRID = 2048  # points of a numeric column's distribution function kept exactly
UNKNOWN_KIND = "column {column!r}: unknown reference kind {kind!r}"


def is_numeric(values: pd.Series) -> bool:
    """Drift reads a column as numbers unless it is text, categories or booleans."""
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def describe(values: pd.Series) -> dict[str, Any]:
    """The reference of one training column (missing values left out), as plain JSON."""
    values = values.dropna()
    if is_numeric(values):
        return _numeric(np.sort(values.to_numpy(dtype=float)))
    counts = values.astype(str).value_counts()
    return {
        "kind": "categorical",
        "shares": {str(k): float(v / len(values)) for k, v in counts.items()},
        "n": len(values),
    }


def reference(frame: pd.DataFrame, columns: list[str]) -> dict[str, Any]:
    """What drift is measured against: `describe` of each of `columns`, in their order."""
    return {column: describe(frame[column]) for column in columns}


def _numeric(ordered: np.ndarray) -> dict[str, Any]:
    n = len(ordered)
    edges = np.unique(np.quantile(ordered, np.linspace(0, 1, BINS + 1)[1:-1]))
    shares = np.bincount(np.searchsorted(edges, ordered, side="right"), minlength=len(edges) + 1) / n
    distinct = ordered[np.r_[True, ordered[1:] != ordered[:-1]]] if n else ordered
    exact = len(distinct) <= GRID
    grid = distinct if exact else np.unique(ordered[np.linspace(0, n - 1, GRID).round().astype(np.int64)])
    return {
        "kind": "numeric",
        "edges": edges.tolist(),
        "shares": shares.tolist(),
        "grid": grid.tolist(),
        "below": np.searchsorted(ordered, grid, side="left").tolist(),
        "at_or_below": np.searchsorted(ordered, grid, side="right").tolist(),
        "exact": exact,
        "n": n,
    }


@dataclass(frozen=True)
class Curve:
    """A numeric reference's distribution function at its grid points: `below[i]` and `at_or_below[i]` of its
    `n` values are < and <= `grid[i]`; between grid points it is known to within `error` (0: exact)."""

    grid: np.ndarray
    below: np.ndarray
    at_or_below: np.ndarray
    n: int
    error: float


def curve(ref: Mapping[str, Any]) -> Curve:
    """The distribution function a numeric reference holds (a grid, or the sample of a reference made before)."""
    if "grid" in ref:
        grid = np.asarray(ref["grid"], dtype=float)
        below = np.asarray(ref["below"], dtype=np.int64)
        at_or_below = np.asarray(ref["at_or_below"], dtype=np.int64)
        n = int(ref["n"])
        between = below[1:] - at_or_below[:-1]  # training values strictly between consecutive grid points
        error = float(between.max()) / n if len(between) and not ref.get("exact", False) else 0.0
        return Curve(grid, below, at_or_below, n, error)
    sample = np.sort(np.asarray(ref["sample"], dtype=float))
    grid = np.unique(sample)
    return Curve(
        grid,
        np.searchsorted(sample, grid, side="left"),
        np.searchsorted(sample, grid, side="right"),
        len(sample),
        0.0,
    )


@dataclass(frozen=True)
class ColumnCounts:
    """A window's counts for one column against its reference; `a + b` is the counts of both windows.

    Numeric: `bins[j]` values in the PSI's bin j, and `cells` of the grid: `cells[2i]` values strictly between
    grid points i-1 and i (below the first for i = 0, above the last for the final cell), `cells[2i+1]` values
    equal to grid point i. Categorical: `labels`, each value's count (as the text it is compared by)."""

    n: int
    bins: np.ndarray | None = None
    cells: np.ndarray | None = None
    labels: dict[str, int] = field(default_factory=dict)

    def __add__(self, other: ColumnCounts) -> ColumnCounts:
        if (self.bins is None) != (other.bins is None):
            raise ValueError("numeric and categorical counts do not add up")
        if self.bins is None or other.bins is None or self.cells is None or other.cells is None:
            labels = dict(self.labels)
            for label, count in other.labels.items():
                labels[label] = labels.get(label, 0) + count
            return ColumnCounts(self.n + other.n, labels=labels)
        if self.bins.shape != other.bins.shape or self.cells.shape != other.cells.shape:
            raise ValueError("counts taken against different grids do not add up")
        return ColumnCounts(self.n + other.n, bins=self.bins + other.bins, cells=self.cells + other.cells)


def points(ref: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """A numeric reference's PSI edges and grid as arrays (what `count` compares values with), for a caller that
    counts many chunks against it to build once."""
    return np.asarray(ref["edges"], dtype=float), curve(ref).grid


def count(
    ref: Mapping[str, Any],
    values: pd.Series,
    *,
    column: str = "",
    prepared: tuple[np.ndarray, np.ndarray] | None = None,
) -> ColumnCounts:
    """The counts of one window column (missing values left out) against its reference `ref` (`prepared`: its
    `points`, if the caller has them). Numbers are sorted once, and the edges and grid points searched in them."""
    values = values.dropna()
    if ref["kind"] == "numeric":
        edges, grid = prepared if prepared is not None else points(ref)
        ordered = np.sort(pd.to_numeric(values).to_numpy(dtype=float))
        n = len(ordered)
        below_edge = np.searchsorted(ordered, edges, side="left")
        below = np.searchsorted(ordered, grid, side="left")
        at_or_below = np.searchsorted(ordered, grid, side="right")
        cells = np.empty(2 * len(grid) + 1, dtype=np.int64)
        cells[1::2] = at_or_below - below  # equal to grid point i
        cells[0:-1:2] = below - np.concatenate(([0], at_or_below[:-1]))  # between grid points i-1 and i
        cells[-1] = n - (at_or_below[-1] if len(grid) else 0)  # above the last
        return ColumnCounts(n, bins=np.diff(np.concatenate(([0], below_edge, [n]))), cells=cells)
    if ref["kind"] == "categorical":
        observed = values.astype(str).value_counts()
        return ColumnCounts(int(observed.sum()), labels={str(k): int(v) for k, v in observed.items() if v})
    raise ValueError(UNKNOWN_KIND.format(column=column, kind=ref["kind"]))


def counts(
    ref: Mapping[str, Any],
    frame: pd.DataFrame,
    *,
    prepared: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> dict[str, ColumnCounts]:
    """`count` of each column `ref` describes that `frame` holds (`prepared`: `points` of numeric columns)."""
    prepared = prepared or {}
    return {
        column: count(ref[column], frame[column], column=column, prepared=prepared.get(column))
        for column in ref
        if column in frame
    }


def merge(a: Mapping[str, ColumnCounts], b: Mapping[str, ColumnCounts]) -> dict[str, ColumnCounts]:
    """The counts of two windows taken against the same reference, column by column."""
    return {column: a[column] + b[column] if column in b else a[column] for column in a} | {
        column: b[column] for column in b if column not in a
    }

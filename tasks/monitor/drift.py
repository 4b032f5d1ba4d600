"""Drift of a window of live inputs against reference statistics computed once at training.

Numeric columns: the population stability index over the reference's deciles, and the two-sample
Kolmogorov-Smirnov statistic against the training column's distribution function. Categorical columns: Pearson's
chi-square test against the reference frequencies, and the Jensen-Shannon distance (base 2, in [0, 1]) between the
two frequency vectors. A column drifts when a statistic passes its threshold (params.yaml `monitor.drift`);
p-values are reported but do not decide, because on large windows they call trivial differences significant.

Every statistic comes from the window's integer counts against the reference (tasks/monitor/sketch.py), so a
window read in chunks or on Dask partitions (tasks/monitor/stream.py) gets the very same figures as one held in a
frame. Where the reference keeps its distribution function at a grid of order statistics rather than at every
value, `ks` is the statistic at the grid and `ks_error` says how far above it the exact one can be.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial.distance import jensenshannon

from tasks.monitor.sketch import ColumnCounts, Curve, count, counts, curve

EPSILON = 1e-4  # floor on a bin's share in the PSI (an empty bin would make it infinite)
NO_COLUMN = "the window lacks the column {column!r} the reference describes"
EMPTY_WINDOW = "an empty window has no distribution to compare"


@dataclass(frozen=True)
class Thresholds:
    psi: float = 0.2
    ks: float = 0.1
    js: float = 0.1


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    kind: str  # numeric | categorical
    drifted: bool
    statistics: dict[str, float]
    p_value: float | None
    n: int
    unseen: dict[str, int] = field(default_factory=dict)  # categories the reference never saw, with counts
    ks_error: float = 0.0  # the KS statistic against the whole training column is at most this above `ks`


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two share vectors over the same bins."""
    e = np.clip(expected, EPSILON, None)
    a = np.clip(actual, EPSILON, None)
    return float(np.sum((a - e) * np.log(a / e)))


def column_drift(ref: dict[str, Any], values: pd.Series, *, column: str, thresholds: Thresholds) -> ColumnDrift:
    """The drift of one window column against its reference."""
    return verdict(ref, count(ref, values, column=column), column=column, thresholds=thresholds)


def verdict(ref: Mapping[str, Any], counted: ColumnCounts, *, column: str, thresholds: Thresholds) -> ColumnDrift:
    """The drift of a column from a window's counts against its reference (`sketch.count`, or their sum)."""
    if counted.n == 0:
        raise ValueError(EMPTY_WINDOW)
    if counted.bins is not None and counted.cells is not None:
        index = psi(np.asarray(ref["shares"]), counted.bins / counted.n)
        known = curve(ref)
        ks = kolmogorov_smirnov(known, counted.cells)
        return ColumnDrift(
            column=column,
            kind="numeric",
            drifted=index > thresholds.psi or ks > thresholds.ks,
            statistics={"psi": index, "ks": ks},
            p_value=ks_p_value(ks, known.n, counted.n),
            n=counted.n,
            ks_error=known.error,
        )
    observed = counted.labels
    known_labels = list(ref["shares"])
    unseen = {k: v for k, v in observed.items() if k not in ref["shares"]}
    actual = np.array([observed.get(k, 0) for k in known_labels] + [sum(unseen.values())], dtype=float)
    expected = np.array([ref["shares"][k] for k in known_labels] + [0.0])
    distance = float(jensenshannon(expected, actual / actual.sum(), base=2))
    floor = np.clip(expected, EPSILON, None)
    chi = stats.chisquare(actual, floor / floor.sum() * actual.sum())
    return ColumnDrift(
        column=column,
        kind="categorical",
        drifted=distance > thresholds.js,
        statistics={"js": distance, "chi2": float(chi.statistic)},
        p_value=float(chi.pvalue),
        n=counted.n,
        unseen=unseen,
    )


def kolmogorov_smirnov(known: Curve, cells: np.ndarray) -> float:
    """The largest gap between the reference's distribution function and the window's (counted in `cells`),
    read just below and at each grid point: between grid points the reference's is flat when the grid holds
    every training value, so these are where the supremum is (the figure `scipy.stats.ks_2samp` gives)."""
    cumulative = np.cumsum(cells)
    m = cumulative[-1]
    below = np.abs(known.below / known.n - cumulative[0:-1:2] / m)
    at_or_below = np.abs(known.at_or_below / known.n - cumulative[1::2] / m)
    return float(max(below.max(), at_or_below.max()))


def ks_p_value(statistic: float, n: int, m: int) -> float:
    """The two-sided asymptotic p-value of a two-sample KS statistic (Smirnov's, as `ks_2samp` computes it)."""
    large, small = sorted([float(n), float(m)], reverse=True)
    return float(np.clip(stats.distributions.kstwo.sf(statistic, np.round(large * small / (large + small))), 0, 1))


def drift(window: pd.DataFrame, ref: dict[str, Any], *, thresholds: Thresholds) -> list[ColumnDrift]:
    """Every column the reference describes, in its order; a column the window lacks is an error naming it."""
    return drift_of_counts(counts(ref, window), ref, thresholds=thresholds)


def drift_of_counts(
    counted: Mapping[str, ColumnCounts], ref: Mapping[str, Any], *, thresholds: Thresholds
) -> list[ColumnDrift]:
    """`verdict` of every column the reference describes, in its order, from a window's counts."""
    missing = [c for c in ref if c not in counted]
    if missing:
        raise ValueError(NO_COLUMN.format(column=missing[0]))
    return [verdict(ref[c], counted[c], column=c, thresholds=thresholds) for c in ref]

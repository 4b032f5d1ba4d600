"""Drift of a window of live inputs against reference statistics computed once at training.

Numeric columns: the population stability index over the reference's deciles, and the two-sample
Kolmogorov-Smirnov statistic against a seeded reference sample. Categorical columns: Pearson's chi-square
test against the reference frequencies, and the Jensen-Shannon distance (base 2, in [0, 1]) between the
two frequency vectors. A column drifts when a statistic passes its threshold (params.yaml
`monitor.drift`); p-values are reported but do not decide, because on large windows they call trivial
differences significant.

Everything is vectorised per column (binning by `np.searchsorted`, frequencies by `np.unique` or
pandas' categorical codes), so a window of a million rows costs a sort per numeric column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial.distance import jensenshannon

BINS = 10
SAMPLE = 20_000  # reference values kept per numeric column for the KS test
EPSILON = 1e-4  # floor on a bin's share in the PSI (an empty bin would make it infinite)
NO_COLUMN = "the window lacks the column {column!r} the reference describes"
EMPTY_WINDOW = "an empty window has no distribution to compare"
UNKNOWN_KIND = "column {column!r}: unknown reference kind {kind!r}"


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


def reference(frame: pd.DataFrame, columns: list[str], *, seed: int = 0) -> dict[str, Any]:
    """What drift is measured against, as plain JSON: per column its deciles and a sample, or its frequencies."""
    rng = np.random.default_rng(seed)
    described: dict[str, Any] = {}
    for column in columns:
        values = frame[column].dropna()
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            numbers = values.to_numpy(dtype=float)
            edges = np.unique(np.quantile(numbers, np.linspace(0, 1, BINS + 1)[1:-1]))
            shares = np.bincount(np.searchsorted(edges, numbers, side="right"), minlength=len(edges) + 1)
            sample = rng.choice(numbers, size=min(SAMPLE, len(numbers)), replace=False)
            described[column] = {
                "kind": "numeric",
                "edges": edges.tolist(),
                "shares": (shares / len(numbers)).tolist(),
                "sample": np.sort(sample).tolist(),
                "n": len(numbers),
            }
        else:
            counts = values.astype(str).value_counts()
            described[column] = {
                "kind": "categorical",
                "shares": {str(k): float(v / len(values)) for k, v in counts.items()},
                "n": len(values),
            }
    return described


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two share vectors over the same bins."""
    e = np.clip(expected, EPSILON, None)
    a = np.clip(actual, EPSILON, None)
    return float(np.sum((a - e) * np.log(a / e)))


def column_drift(ref: dict[str, Any], values: pd.Series, *, column: str, thresholds: Thresholds) -> ColumnDrift:
    values = values.dropna()
    if values.empty:
        raise ValueError(EMPTY_WINDOW)
    if ref["kind"] == "numeric":
        numbers = values.to_numpy(dtype=float)
        edges = np.asarray(ref["edges"], dtype=float)
        counts = np.bincount(np.searchsorted(edges, numbers, side="right"), minlength=len(edges) + 1)
        index = psi(np.asarray(ref["shares"]), counts / len(numbers))
        ks = stats.ks_2samp(np.asarray(ref["sample"]), numbers, method="asymp")
        return ColumnDrift(
            column=column,
            kind="numeric",
            drifted=index > thresholds.psi or float(ks.statistic) > thresholds.ks,
            statistics={"psi": index, "ks": float(ks.statistic)},
            p_value=float(ks.pvalue),
            n=len(numbers),
        )
    if ref["kind"] == "categorical":
        labels = values.astype(str)
        observed = labels.value_counts()
        known = list(ref["shares"])
        unseen = {str(k): int(v) for k, v in observed.items() if k not in ref["shares"]}
        actual = np.array([observed.get(k, 0) for k in known] + [sum(unseen.values())], dtype=float)
        expected = np.array([ref["shares"][k] for k in known] + [0.0])
        shares = actual / actual.sum()
        distance = float(jensenshannon(expected, shares, base=2))
        floor = np.clip(expected, EPSILON, None)
        chi = stats.chisquare(actual, floor / floor.sum() * actual.sum())
        return ColumnDrift(
            column=column,
            kind="categorical",
            drifted=distance > thresholds.js,
            statistics={"js": distance, "chi2": float(chi.statistic)},
            p_value=float(chi.pvalue),
            n=len(labels),
            unseen=unseen,
        )
    raise ValueError(UNKNOWN_KIND.format(column=column, kind=ref["kind"]))


def drift(window: pd.DataFrame, ref: dict[str, Any], *, thresholds: Thresholds) -> list[ColumnDrift]:
    """Every column the reference describes, in its order; a column the window lacks is an error naming it."""
    missing = [c for c in ref if c not in window]
    if missing:
        raise ValueError(NO_COLUMN.format(column=missing[0]))
    return [column_drift(ref[c], window[c], column=c, thresholds=thresholds) for c in ref]

"""Drift as it was computed before the sketches (issue 18), kept as the implementation the tests compare with:
the reference keeps a seeded sample of 20,000 values per numeric column, and KS is scipy's `ks_2samp` against it;
PSI, chi-square and JS are computed from the window's values in one frame."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial.distance import jensenshannon

SAMPLE = 20_000
FLOOR = 1e-4


def sampled_reference(frame: pd.DataFrame, columns: list[str], *, seed: int = 0) -> dict[str, Any]:
    """The reference format before issue 18: deciles, shares and a sorted seeded sample per numeric column."""
    rng = np.random.default_rng(seed)
    described: dict[str, Any] = {}
    for column in columns:
        values = frame[column].dropna()
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            numbers = values.to_numpy(dtype=float)
            edges = np.unique(np.quantile(numbers, np.linspace(0, 1, 11)[1:-1]))
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


def sampled_statistics(ref: dict[str, Any], values: pd.Series) -> tuple[dict[str, float], float]:
    """(statistics, p-value) of one window column, computed the way the monitor did before the sketches."""
    values = values.dropna()
    if ref["kind"] == "numeric":
        numbers = values.to_numpy(dtype=float)
        counts = np.bincount(np.searchsorted(ref["edges"], numbers, side="right"), minlength=len(ref["edges"]) + 1)
        e, a = np.clip(ref["shares"], FLOOR, None), np.clip(counts / len(numbers), FLOOR, None)
        ks = stats.ks_2samp(np.asarray(ref["sample"]), numbers, method="asymp")
        return {"psi": float(np.sum((a - e) * np.log(a / e))), "ks": float(ks.statistic)}, float(ks.pvalue)
    observed = values.astype(str).value_counts()
    known = list(ref["shares"])
    unseen = sum(int(v) for k, v in observed.items() if k not in ref["shares"])
    actual = np.array([observed.get(k, 0) for k in known] + [unseen], dtype=float)
    expected = np.array([ref["shares"][k] for k in known] + [0.0])
    floor = np.clip(expected, FLOOR, None)
    chi = stats.chisquare(actual, floor / floor.sum() * actual.sum())
    js = float(jensenshannon(expected, actual / actual.sum(), base=2))
    return {"js": js, "chi2": float(chi.statistic)}, float(chi.pvalue)

"""Fast percentile bootstrap of per-group rates: a row resample is a multinomial draw over distinct cells.

For binary decisions the per-group confusion counts (TP, FP, TN, FN) are sufficient statistics for the
selection rate, TPR, FPR, FNR and precision. Resampling n iid rows with replacement gives each distinct
cell (group x label x decision) a count, and the vector of counts is Multinomial(n, observed cell shares):
drawing that vector is *exactly* a row bootstrap, at O(cells) per resample instead of O(rows). All resamples
are drawn at once as an (n_boot, cells) array and every rate and summary is computed on it vectorised.

The Brier score is not a function of those counts. Each (group, label, decision) cell is therefore split
into up to BRIER_BINS equal-count bins of the rows' squared errors, each carrying its mean: the point value
is exact (a weighted mean of bin means), and the bootstrap is exact when no cell has more rows than bins;
otherwise it ignores the variation of squared errors inside a bin (at 64 bins a small fraction of the
total variance; tests compare it with a plain row bootstrap).

Base rates (data bias, no decision) use the same engine with cells group x label. Undefined values (0/0,
e.g. the TPR of a group without positive labels) are NaN here and become null plus a note in reports.

Nothing here makes a Python object per row: groups are integer codes into their labels (`as_categories`,
`group_labels`), cells are counted with np.bincount, and the squared errors are sorted once per audit
(`error_order`) however many attributes it audits. At ten million rows an audit of four attributes with
1,000 resamples takes seconds (bench/scale.py).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

BRIER_BINS = 64
MISSING_GROUP = "(missing)"
GROUP_SEPARATOR = " | "
INTERSECTION_SEPARATOR = " \u00d7 "  # the multiplication sign

MISSING_ATTRIBUTE = "sensitive attribute(s) {names} named in params.yaml data are not columns of the data"
NOT_BINARY = "{what} must hold only 0 and 1"
NO_ROWS = "nothing to audit: no rows"
NEEDS_DECISION = "the Brier score needs decisions too: pass decision with proba"
CI_UNDEFINED = "CI undefined: the value is undefined (0/0) in {share:.0%} of resamples"
TOO_FEW_GROUPS = "undefined: fewer than 2 groups with at least {min_group_size} rows"
UNDEFINED_IN_GROUPS = "undefined: {rate} is undefined for group(s) {groups}"
ALL_ZERO = "undefined: {rate} is 0 in every group (0/0)"
UNDEFINED_RATE = {
    "base_rate": "undefined: the group has no rows",
    "selection_rate": "undefined: the group has no rows",
    "brier": "undefined: the group has no rows",
    "tpr": "undefined: the group has no positive labels (TP / (TP + FN) is 0/0)",
    "fnr": "undefined: the group has no positive labels (FN / (TP + FN) is 0/0)",
    "fpr": "undefined: the group has no negative labels (FP / (FP + TN) is 0/0)",
    "precision": "undefined: no one in the group is approved (TP / (TP + FP) is 0/0)",
}
# Each summary: (how it combines the groups, the rates it reads).
SUMMARIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "base_rate_difference": ("difference", ("base_rate",)),
    "base_rate_ratio": ("ratio", ("base_rate",)),
    "demographic_parity_difference": ("difference", ("selection_rate",)),
    "demographic_parity_ratio": ("ratio", ("selection_rate",)),
    "equalized_odds_difference": ("difference", ("tpr", "fpr")),
    "equal_opportunity_difference": ("difference", ("tpr",)),
    "predictive_parity_difference": ("difference", ("precision",)),
}
BASE_RATE_SUMMARIES = ("base_rate_difference", "base_rate_ratio")
FAIRNESS_SUMMARIES = tuple(name for name in SUMMARIES if name not in BASE_RATE_SUMMARIES)


@dataclass(frozen=True)
class Cells:
    """The distinct (group, label[, decision[, error bin]]) cells and the number of observed rows in each."""

    groups: tuple[str, ...]
    group: np.ndarray  # (cells,) index into groups
    y: np.ndarray  # (cells,) 0/1
    decision: np.ndarray | None  # (cells,) 0/1; None for base rates
    sq_error: np.ndarray | None  # (cells,) mean squared error of the cell's rows; None without scores
    counts: np.ndarray  # (cells,) int64

    @property
    def n(self) -> int:
        return int(self.counts.sum())


def _binary(values: np.ndarray, *, what: str) -> np.ndarray:
    array = np.asarray(values)
    if not np.isin(array, (0, 1)).all():
        raise ValueError(NOT_BINARY.format(what=what))
    return array.astype(np.int64)


def error_order(y: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Row indices in ascending order of squared error (proba - y)^2: the sort `build_cells` needs to bin the
    errors, done once by an audit of several attributes of the same rows and passed to each as `order`."""
    return np.argsort((np.asarray(proba, dtype=float) - np.asarray(y)) ** 2)


def _group_codes(groups: Sequence[str] | np.ndarray | pd.Series | pd.Categorical) -> tuple[np.ndarray, tuple[str, ...]]:
    """Each row's index into the sorted distinct labels, and those labels; a Categorical is read by its codes."""
    if isinstance(groups, pd.Categorical):
        codes, uniques = pd.factorize(groups, sort=True)  # the observed categories, in category order
    else:
        codes, uniques = pd.factorize(np.asarray(groups, dtype=object), sort=True)
    return codes.astype(np.int64), tuple(str(g) for g in uniques)


def build_cells(
    groups: Sequence[str] | np.ndarray | pd.Series | pd.Categorical,
    y: np.ndarray,
    *,
    decision: np.ndarray | None = None,
    proba: np.ndarray | None = None,
    bins: int = BRIER_BINS,
    order: np.ndarray | None = None,
) -> Cells:
    """Collapse rows into cells; with `proba`, each cell is split into `bins` equal-count squared-error bins.

    Args:
        groups: each row's group label; a Categorical (as `group_labels` gives) is coded without text.
        order: `error_order(y, proba)` when the caller has it already; computed here otherwise.
    """
    y = _binary(y, what="labels")
    if len(y) == 0:
        raise ValueError(NO_ROWS)
    codes, labels = _group_codes(groups)
    key = codes * 2 + y
    if decision is not None:
        key = key * 2 + _binary(decision, what="decisions")
    sq_error = None
    if proba is not None:
        if decision is None:
            raise ValueError(NEEDS_DECISION)
        sq = (np.asarray(proba, dtype=float) - y) ** 2
        if order is None:
            order = np.argsort(sq)
        # Rows by cell, then by squared error: a stable sort of the cells' keys in error order. Keys are few, so
        # they fit a small integer type, which NumPy sorts stably by radix in linear time.
        by_error = key[order]
        within = np.argsort(by_error.astype(np.min_scalar_type(int(by_error.max()))), kind="stable")
        sorted_key, sq = by_error[within], sq[order[within]]
        size = np.bincount(sorted_key)
        start = np.concatenate(([0], np.cumsum(size)[:-1]))
        rank = np.arange(len(sorted_key)) - start[sorted_key]
        fine = sorted_key * bins + rank * bins // size[sorted_key]
        totals, sums = np.bincount(fine), np.bincount(fine, weights=sq)  # sums in row order, as a sort would
        cell_key = np.flatnonzero(totals)
        counts = totals[cell_key]
        sq_error = sums[cell_key] / counts
        cell_key = cell_key // bins
    else:
        totals = np.bincount(key)
        cell_key = np.flatnonzero(totals)
        counts = totals[cell_key]
    decisions = None if decision is None else cell_key % 2
    coarse = cell_key // 2 if decision is not None else cell_key
    return Cells(
        groups=labels,
        group=coarse // 2,
        y=coarse % 2,
        decision=decisions,
        sq_error=sq_error,
        counts=counts.astype(np.int64),
    )


def resample(cells: Cells, *, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, cells) counts of n rows drawn with replacement: one multinomial draw per resample."""
    return rng.multinomial(cells.n, cells.counts / cells.n, size=n_boot)


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.full(np.broadcast(num, den).shape, np.nan), where=den > 0)


def group_rates(cells: Cells, counts: np.ndarray) -> dict[str, np.ndarray]:
    """Every per-group rate from cell counts of shape (..., cells); each result has shape (..., groups)."""
    onehot = np.zeros((len(cells.counts), len(cells.groups)))
    onehot[np.arange(len(cells.counts)), cells.group] = 1.0
    c = counts.astype(float)
    n = c @ onehot
    positives = (c * cells.y) @ onehot
    if cells.decision is None:
        return {"count": n, "positives": positives, "base_rate": _divide(positives, n)}
    approved = (c * cells.decision) @ onehot
    tp = (c * (cells.y * cells.decision)) @ onehot
    rates = {
        "count": n,
        "positives": positives,
        "selection_rate": _divide(approved, n),
        "tpr": _divide(tp, positives),
        "fpr": _divide(approved - tp, n - positives),
        "fnr": _divide(positives - tp, positives),
        "precision": _divide(tp, approved),
    }
    if cells.sq_error is not None:
        rates["brier"] = _divide((c * cells.sq_error) @ onehot, n)
    return rates


def summaries(rates: dict[str, np.ndarray], include: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Max - min and min / max over the included groups; NaN when any included group's rate is undefined."""
    out: dict[str, np.ndarray] = {}
    for name in names:
        how, sources = SUMMARIES[name]
        parts = []
        for source in sources:
            values = rates[source][..., include]
            if values.shape[-1] < 2:
                parts.append(np.full(values.shape[:-1], np.nan))
            elif how == "difference":
                parts.append(values.max(axis=-1) - values.min(axis=-1))  # max/min propagate NaN
            else:
                parts.append(_divide(values.min(axis=-1), values.max(axis=-1)))
        out[name] = np.maximum.reduce(parts)  # equalized odds: the larger of the TPR and FPR gaps
    return out


@dataclass(frozen=True)
class GroupBootstrap:
    """Point values and bootstrap draws of every per-group rate and summary of one attribute."""

    groups: tuple[str, ...]
    small: np.ndarray  # (groups,) bool: fewer rows than min_group_size, left out of summaries
    point: dict[str, np.ndarray]  # rate -> (groups,)
    draws: dict[str, np.ndarray]  # rate -> (n_boot, groups)
    summary_point: dict[str, float]
    summary_draws: dict[str, np.ndarray]  # summary -> (n_boot,)


def bootstrap_groups(
    groups: Sequence[str] | np.ndarray | pd.Series | pd.Categorical,
    y: np.ndarray,
    *,
    decision: np.ndarray | None = None,
    proba: np.ndarray | None = None,
    n_boot: int,
    min_group_size: int,
    rng: np.random.Generator,
    bins: int = BRIER_BINS,
    order: np.ndarray | None = None,
) -> GroupBootstrap:
    """Rates by group, their summaries, and `n_boot` multinomial-bootstrap draws of each (`order`: as build_cells)."""
    cells = build_cells(groups, y, decision=decision, proba=proba, bins=bins, order=order)
    point = group_rates(cells, cells.counts)
    draws = group_rates(cells, resample(cells, n_boot=n_boot, rng=rng))
    small = point["count"] < min_group_size
    names = BASE_RATE_SUMMARIES if decision is None else FAIRNESS_SUMMARIES
    summary_point = summaries(point, ~small, names)
    return GroupBootstrap(
        groups=cells.groups,
        small=small,
        point=point,
        draws=draws,
        summary_point={k: float(v) for k, v in summary_point.items()},
        summary_draws=summaries(draws, ~small, names),
    )


def percentile_ci(draws: np.ndarray, *, ci_level: float) -> tuple[float, float, float]:
    """(low, high, share of undefined draws); low and high ignore undefined draws."""
    defined = draws[np.isfinite(draws)]
    undefined = 1.0 - len(defined) / len(draws)
    if len(defined) == 0:
        return np.nan, np.nan, undefined
    alpha = (1.0 - ci_level) / 2.0
    low, high = np.quantile(defined, [alpha, 1.0 - alpha])
    return float(low), float(high), undefined


def metric(value: float, draws: np.ndarray, *, ci_level: float, note: str) -> dict[str, Any]:
    """A metric with CI: {"value", "ci"} or, when either is undefined, nulls plus a note. Never NaN."""
    if not np.isfinite(value):
        return {"value": None, "ci": None, "note": note}
    low, high, undefined = percentile_ci(draws, ci_level=ci_level)
    if undefined > 0.5:
        return {"value": float(value), "ci": None, "note": CI_UNDEFINED.format(share=undefined)}
    return {"value": float(value), "ci": [low, high]}


def summary_note(name: str, boot: GroupBootstrap, *, min_group_size: int) -> str:
    """Why a summary is undefined: too few groups, a group's rate undefined, or a ratio of zeros."""
    _, sources = SUMMARIES[name]
    if (~boot.small).sum() < 2:
        return TOO_FEW_GROUPS.format(min_group_size=min_group_size)
    for source in sources:
        undefined = [g for g, v, s in zip(boot.groups, boot.point[source], boot.small, strict=True)
                     if not s and not np.isfinite(v)]  # fmt: skip
        if undefined:
            return UNDEFINED_IN_GROUPS.format(rate=source, groups=", ".join(map(repr, undefined)))
    return ALL_ZERO.format(rate=sources[0])


# Helpers shared by the audits: names, labels, seeds and the presence check.


def attribute_name(columns: Sequence[str]) -> str:
    """'sex' or, for an intersection, 'sex \u00d7 age_group' (a multiplication sign)."""
    return INTERSECTION_SEPARATOR.join(columns)


def audited(attributes: Sequence[str], intersections: Sequence[Sequence[str]]) -> list[list[str]]:
    """The column lists audited: each attribute alone, then each intersection."""
    return [[a] for a in attributes] + [list(combo) for combo in intersections]


def as_strings(frame: pd.DataFrame) -> pd.DataFrame:
    """Sensitive columns as strings (missing values as their own group): the text every audit keys groups by.

    Row by row; `as_categories` gives the same text coded, applying this to one row per distinct value (to every
    row only in a column `_value_codes` codes by its text: Python objects, dates and other types).
    """
    return frame.astype(object).where(frame.notna(), MISSING_GROUP).astype(str)


def _value_codes(column: pd.Series) -> np.ndarray:
    """Each row's code (-1: missing), equal for two rows only if `as_strings` writes their values alike.

    Hashing finds equal values without a Python object per row, but equal is not always the same text: 0.0 and
    -0.0 are equal floats (so floats are coded by bit pattern), and in an object column 1, 1.0 and True are
    equal values (so an object column, which holds a Python object per row anyway, is coded by its text, and so
    is any type other than text, integers, booleans, floats and categories).
    """
    dtype = column.dtype
    if isinstance(dtype, np.dtype) and dtype.kind == "f":
        values = column.to_numpy()
        present = ~np.isnan(values)
        codes = np.full(len(values), -1, dtype=np.int64)
        codes[present] = pd.factorize(values[present].view(f"i{dtype.itemsize}"))[0]
        return codes
    exact = (
        isinstance(dtype, pd.CategoricalDtype | pd.StringDtype)
        or pd.api.types.is_integer_dtype(dtype)
        or pd.api.types.is_bool_dtype(dtype)
    )
    return pd.factorize(column if exact else as_strings(column.to_frame()).iloc[:, 0])[0].astype(np.int64)


def _a_row_of_each(codes: np.ndarray, distinct: int) -> np.ndarray:
    """A row holding each code 0 .. distinct - 1 (codes below 0 are missing values)."""
    # pd.factorize numbers values in order of appearance: a running maximum then first reaches k at k's first row.
    rows = np.searchsorted(np.maximum.accumulate(codes), np.arange(distinct))
    if not np.array_equal(codes[rows], np.arange(distinct)):  # numbered in another order
        rows = np.full(distinct, len(codes))
        present = np.flatnonzero(codes >= 0)
        np.minimum.at(rows, codes[present], present)
    return rows


def _as_category(column: pd.Series) -> pd.Categorical:
    """One column's text (as `as_strings` writes it) as a Categorical of its sorted values."""
    dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype) and isinstance(dtype.categories.dtype, pd.StringDtype):
        codes = column.cat.codes.to_numpy().astype(np.int64)  # text categories are their own text
        distinct, text = len(dtype.categories), dtype.categories.to_numpy(dtype=object)
    else:
        codes = _value_codes(column)
        distinct = int(codes.max(initial=-1)) + 1
        rows = _a_row_of_each(codes, distinct)
        text = as_strings(column.iloc[rows].to_frame()).iloc[:, 0].to_numpy(dtype=object)
    missing = codes < 0
    if missing.any():
        text = np.append(text, MISSING_GROUP)
        codes = np.where(missing, distinct, codes)
    return _merged(codes, text)


def _merged(codes: np.ndarray, text: np.ndarray) -> pd.Categorical:
    """Rows coded into `text` (one label per code) as a Categorical of the observed labels, sorted and distinct."""
    observed = np.bincount(codes, minlength=len(text)) > 0  # a categorical column may have unused categories
    labels, inverse = np.unique(text[observed], return_inverse=True)  # distinct codes can share a text: one group
    recode = np.zeros(len(text), dtype=np.int64)
    recode[observed] = inverse
    return pd.Categorical.from_codes(recode[codes], categories=labels)


def as_categories(frame: pd.DataFrame) -> pd.DataFrame:
    """`as_strings(frame)` with each column a Categorical: the same text, held as an integer code per row."""
    columns = [pd.Series(_as_category(frame.iloc[:, i]), index=frame.index) for i in range(frame.shape[1])]
    return pd.concat(columns, axis=1, keys=frame.columns)


def group_labels(frame: pd.DataFrame, columns: Sequence[str]) -> pd.Categorical:
    """Each row's group: 'female' or, for an intersection, 'female | under 25', as a Categorical."""
    first, *others = (_as_category(frame[column]) for column in columns)
    codes = first.codes.astype(np.int64)
    parts = [np.asarray(first.categories, dtype=object)]  # per column: the text of each combination so far
    for column in others:
        width = len(column.categories)
        codes, combos = pd.factorize(codes * width + column.codes)
        parts = [part[combos // width] for part in parts]
        parts.append(np.asarray(column.categories, dtype=object)[combos % width])
        codes = codes.astype(np.int64)
    text = parts[0]
    for part in parts[1:]:
        text = text + GROUP_SEPARATOR + part
    return _merged(codes, text)


def check_attributes(columns: pd.Index | Sequence[str], needed: Sequence[Sequence[str]]) -> None:
    """Raise KeyError naming every sensitive attribute that is not a column."""
    missing = sorted({a for combo in needed for a in combo} - set(columns))
    if missing:
        raise KeyError(MISSING_ATTRIBUTE.format(names=", ".join(missing)))


def attribute_rng(seed: int, name: str) -> np.random.Generator:
    """One generator per audited attribute, so adding an attribute leaves the others' CIs unchanged."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])

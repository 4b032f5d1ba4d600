"""fairlearn's MetricFrame: the independent computation the audits' count-based figures are tested against.

Not in any production path: the fairness and data-bias audits compute every point value from per-group counts
(tasks.audit.bootstrap). Tests compare those with the figures here; bench/scale.py times these as the path the
fairness audit took before. Groups are keyed by the audits' text, written row by row with plain pandas.
fairlearn's rate functions return 0 for 0/0; the wrappers below make that NaN, as the audits report it (null).
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
from fairlearn.metrics import (
    MetricFrame,
    count,
    false_negative_rate,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.metrics import brier_score_loss, precision_score

SEPARATOR = " | "
MISSING = "(missing)"
# Each audit summary as fairlearn computes it: (MetricFrame columns, "difference" or "ratio"); two columns: the
# larger of the two differences (equalized odds).
SUMMARIES = {
    "demographic_parity_difference": (("selection_rate",), "difference"),
    "demographic_parity_ratio": (("selection_rate",), "ratio"),
    "equalized_odds_difference": (("tpr", "fpr"), "difference"),
    "equal_opportunity_difference": (("tpr",), "difference"),
    "predictive_parity_difference": (("precision",), "difference"),
}
BASE_RATE_SUMMARIES = {
    "base_rate_difference": (("base_rate",), "difference"),
    "base_rate_ratio": (("base_rate",), "ratio"),
}


def _positives(y_true: np.ndarray, y_pred: np.ndarray) -> int:
    return int(np.sum(y_true == 1))


def _tpr(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(true_positive_rate(y_true, y_pred, pos_label=1)) if np.any(y_true == 1) else np.nan


def _fnr(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(false_negative_rate(y_true, y_pred, pos_label=1)) if np.any(y_true == 1) else np.nan


def _fpr(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(false_positive_rate(y_true, y_pred, pos_label=1)) if np.any(y_true == 0) else np.nan


def _brier(y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray) -> float:
    return float(brier_score_loss(y_true, proba, pos_label=1))


def _base_rate(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(y_true))


FAIRNESS_METRICS = {
    "count": count,
    "positives": _positives,
    "selection_rate": partial(selection_rate, pos_label=1),
    "tpr": _tpr,
    "fpr": _fpr,
    "fnr": _fnr,
    "precision": partial(precision_score, pos_label=1, zero_division=np.nan),
    "brier": _brier,
}
BASE_RATE_METRICS = {"count": count, "positives": _positives, "base_rate": _base_rate}


def text(frame: pd.DataFrame) -> pd.DataFrame:
    """Each value as the audits name groups: str() of it, missing values as '(missing)'."""
    return frame.astype(object).where(frame.notna(), MISSING).astype(str)


def _frame(metrics: dict, y: np.ndarray, pred: np.ndarray, sensitive: pd.DataFrame, **params: object) -> MetricFrame:
    return MetricFrame(
        metrics=metrics, y_true=y, y_pred=pred, sensitive_features=text(sensitive).reset_index(drop=True), **params
    )


def _by_group(frame: MetricFrame) -> pd.DataFrame:
    by_group = frame.by_group.astype(float)
    by_group = by_group[by_group["count"] > 0]  # intersections list every combination of levels
    by_group.index = [SEPARATOR.join(key) if isinstance(key, tuple) else str(key) for key in by_group.index]
    return by_group.sort_index()


def fairness_by_group(y: np.ndarray, decision: np.ndarray, proba: np.ndarray, sensitive: pd.DataFrame) -> pd.DataFrame:
    """Count, positives and the six rates of each group of `sensitive`'s columns (one, or an intersection)."""
    frame = _frame(FAIRNESS_METRICS, y, decision, sensitive, sample_params={"brier": {"proba": proba}})
    return _by_group(frame)


def base_rates_by_group(y: np.ndarray, sensitive: pd.DataFrame) -> pd.DataFrame:
    """Count, positives and the share of label 1 of each group."""
    return _by_group(_frame(BASE_RATE_METRICS, y, y, sensitive))


def summaries(
    y: np.ndarray,
    pred: np.ndarray,
    sensitive: pd.DataFrame,
    *,
    min_group_size: int,
    proba: np.ndarray | None = None,
) -> dict[str, float]:
    """MetricFrame.difference() / .ratio() between the groups of at least `min_group_size` rows; NaN when fewer
    than two, or when a large group's rate is undefined (fairlearn would skip it; the audits call it undefined).
    Without `proba`: the base-rate summaries (pred is unused), else the fairness summaries."""
    base = proba is None
    metrics = BASE_RATE_METRICS if base else FAIRNESS_METRICS
    labels = text(sensitive).agg(SEPARATOR.join, axis=1).to_numpy()
    sizes = pd.Series(labels).value_counts()
    keep = np.isin(labels, sizes.index[sizes >= min_group_size])
    wanted = BASE_RATE_SUMMARIES if base else SUMMARIES
    if len(set(labels[keep])) < 2:
        return dict.fromkeys(wanted, np.nan)
    params = {} if base else {"sample_params": {"brier": {"proba": np.asarray(proba)[keep]}}}
    frame = _frame(metrics, np.asarray(y)[keep], np.asarray(pred)[keep], sensitive[keep], **params)
    by_group = _by_group(frame)
    out = {}
    for name, (columns, how) in wanted.items():
        if by_group[list(columns)].isna().any().any():
            out[name] = np.nan
            continue
        values = (
            frame.difference(method="between_groups") if how == "difference" else frame.ratio(method="between_groups")
        )
        out[name] = max(float(values[column]) for column in columns)
    return out

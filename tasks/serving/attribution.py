"""SHAP attributions of one model, summed back to the original columns: what the service explains each
decision with, what monitoring compares over a window, and what the explain stage audits.

SHAP runs on the estimator over the encoded columns (TreeExplainer in its default tree-path-dependent mode
for gradient boosting, LinearExplainer with an explicit background for logistic regression), in log-odds:
for every explained row, base value + sum of SHAP values must equal the estimator's decision_function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

ExplainerKind = Literal["tree", "linear"]

ADDITIVITY_TOLERANCE = 1e-6
ADDITIVITY_BROKEN = (
    "SHAP additivity fails: base value + sum of SHAP values differs from the model's log-odds by up to "
    "{error:.3g} (tolerance {tolerance:g}); the attributions cannot be trusted"
)
UNSUPPORTED_MODEL = "no SHAP explainer for {kind}: expected GradientBoostingClassifier or LogisticRegression"
NO_BACKGROUND = "the linear explainer needs background rows (got none)"
UNMAPPED_COLUMNS = "cannot map {n_out} encoded columns back to the original ones (mapped {n_mapped})"


@dataclass(frozen=True)
class Attribution:
    """SHAP values of explained rows on the encoded columns, in log-odds of approval."""

    explainer: ExplainerKind
    values: np.ndarray  # (n_rows, n_encoded)
    base_value: float
    encoded: list[str]
    log_odds: np.ndarray  # the estimator's decision_function for the same rows

    @property
    def additivity_error(self) -> float:
        """Largest |base + sum of SHAP - log-odds| over the rows."""
        if len(self.log_odds) == 0:
            return 0.0
        return float(np.abs(self.base_value + self.values.sum(axis=1) - self.log_odds).max())


def build_explainer(model: Pipeline, *, background: pd.DataFrame | None = None) -> tuple[ExplainerKind, Any]:
    """The SHAP explainer of the pipeline's estimator; build it once and reuse it (serving: per process)."""
    import shap  # heavy: imported only when attributions are computed

    estimator = model[-1]
    if isinstance(estimator, GradientBoostingClassifier):
        return "tree", shap.TreeExplainer(estimator)  # no background: tree_path_dependent, exact
    if isinstance(estimator, LogisticRegression):
        if background is None or len(background) == 0:
            raise ValueError(NO_BACKGROUND)
        reference = np.asarray(model[:-1].transform(background[list(model.feature_names_in_)]), dtype=float)
        # max_samples: the masker would otherwise subsample a background of more than 100 rows itself.
        masker = shap.maskers.Independent(reference, max_samples=len(reference))
        return "linear", shap.LinearExplainer(estimator, masker)
    raise ValueError(UNSUPPORTED_MODEL.format(kind=type(estimator).__name__))


def explain_rows(
    model: Pipeline,
    rows: pd.DataFrame,
    *,
    background: pd.DataFrame | None = None,
    explainer: tuple[ExplainerKind, Any] | None = None,
) -> Attribution:
    """SHAP values for `rows`; a breach of additivity (> ADDITIVITY_TOLERANCE) is an error."""
    kind, shap_explainer = explainer or build_explainer(model, background=background)
    preprocess, estimator = model[:-1], model[-1]
    encoded = np.asarray(preprocess.transform(rows[list(model.feature_names_in_)]), dtype=float)
    # the tree explainer's own check is switched off: ours below applies our tolerance and message
    options = {"check_additivity": False} if kind == "tree" else {}
    values = shap_explainer.shap_values(encoded, **options)
    attribution = Attribution(
        explainer=kind,
        values=np.asarray(values, dtype=float).reshape(len(rows), encoded.shape[1]),
        base_value=float(np.ravel(shap_explainer.expected_value)[0]),
        encoded=[str(n) for n in preprocess.get_feature_names_out()],
        log_odds=np.asarray(estimator.decision_function(encoded), dtype=float),
    )
    error = attribution.additivity_error
    if not error <= ADDITIVITY_TOLERANCE:
        raise ValueError(ADDITIVITY_BROKEN.format(error=error, tolerance=ADDITIVITY_TOLERANCE))
    return attribution


def encoded_sources(preprocess: ColumnTransformer) -> list[str]:
    """For each encoded column, the original column it came from (one-hot columns → their category's column)."""
    names_in = list(preprocess.feature_names_in_)
    sources: list[str] = []
    for _, transformer, cols in preprocess.transformers_:
        if transformer == "drop":
            continue
        cols = [names_in[c] if isinstance(c, int | np.integer) else str(c) for c in np.atleast_1d(cols)]
        if isinstance(transformer, OneHotEncoder):
            drop = getattr(transformer, "drop_idx_", None)
            for k, (col, cats) in enumerate(zip(cols, transformer.categories_, strict=True)):
                dropped = drop is not None and drop[k] is not None
                sources += [col] * (len(cats) - int(dropped))
        else:  # passthrough, scalers: one column out per column in
            sources += cols
    n_out = len(preprocess.get_feature_names_out())
    if len(sources) != n_out:
        raise ValueError(UNMAPPED_COLUMNS.format(n_out=n_out, n_mapped=len(sources)))
    return sources


def aggregate(values: np.ndarray, sources: list[str]) -> pd.DataFrame:
    """Sum SHAP columns per original column (additive, so base + row sum is unchanged)."""
    order = list(dict.fromkeys(sources))
    membership = np.zeros((len(sources), len(order)))
    membership[np.arange(len(sources)), [order.index(s) for s in sources]] = 1.0
    return pd.DataFrame(values @ membership, columns=order)

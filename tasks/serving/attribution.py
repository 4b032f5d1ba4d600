"""SHAP attributions of one model, summed back to the original columns: what the service explains each
decision with, what monitoring compares over a window, and what the explain stage audits.

SHAP runs on the estimator over the encoded columns, in log-odds of approval, with the explainer its family
calls for (tasks/model/estimator.py): TreeExplainer in its default tree-path-dependent mode for gradient
boosting (scikit-learn's or LightGBM's), LinearExplainer with an explicit background for logistic regression,
both exact: for every explained row, base value + sum of SHAP values equals the estimator's decision_function.
Any other classifier gets the model-agnostic PermutationExplainer on the log-odds of its predict_proba, masked
with a sample of the background: an approximation (a few permutations, against a few dozen rows), yet
additive by construction (each permutation's steps add up to the row's log-odds minus the base value), so the
same check holds. The Attribution says which explainer it came from and whether it is exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from tasks.model.estimator import family

ExplainerKind = Literal["tree", "linear", "permutation"]

ADDITIVITY_TOLERANCE = 1e-6
ADDITIVITY_BROKEN = (
    "SHAP additivity fails: base value + sum of SHAP values differs from the model's log-odds by up to "
    "{error:.3g} (tolerance {tolerance:g}); the attributions cannot be trusted"
)
NO_BACKGROUND = "the {kind} explainer needs background rows (got none)"
UNMAPPED_COLUMNS = "cannot map {n_out} encoded columns back to the original ones (mapped {n_mapped})"

# The permutation explainer: each explained row costs PERMUTATIONS * (2 * columns + 1) * PERMUTATION_BACKGROUND
# predictions (about 12,000 for 58 encoded columns).
PERMUTATION_BACKGROUND = 50
PERMUTATIONS = 2
PERMUTATION_SEED = 0
# A predicted P(favourable) of exactly 0 or 1 (a k-nearest-neighbours vote, say) has infinite log-odds: it is read as
# this far from 0 or 1 (log-odds within +-9.2), so one certain row cannot dwarf every other attribution. The
# service's P(favourable) for such a row is then off predict_proba's by at most this much.
PROBABILITY_CLIP = 1e-4
NOTES: dict[ExplainerKind, str] = {
    "tree": "TreeExplainer (tree-path-dependent): exact SHAP values of the model's log-odds",
    "linear": "LinearExplainer against {background} background rows: exact SHAP values of the model's log-odds",
    "permutation": (
        "model-agnostic PermutationExplainer (no tree or linear explainer fits this model): an approximation "
        "from {permutations} forward-and-backward permutation(s) per row, masking with a sample of {background} "
        "background rows; additive to the log-odds of predict_proba by construction"
    ),
}


@dataclass(frozen=True)
class Explainer:
    """A SHAP explainer of one model, built once and reused (serving: per process)."""

    kind: ExplainerKind
    shap: Any
    background_rows: int = 0

    @property
    def exact(self) -> bool:
        return self.kind != "permutation"

    @property
    def note(self) -> str:
        return NOTES[self.kind].format(background=self.background_rows, permutations=PERMUTATIONS)


@dataclass(frozen=True)
class Attribution:
    """SHAP values of explained rows on the encoded columns, in log-odds of approval."""

    explainer: ExplainerKind
    values: np.ndarray  # (n_rows, n_encoded)
    base_value: float
    encoded: list[str]
    log_odds: np.ndarray  # what the explainer explains, for the same rows: decision_function, or logit(P(favourable))

    @property
    def additivity_error(self) -> float:
        """Largest |base + sum of SHAP - log-odds| over the rows."""
        if len(self.log_odds) == 0:
            return 0.0
        return float(np.abs(self.base_value + self.values.sum(axis=1) - self.log_odds).max())


def proba_log_odds(estimator: Any, encoded: np.ndarray) -> np.ndarray:
    """The log-odds of the estimator's P(favourable) (predict_proba's second column), clipped away from 0 and 1."""
    p = np.clip(np.asarray(estimator.predict_proba(encoded), dtype=float)[:, 1], PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)
    return np.log(p) - np.log1p(-p)


@contextmanager
def _numpy_seeded(seed: int) -> Iterator[None]:
    """SHAP's permutation explainer draws from numpy's global generator: seed it, then put it back as it was."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def build_explainer(model: Pipeline, *, background: pd.DataFrame | None = None) -> Explainer:
    """The SHAP explainer of the pipeline's estimator; build it once and reuse it (serving: per process)."""
    import shap  # heavy: imported only when attributions are computed

    estimator = model[-1]
    kind: ExplainerKind = "permutation"
    match family(estimator):
        case "tree":
            return Explainer("tree", shap.TreeExplainer(estimator))  # no background: tree_path_dependent, exact
        case "linear":
            kind = "linear"
    if background is None or len(background) == 0:
        raise ValueError(NO_BACKGROUND.format(kind=kind))
    if kind == "permutation":
        background = background.sample(n=min(len(background), PERMUTATION_BACKGROUND), random_state=PERMUTATION_SEED)
    reference = np.asarray(model[:-1].transform(background[list(model.feature_names_in_)]), dtype=float)
    # max_samples: the masker would otherwise subsample a background of more than 100 rows itself.
    masker = shap.maskers.Independent(reference, max_samples=len(reference))
    if kind == "linear":
        return Explainer("linear", shap.LinearExplainer(estimator, masker), len(reference))

    def log_odds(encoded: np.ndarray) -> np.ndarray:
        return proba_log_odds(estimator, encoded)

    with _numpy_seeded(PERMUTATION_SEED):  # the constructor seeds numpy's global generator itself
        explainer = shap.PermutationExplainer(log_odds, masker, seed=PERMUTATION_SEED)
    # SHAP compiles its masking code (numba) on the first call, several seconds once per process: here, at
    # load time, rather than in the first request a service explains
    _permutation(explainer, reference[:1])
    return Explainer("permutation", explainer, len(reference))


def _permutation(explainer: Any, encoded: np.ndarray) -> tuple[np.ndarray, float]:
    """Permutation SHAP values of the encoded rows and their base value (the background's mean log-odds)."""
    if len(encoded) == 0:
        return np.zeros(encoded.shape), float(np.mean(explainer.model(explainer.masker.data)))
    with _numpy_seeded(PERMUTATION_SEED):  # the same row gets the same values, call after call
        explanation = explainer(encoded, max_evals=PERMUTATIONS * (2 * encoded.shape[1] + 1), silent=True)
    return explanation.values, float(np.ravel(explanation.base_values)[0])


def explain_rows(
    model: Pipeline,
    rows: pd.DataFrame,
    *,
    background: pd.DataFrame | None = None,
    explainer: Explainer | None = None,
) -> Attribution:
    """SHAP values for `rows`; a breach of additivity (> ADDITIVITY_TOLERANCE) is an error."""
    explainer = explainer or build_explainer(model, background=background)
    preprocess, estimator = model[:-1], model[-1]
    encoded = np.asarray(preprocess.transform(rows[list(model.feature_names_in_)]), dtype=float)
    if explainer.kind == "permutation":
        values, base_value = _permutation(explainer.shap, encoded)
        log_odds = proba_log_odds(estimator, encoded)
    else:
        if explainer.kind == "tree":
            # called (not shap_values): the same values, without a stale warning about LightGBM's output shape;
            # its own check is switched off: ours below applies our tolerance and message
            values = explainer.shap(encoded, check_additivity=False).values
        else:
            values = explainer.shap.shap_values(encoded)
        base_value = float(np.ravel(explainer.shap.expected_value)[0])
        log_odds = np.asarray(estimator.decision_function(encoded), dtype=float)
    attribution = Attribution(
        explainer=explainer.kind,
        values=np.asarray(values, dtype=float).reshape(len(rows), encoded.shape[1]),
        base_value=base_value,
        encoded=[str(n) for n in preprocess.get_feature_names_out()],
        log_odds=log_odds,
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

"""Robustness stage: do decisions survive small input noise, shifted slices and protected-attribute swaps?

Every check passes a modified copy of the held-out split through the model and compares decisions at
params.evaluate.threshold with those on the unmodified rows.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.pipeline import Pipeline

from steward.params import DataParams, Params
from tasks.data.features import AGE_GROUP, LABEL, age_groups
from tasks.model.evaluate import positive_proba

MIN_AGE = 18
# Valid (low, high) of the German credit integer columns; a numeric column not listed stays ≥ 0 if it was.
VALID_RANGES: dict[str, tuple[float, float]] = {
    "age": (MIN_AGE, np.inf),
    "duration_months": (1, np.inf),
    "credit_amount": (1, np.inf),
    "installment_rate": (1, 4),
    "residence_since": (1, 4),
    "existing_credits": (1, np.inf),
    "people_liable": (1, np.inf),
}
TOP_DECILE = 0.9
LONG_DURATION = 36

EMPTY_SLICE = "the slice is empty"
ONE_CLASS = "the slice holds only label {value}: AUC is undefined"
SMALL_SLICE = "slice '{name}' has {count} rows (< {minimum}): its metrics are indicative only"
MISSING_SLICE = "slice '{name}' skipped: the data has no column {column}"
NOISE_FLIPS = "numeric noise of {noise:.0%} flips {rate:.1%} of decisions (> {limit:.1%})"
PROTECTED_FLIPS = "changing only {attribute} flips {rate:.1%} of decisions: the model treats it directly"
NOT_A_FEATURE = "{attribute} is not a model feature, so changing it cannot change a decision; measured anyway"
IS_A_FEATURE = "{attribute} is a model feature (params prepare.exclude_protected is false)"
ONE_VALUE = "{attribute} has a single value in the data: nothing to swap"
SWAP_NOTE = (
    "each row's value replaced by a random other value seen in training: a material change to the "
    "application, so a high rate shows the feature matters (sensitivity), not instability; not in flags"
)


def decide(model: Pipeline, frame: pd.DataFrame, *, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """P(approve) and the 0/1 decision at `threshold`."""
    proba = positive_proba(model, frame)
    return proba, (proba >= threshold).astype(int)


def perturb_numeric(
    frame: pd.DataFrame, *, columns: Sequence[str], noise: float, rng: np.random.Generator
) -> pd.DataFrame:
    """x · (1 + noise · N(0, 1)) per value, clipped to VALID_RANGES; integer columns stay integers."""
    out = frame.copy()
    for column in columns:
        original = frame[column]
        low, high = VALID_RANGES.get(column, (0.0 if original.min() >= 0 else -np.inf, np.inf))
        values = np.clip(original.to_numpy(float) * (1 + noise * rng.standard_normal(len(frame))), low, high)
        out[column] = np.rint(values).astype(original.dtype) if pd.api.types.is_integer_dtype(original) else values
    return out


def _compare(
    model: Pipeline, frame: pd.DataFrame, changed: pd.DataFrame, *, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    p0, d0 = decide(model, frame, threshold=threshold)
    p1, d1 = decide(model, changed, threshold=threshold)
    return d1 != d0, np.abs(p1 - p0)


def noise_stability(
    model: Pipeline,
    frame: pd.DataFrame,
    *,
    columns: Sequence[str],
    noise: float,
    n_draws: int,
    seed: int,
    threshold: float,
) -> dict[str, float]:
    """Decision flip rate and mean |Δ P(approve)| over n_draws noisy copies of `columns` (all at once)."""
    rng = np.random.default_rng(seed)
    flips, deltas = [], []
    for _ in range(n_draws):
        changed = perturb_numeric(frame, columns=columns, noise=noise, rng=rng)
        flipped, delta = _compare(model, frame, changed, threshold=threshold)
        flips.append(flipped)
        deltas.append(delta)
    return {"flip_rate": float(np.mean(flips)), "mean_abs_proba_change": float(np.mean(deltas))}


def swap_category(values: pd.Series, *, choices: Sequence[Any], rng: np.random.Generator) -> pd.Series:
    """Each value replaced by a uniformly drawn *other* one of `choices` (any one, for an unseen value)."""
    choices = list(choices)
    position = {v: i for i, v in enumerate(choices)}
    current = np.array([position.get(v, len(choices)) for v in values])
    draw = rng.integers(0, len(choices) - 1, len(values))
    picked = draw + (draw >= current)  # skip the current value's slot
    return pd.Series(np.asarray(choices, dtype=object)[picked], index=values.index, dtype=values.dtype)


def category_swaps(
    model: Pipeline,
    frame: pd.DataFrame,
    *,
    choices: Mapping[str, Sequence[Any]],
    seed: int,
    threshold: float,
    max_flip_rate: float,
) -> dict[str, Any]:
    """Flip rate when one categorical feature at a time takes another valid value."""
    by_feature: dict[str, dict[str, Any]] = {}
    for k, (feature, values) in enumerate(sorted(choices.items())):
        if len(values) < 2:
            continue
        changed = frame.copy()
        changed[feature] = swap_category(frame[feature], choices=values, rng=np.random.default_rng([seed, k]))
        flipped, delta = _compare(model, frame, changed, threshold=threshold)
        rate = float(flipped.mean())
        by_feature[feature] = {
            "flip_rate": rate,
            "mean_abs_proba_change": float(delta.mean()),
            "above_max_flip_rate": rate > max_flip_rate,
        }
    rates = [f["flip_rate"] for f in by_feature.values()]
    return {"flip_rate": float(np.mean(rates)) if rates else 0.0, "by_feature": by_feature, "note": SWAP_NOTE}


def slice_definitions(*, data: DataParams) -> list[tuple[str, str, str, Any]]:
    """(name, definition, column, mask-builder) of the shifted slices, in report order."""
    t = data.age_threshold
    return [
        ("all", "every row of the held-out split", LABEL, lambda f: np.ones(len(f), bool)),
        (
            "credit_amount top decile",
            f"credit_amount >= its {TOP_DECILE:.0%} quantile on the held-out split",
            "credit_amount",
            lambda f: f["credit_amount"] >= f["credit_amount"].quantile(TOP_DECILE),
        ),
        (f"age under {t}", f"{data.age_column} < {t}", data.age_column, lambda f: f[data.age_column] < t),
        (
            f"duration over {LONG_DURATION} months",
            f"duration_months > {LONG_DURATION}",
            "duration_months",
            lambda f: f["duration_months"] > LONG_DURATION,
        ),
        ("foreign_worker no", "foreign_worker == 'no'", "foreign_worker", lambda f: f["foreign_worker"] == "no"),
    ]


def slice_metrics(y: np.ndarray, proba: np.ndarray, *, threshold: float) -> dict[str, Any]:
    """count, AUC (null with a note when undefined), accuracy and approval rate of one slice."""
    if len(y) == 0:
        return {"count": 0, "auc": None, "accuracy": None, "approval_rate": None, "note": EMPTY_SLICE}
    decision = (proba >= threshold).astype(int)
    result: dict[str, Any] = {
        "count": len(y),
        "accuracy": float(accuracy_score(y, decision)),
        "approval_rate": float(decision.mean()),
    }
    if len(np.unique(y)) < 2:
        return {**result, "auc": None, "note": ONE_CLASS.format(value=int(y[0]))}
    return {**result, "auc": float(roc_auc_score(y, proba))}


def shifted_slices(
    model: Pipeline, frame: pd.DataFrame, *, data: DataParams, threshold: float, min_size: int
) -> tuple[list[dict[str, Any]], list[str]]:
    """Metrics per slice, and the flags (small or skipped slices, undefined AUC)."""
    proba = positive_proba(model, frame)
    y = frame[LABEL].to_numpy()
    slices, flags = [], []
    for name, definition, column, mask_of in slice_definitions(data=data):
        if column not in frame.columns:
            flags.append(MISSING_SLICE.format(name=name, column=column))
            continue
        mask = np.asarray(mask_of(frame), bool)
        entry = {"name": name, "definition": definition, **slice_metrics(y[mask], proba[mask], threshold=threshold)}
        entry["small"] = entry["count"] < min_size
        if entry["small"]:
            flags.append(SMALL_SLICE.format(name=name, count=entry["count"], minimum=min_size))
        if entry["auc"] is None:
            flags.append(f"slice '{name}': {entry['note']}")
        slices.append(entry)
    return slices, flags


def cross_age_threshold(age: pd.Series, *, threshold: int) -> pd.Series:
    """Mirror each age across the threshold (22 → 27 for 25), kept to valid ages on the other side."""
    mirrored = 2 * threshold - 1 - age.to_numpy()
    under = age.to_numpy() < threshold
    low = min(MIN_AGE, threshold - 1)
    moved = np.where(under, np.maximum(mirrored, threshold), np.clip(mirrored, low, threshold - 1))
    return pd.Series(moved.astype(age.dtype), index=age.index, name=age.name)


def change_protected(frame: pd.DataFrame, attribute: str, *, data: DataParams) -> pd.DataFrame | None:
    """A copy with only `attribute` changed (age across the threshold, others to another value)."""
    changed = frame.copy()
    if attribute == data.age_column:
        changed[attribute] = cross_age_threshold(frame[attribute], threshold=data.age_threshold)
        if AGE_GROUP in changed:
            changed[AGE_GROUP] = age_groups(changed[attribute], threshold=data.age_threshold)
        return changed
    values = sorted(frame[attribute].dropna().unique())
    if len(values) < 2:
        return None
    following = {v: values[(i + 1) % len(values)] for i, v in enumerate(values)}  # a swap when binary
    changed[attribute] = frame[attribute].map(following)
    return changed


def protected_flips(
    model: Pipeline, frame: pd.DataFrame, *, data: DataParams, threshold: float
) -> dict[str, dict[str, Any]]:
    """Decision flip rate when only one protected attribute changes, for each of data.protected."""
    features = set(model.feature_names_in_)
    result: dict[str, dict[str, Any]] = {}
    for attribute in data.protected:
        changed = change_protected(frame, attribute, data=data)
        if changed is None:
            result[attribute] = {"flip_rate": None, "note": ONE_VALUE.format(attribute=attribute)}
            continue
        flipped, delta = _compare(model, frame, changed, threshold=threshold)
        used = attribute in features or (attribute == data.age_column and AGE_GROUP in features)
        result[attribute] = {
            "flip_rate": float(flipped.mean()),
            "mean_abs_proba_change": float(delta.mean()),
            "note": (IS_A_FEATURE if used else NOT_A_FEATURE).format(attribute=attribute),
        }
    return result


def robustness(model: Pipeline, test: pd.DataFrame, train: pd.DataFrame, *, params: Params) -> dict[str, Any]:
    """The robustness report for `model` on the held-out split (train supplies valid category values)."""
    rb, data, threshold = params.robustness, params.data, params.evaluate.threshold
    features = list(model.feature_names_in_)
    numeric = [c for c in features if pd.api.types.is_numeric_dtype(test[c])]
    hidden = {*data.protected, AGE_GROUP}
    categorical = [c for c in features if c not in numeric and c not in hidden]

    def stability(columns: list[str], seed: int) -> dict[str, float]:
        return noise_stability(
            model,
            test,
            columns=columns,
            noise=rb.numeric_noise,
            n_draws=rb.n_perturbations,
            seed=seed,
            threshold=threshold,
        )

    overall = stability(numeric, rb.seed)
    per_feature = {c: stability([c], rb.seed + 1 + k) for k, c in enumerate(numeric)}
    slices, slice_flags = shifted_slices(model, test, data=data, threshold=threshold, min_size=rb.min_slice_size)
    protected = protected_flips(model, test, data=data, threshold=threshold)
    flagged = overall["flip_rate"] > rb.max_flip_rate
    flags = (
        [NOISE_FLIPS.format(noise=rb.numeric_noise, rate=overall["flip_rate"], limit=rb.max_flip_rate)]
        if flagged
        else []
    )
    flags += [
        PROTECTED_FLIPS.format(attribute=a, rate=p["flip_rate"])
        for a, p in protected.items()
        if p["flip_rate"] is not None and p["flip_rate"] > 0
    ]
    return {
        "n": len(test),
        "threshold": threshold,
        "perturbation": {
            "numeric_noise": rb.numeric_noise,
            "n_perturbations": rb.n_perturbations,
            "features": numeric,
            **overall,
            "flagged": flagged,
            "by_feature": per_feature,
        },
        "category_swaps": category_swaps(
            model,
            test,
            choices={c: sorted(train[c].dropna().unique()) for c in categorical},
            seed=rb.seed,
            threshold=threshold,
            max_flip_rate=rb.max_flip_rate,
        ),
        "slices": slices,
        "protected_flip": protected,
        "flags": flags + slice_flags,
    }


def main() -> None:
    import joblib

    from tasks.stage import stage_context, write_json

    started = time.perf_counter()
    ctx = stage_context()
    layout, params = ctx.layout, ctx.params
    model = joblib.load(layout.model_file)
    test, train = pd.read_parquet(layout.prepared_test), pd.read_parquet(layout.prepared_train)
    report = robustness(model, test, train, params=params)
    write_json(layout.report("robustness"), report)
    p = report["perturbation"]
    print(
        f"robustness: noise flip rate {p['flip_rate']:.3f}, mean |dP| {p['mean_abs_proba_change']:.4f}, "
        f"category swap flip rate {report['category_swaps']['flip_rate']:.3f}; {len(report['flags'])} flag(s); "
        f"{time.perf_counter() - started:.1f} s"
    )


if __name__ == "__main__":
    from tasks.stage import run_stage

    run_stage(main)

"""Robustness stage: do decisions survive small input noise, shifted slices and protected-attribute swaps?

Every check passes a modified copy of the held-out split through the model and compares decisions at
params.evaluate.threshold with those on the unmodified rows. What is valid, which slices are examined and which
attributes are protected all come from the use case (its raw suite's ranges, `slices`, `protected`, `groups`).
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.pipeline import Pipeline

from steward.params import Params
from steward.usecase import Group, Slice, UseCase
from steward.usecase_check import suite_columns
from tasks.data.features import LABEL
from tasks.model.evaluate import positive_proba

Ranges = Mapping[str, tuple[float, float]]
OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}

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


def valid_ranges(suite: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """(low, high) of each column the raw suite bounds (an open side is infinite)."""
    ranges = {}
    for column, rules in suite_columns(suite).items():
        low, high = rules.get("min"), rules.get("max")
        if low is not None or high is not None:
            ranges[column] = (-np.inf if low is None else float(low), np.inf if high is None else float(high))
    return ranges


def perturb_numeric(
    frame: pd.DataFrame,
    *,
    columns: Sequence[str],
    noise: float,
    rng: np.random.Generator,
    ranges: Ranges | None = None,
) -> pd.DataFrame:
    """x · (1 + noise · N(0, 1)) per value, clipped to `ranges` (the raw suite's); integer columns stay integers.

    A column without a range stays ≥ 0 if it was.
    """
    ranges = ranges or {}
    out = frame.copy()
    for column in columns:
        original = frame[column]
        low, high = ranges.get(column, (0.0 if original.min() >= 0 else -np.inf, np.inf))
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
    ranges: Ranges | None = None,
) -> dict[str, float]:
    """Decision flip rate and mean |Δ P(favourable)| over n_draws noisy copies of `columns` (all at once)."""
    rng = np.random.default_rng(seed)
    flips, deltas = [], []
    for _ in range(n_draws):
        changed = perturb_numeric(frame, columns=columns, noise=noise, rng=rng, ranges=ranges)
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


def slice_definition(spec: Slice) -> str:
    """How a slice is chosen, in words."""
    if spec.quantile is not None:
        return f"{spec.column} {spec.op} its {spec.quantile:.0%} quantile on the held-out split"
    return f"{spec.column} {spec.op} {spec.value!r}"


def slice_mask(frame: pd.DataFrame, spec: Slice) -> np.ndarray:
    """The rows of `spec`'s slice; a row whose column is missing is in no slice."""
    values = frame[spec.column]
    threshold = values.quantile(spec.quantile) if spec.quantile is not None else spec.value
    return np.asarray(values.notna() & OPERATORS[spec.op](values, threshold), bool)


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
    model: Pipeline, frame: pd.DataFrame, *, usecase: UseCase, threshold: float, min_size: int
) -> tuple[list[dict[str, Any]], list[str]]:
    """Metrics on every row, then per slice of the use case; and the flags (small or skipped slices, no AUC)."""
    proba = positive_proba(model, frame)
    y = frame[LABEL].to_numpy()
    everything = ("all", "every row of the held-out split", np.ones(len(frame), bool))
    chosen = [everything]
    slices, flags = [], []
    for spec in usecase.slices:
        if spec.column not in frame.columns:
            flags.append(MISSING_SLICE.format(name=spec.name, column=spec.column))
            continue
        chosen.append((spec.name, slice_definition(spec), slice_mask(frame, spec)))
    for name, definition, mask in chosen:
        entry = {"name": name, "definition": definition, **slice_metrics(y[mask], proba[mask], threshold=threshold)}
        entry["small"] = entry["count"] < min_size
        if entry["small"]:
            flags.append(SMALL_SLICE.format(name=name, count=entry["count"], minimum=min_size))
        if entry["auc"] is None:
            flags.append(f"slice '{name}': {entry['note']}")
        slices.append(entry)
    return slices, flags


def cross_group(values: pd.Series, *, group: Group, low: float) -> pd.Series:
    """Mirror each value across its nearest cut into the neighbouring bin (22 → 27 for a cut at 25), not below `low`.

    Integer columns mirror so that the last value under a cut and the cut swap (24 ↔ 25).
    """
    x = values.to_numpy(dtype=float)
    cuts = np.asarray(group.cuts, dtype=float)
    integer = pd.api.types.is_integer_dtype(values)
    unit = 1.0 if integer else 0.0
    nearest = np.abs(x[:, None] - cuts[None, :]).argmin(axis=1)
    cut = cuts[nearest]
    below_edge = np.concatenate([[-np.inf], cuts])[nearest]  # the bin under the cut starts here
    above_edge = np.concatenate([cuts, [np.inf]])[nearest + 1]  # the bin over the cut ends before this
    under_top = cut - 1 if integer else np.nextafter(cut, -np.inf)
    over_top = above_edge - 1 if integer else np.nextafter(above_edge, -np.inf)
    mirrored = 2 * cut - unit - x
    floor = np.minimum(np.maximum(low, below_edge), under_top)
    moved = np.where(x < cut, np.clip(mirrored, cut, over_top), np.clip(mirrored, floor, under_top))
    return pd.Series(moved.astype(values.dtype), index=values.index, name=values.name)


def change_protected(
    frame: pd.DataFrame, attribute: str, *, usecase: UseCase, ranges: Ranges | None = None
) -> pd.DataFrame | None:
    """A copy with only `attribute` changed, and the groups derived from it recomputed.

    A group's source column moves across the group's nearest cut (not below its valid low: the raw suite's
    minimum, else the lowest value seen); any other attribute takes the next value of its sorted values.
    """
    changed = frame.copy()
    derived = {name: g for name, g in usecase.groups.items() if g.column == attribute and name in frame}
    binned = next((g for g in usecase.groups.values() if g.column == attribute and g.cuts), None)
    if binned is not None:
        low = (ranges or {}).get(attribute, (float(frame[attribute].min()), np.inf))[0]
        changed[attribute] = cross_group(frame[attribute], group=binned, low=low)
    else:
        values = sorted(frame[attribute].dropna().unique())
        if len(values) < 2:
            return None
        following = {v: values[(i + 1) % len(values)] for i, v in enumerate(values)}  # a swap when binary
        changed[attribute] = frame[attribute].map(following)
    for name, group in derived.items():
        changed[name] = group.assign(changed[attribute])
    return changed


def protected_flips(
    model: Pipeline, frame: pd.DataFrame, *, usecase: UseCase, threshold: float, ranges: Ranges | None = None
) -> dict[str, dict[str, Any]]:
    """Decision flip rate when only one protected attribute changes, for each of the use case's protected."""
    features = set(model.feature_names_in_)
    result: dict[str, dict[str, Any]] = {}
    for attribute in usecase.protected:
        changed = change_protected(frame, attribute, usecase=usecase, ranges=ranges)
        if changed is None:
            result[attribute] = {"flip_rate": None, "note": ONE_VALUE.format(attribute=attribute)}
            continue
        flipped, delta = _compare(model, frame, changed, threshold=threshold)
        derived = {name for name, g in usecase.groups.items() if g.column == attribute}
        used = attribute in features or bool(derived & features)
        result[attribute] = {
            "flip_rate": float(flipped.mean()),
            "mean_abs_proba_change": float(delta.mean()),
            "note": (IS_A_FEATURE if used else NOT_A_FEATURE).format(attribute=attribute),
        }
    return result


def robustness(
    model: Pipeline, test: pd.DataFrame, train: pd.DataFrame, *, params: Params, ranges: Ranges | None = None
) -> dict[str, Any]:
    """The robustness report for `model` on the held-out split.

    `train` supplies the valid category values; `ranges` the valid numeric ones (`valid_ranges` of the raw suite).
    """
    rb, usecase, threshold = params.robustness, params.usecase, params.evaluate.threshold
    features = list(model.feature_names_in_)
    numeric = [c for c in features if pd.api.types.is_numeric_dtype(test[c])]
    hidden = {*usecase.protected, *usecase.groups}
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
            ranges=ranges,
        )

    overall = stability(numeric, rb.seed)
    per_feature = {c: stability([c], rb.seed + 1 + k) for k, c in enumerate(numeric)}
    slices, slice_flags = shifted_slices(model, test, usecase=usecase, threshold=threshold, min_size=rb.min_slice_size)
    protected = protected_flips(model, test, usecase=usecase, threshold=threshold, ranges=ranges)
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

    from tasks.data.suites import read_suite
    from tasks.stage import stage_context, write_json

    started = time.perf_counter()
    ctx = stage_context()
    layout, params = ctx.layout, ctx.params
    model = joblib.load(layout.model_file)
    test, train = pd.read_parquet(layout.prepared_test), pd.read_parquet(layout.prepared_train)
    ranges = valid_ranges(read_suite(layout.project_dir / params.usecase.raw_suite))
    report = robustness(model, test, train, params=params, ranges=ranges)
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

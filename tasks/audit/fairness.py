"""Fairness stage: the model's decisions on the held-out split, by sensitive group, with bootstrap CIs.

Point values and CIs come from the same sufficient statistics, tasks.audit.bootstrap's per-group confusion counts
(and squared-error bins for the Brier score): the point values from the observed counts, the CIs from a
multinomial bootstrap over them, exact for count-based rates. No per-row work is repeated per metric, so an
audit of ten million rows takes seconds; tests check every point value and summary equal to fairlearn's
MetricFrame. `audit` is the pure report body, for any scores (mitigation, the gate and benchmarks reuse it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks.audit.bootstrap import (
    BRIER_BINS,
    FAIRNESS_SUMMARIES,
    UNDEFINED_RATE,
    GroupBootstrap,
    as_categories,
    attribute_name,
    attribute_rng,
    audited,
    bootstrap_groups,
    check_attributes,
    error_order,
    group_labels,
    metric,
    summary_note,
)
from tasks.model.evaluate import positive_proba

RATES = ("selection_rate", "tpr", "fpr", "fnr", "precision", "brier")
NO_PREDICT_PROBA = "the model ({kind}) has no predict_proba: the fairness audit needs P(favourable) scores"
LENGTH_MISMATCH = "y_true ({y}), proba ({proba}) and sensitive ({sensitive}) must have the same length"
SMALL_GROUP = "{attribute}: group {group!r} has {count} rows (< {min_group_size}): flagged, left out of summaries"
TOO_FEW_LARGE_GROUPS = "{attribute}: fewer than 2 groups with at least {min_group_size} rows: summaries are null"
UNDEFINED_IN_GROUP = "{attribute}: {rate} is undefined for group {group!r} ({why})"
METHOD = (
    "Point values: by group from the confusion counts (Brier: the mean squared error), equal to fairlearn "
    "MetricFrame's (tested). "
    "CIs: {level:.0%} percentile bootstrap, {n_boot} resamples of the rows (seed {seed}, one stream per "
    "attribute) drawn as multinomial counts over the group x label x decision cells, which is exactly a row "
    "bootstrap for every count-based rate; the Brier score resamples {bins} equal-count squared-error bins "
    "per cell (variation inside a bin is ignored). Undefined (0/0) draws are ignored; a CI is null when more "
    "than half are undefined. Summaries (max - min, min / max) are over groups of at least {min_group_size} "
    "rows. A gap cannot be negative, so when groups are close its percentile CI leans away from 0 and may "
    "sit above the point value: its upper bound is then conservative."
)


def scores(model: Any, frame: pd.DataFrame) -> np.ndarray:
    """P(favourable) per row; a model without predict_proba is a clear error."""
    if not hasattr(model, "predict_proba"):
        raise TypeError(NO_PREDICT_PROBA.format(kind=type(model).__name__))
    return positive_proba(model, frame)


def _attribute_report(
    boot: GroupBootstrap, *, name: str, ci_level: float, min_group_size: int
) -> tuple[dict[str, Any], list[str]]:
    groups: dict[str, Any] = {}
    flags: list[str] = []
    for i, group in enumerate(boot.groups):
        count_ = int(boot.point["count"][i])
        body: dict[str, Any] = {
            "count": count_,
            "positives": int(boot.point["positives"][i]),
            "small": bool(boot.small[i]),
        }
        for rate in RATES:
            body[rate] = metric(
                boot.point[rate][i], boot.draws[rate][:, i], ci_level=ci_level, note=UNDEFINED_RATE[rate]
            )
            if body[rate]["value"] is None and not boot.small[i]:
                why = UNDEFINED_RATE[rate].removeprefix("undefined: ")
                flags.append(UNDEFINED_IN_GROUP.format(attribute=name, rate=rate, group=group, why=why))
        if boot.small[i]:
            flags.append(SMALL_GROUP.format(attribute=name, group=group, count=count_, min_group_size=min_group_size))
        groups[group] = body
    if (~boot.small).sum() < 2:
        flags.append(TOO_FEW_LARGE_GROUPS.format(attribute=name, min_group_size=min_group_size))
    summary = {
        key: metric(
            boot.summary_point[key],
            boot.summary_draws[key],
            ci_level=ci_level,
            note=summary_note(key, boot, min_group_size=min_group_size),
        )
        for key in FAIRNESS_SUMMARIES
    }
    return {"groups": groups, "summary": summary}, flags


def audit(
    y_true: np.ndarray | pd.Series,
    proba: np.ndarray | pd.Series,
    sensitive: pd.DataFrame,
    *,
    threshold: float,
    n_boot: int,
    ci_level: float,
    min_group_size: int,
    seed: int,
    attributes: Sequence[str],
    intersections: Sequence[Sequence[str]],
) -> dict[str, Any]:
    """The fairness report body for scores `proba` (P(label = 1)), decisions at `threshold`."""
    y = np.asarray(y_true).astype(np.int64)
    p = np.asarray(proba, dtype=float)
    if not len(y) == len(p) == len(sensitive):
        raise ValueError(LENGTH_MISMATCH.format(y=len(y), proba=len(p), sensitive=len(sensitive)))
    combos = audited(attributes, intersections)
    check_attributes(sensitive.columns, combos)
    decision = (p >= threshold).astype(np.int64)
    coded = as_categories(sensitive[sorted({c for combo in combos for c in combo})].reset_index(drop=True))
    order = error_order(y, p)  # one sort of the squared errors serves every attribute
    report: dict[str, Any] = {}
    flags: list[str] = []
    for columns in combos:
        name = attribute_name(columns)
        boot = bootstrap_groups(
            group_labels(coded, columns),
            y,
            decision=decision,
            proba=p,
            n_boot=n_boot,
            min_group_size=min_group_size,
            rng=attribute_rng(seed, name),
            order=order,
        )
        report[name], found = _attribute_report(boot, name=name, ci_level=ci_level, min_group_size=min_group_size)
        flags += found
    method = METHOD.format(level=ci_level, n_boot=n_boot, seed=seed, bins=BRIER_BINS, min_group_size=min_group_size)
    return {
        "n": len(y),
        "threshold": threshold,
        "ci_level": ci_level,
        "n_boot": n_boot,
        "min_group_size": min_group_size,
        "method": method,
        "attributes": report,
        "flags": flags,
    }


def plot_rates(report: dict[str, Any], path: Path, *, rates: Sequence[str], title: str) -> None:
    """One panel per attribute: each group's rates with CI error bars (hollow markers: small groups)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tasks.stage import save_figure

    attributes = report["attributes"]
    fig, axes = plt.subplots(
        1, len(attributes), figsize=(3.2 * len(attributes) + 1, 4), dpi=100, sharey=True, squeeze=False
    )
    colours = ("tab:blue", "tab:orange", "tab:green")
    for ax, (name, body) in zip(axes[0], attributes.items(), strict=True):
        labels = list(body["groups"])
        for r, rate in enumerate(rates):
            offset = (r - (len(rates) - 1) / 2) * 0.2
            for x, label in enumerate(labels):
                group, value = body["groups"][label], body["groups"][label][rate]
                if value["value"] is None:
                    continue
                low, high = value["ci"] or (value["value"], value["value"])
                ax.errorbar(
                    x + offset, value["value"], yerr=[[value["value"] - low], [high - value["value"]]],
                    fmt="o", capsize=3, color=colours[r % len(colours)], mfc="white" if group["small"] else None,
                    label=rate if x == 0 else None,
                )  # fmt: skip
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
        ax.set(title=name, xlim=(-0.5, len(labels) - 0.5), ylim=(-0.05, 1.05))
    axes[0][0].set_ylabel(f"rate ({report['ci_level']:.0%} CI)")
    axes[0][0].legend(loc="lower left", fontsize=8)
    fig.suptitle(f"{title} at threshold {report['threshold']} (hollow: small group)")
    fig.tight_layout()
    save_figure(fig, path)


def main() -> None:
    import joblib

    from tasks.data.features import LABEL
    from tasks.stage import stage_context, write_json

    ctx = stage_context()
    layout, params = ctx.layout, ctx.params
    test = pd.read_parquet(layout.prepared_test)
    check_attributes(test.columns, audited(params.usecase.sensitive, params.usecase.intersections))
    options = params.fairness
    report = audit(
        test[LABEL].to_numpy(),
        scores(joblib.load(layout.model_file), test),
        test,
        threshold=params.evaluate.threshold,
        n_boot=options.n_boot,
        ci_level=options.ci_level,
        min_group_size=options.min_group_size,
        seed=options.seed,
        attributes=params.usecase.sensitive,
        intersections=params.usecase.intersections,
    )
    write_json(layout.report("fairness"), report)
    plot_rates(
        report, layout.report("fairness", "/selection_rates.png"), rates=["selection_rate"], title="Selection rates"
    )
    plot_rates(report, layout.report("fairness", "/error_rates.png"), rates=["tpr", "fpr"], title="Error rates")
    for name, body in report["attributes"].items():
        dp = body["summary"]["demographic_parity_ratio"]
        eo = body["summary"]["equalized_odds_difference"]
        print(f"fairness: {name}: DP ratio {dp['value']} CI {dp['ci']}; EO difference {eo['value']} CI {eo['ci']}")
    for flag in report["flags"]:
        print(f"fairness: flag: {flag}")


if __name__ == "__main__":
    from tasks.stage import run_stage

    run_stage(main)

"""Data-bias stage: group sizes and favourable-outcome base rates in the raw snapshot, before any model.

For each sensitive attribute and intersection: counts and shares, base rates with bootstrap CIs
(tasks.audit.bootstrap), the max - min difference and min / max ratio over groups of at least min_group_size
rows, and the four-fifths rule judged on the ratio's lower CI bound (a pass must survive sampling noise).
Every figure comes from the group x label counts, and groups are integer codes, so ten million rows take seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks.audit.bootstrap import (
    UNDEFINED_RATE,
    GroupBootstrap,
    as_categories,
    attribute_name,
    attribute_rng,
    audited,
    bootstrap_groups,
    check_attributes,
    group_labels,
    metric,
    summary_note,
)
from tasks.data.features import LABEL

FOUR_FIFTHS = 0.8
SMALL_GROUP = "{attribute}: group {group!r} has {count} rows (< {min_group_size}): flagged, left out of summaries"
TOO_FEW_LARGE_GROUPS = "{attribute}: fewer than 2 groups with at least {min_group_size} rows: no summary"
FAILS_FOUR_FIFTHS = "{attribute}: base-rate ratio CI lower bound {low:.3f} < 0.8 (four-fifths rule not shown to hold)"
RATIO_UNDEFINED = "{attribute}: base-rate ratio has no CI: four-fifths rule not shown to hold"


def _attribute_report(
    boot: GroupBootstrap, *, name: str, n_rows: int, ci_level: float, min_group_size: int
) -> tuple[dict[str, Any], list[str]]:
    groups: dict[str, Any] = {}
    flags: list[str] = []
    for i, group in enumerate(boot.groups):
        count = int(boot.point["count"][i])
        groups[group] = {
            "count": count,
            "share": count / n_rows,
            "base_rate": metric(
                boot.point["base_rate"][i],
                boot.draws["base_rate"][:, i],
                ci_level=ci_level,
                note=UNDEFINED_RATE["base_rate"],
            ),
            "small": bool(boot.small[i]),
        }
        if boot.small[i]:
            flags.append(SMALL_GROUP.format(attribute=name, group=group, count=count, min_group_size=min_group_size))
    summary: dict[str, Any] = {
        key: metric(
            boot.summary_point[key],
            boot.summary_draws[key],
            ci_level=ci_level,
            note=summary_note(key, boot, min_group_size=min_group_size),
        )
        for key in ("base_rate_difference", "base_rate_ratio")
    }
    ratio_ci = summary["base_rate_ratio"]["ci"]
    summary["four_fifths"] = {"passes": ratio_ci is not None and ratio_ci[0] >= FOUR_FIFTHS, "on": "ci_low"}
    if (~boot.small).sum() < 2:
        flags.append(TOO_FEW_LARGE_GROUPS.format(attribute=name, min_group_size=min_group_size))
    elif ratio_ci is None:
        flags.append(RATIO_UNDEFINED.format(attribute=name))
    elif ratio_ci[0] < FOUR_FIFTHS:
        flags.append(FAILS_FOUR_FIFTHS.format(attribute=name, low=ratio_ci[0]))
    large = [(rate, g) for g, rate, s in zip(boot.groups, boot.point["base_rate"], boot.small, strict=True)
             if not s and np.isfinite(rate)]  # fmt: skip
    reference = max(large)[1] if large else None
    return {"groups": groups, "reference": reference, "summary": summary}, flags


def data_bias(
    frame: pd.DataFrame,
    *,
    attributes: Sequence[str],
    intersections: Sequence[Sequence[str]],
    favourable: str,
    n_boot: int,
    ci_level: float,
    min_group_size: int,
    seed: int,
) -> dict[str, Any]:
    """The data_bias report body for a feature frame (its 0/1 `label` column: 1 = favourable)."""
    combos = audited(attributes, intersections)
    check_attributes(frame.columns, combos)
    y = frame[LABEL].to_numpy()
    coded = as_categories(frame[sorted({c for combo in combos for c in combo})])
    report: dict[str, Any] = {}
    flags: list[str] = []
    for columns in combos:
        name = attribute_name(columns)
        boot = bootstrap_groups(
            group_labels(coded, columns),
            y,
            n_boot=n_boot,
            min_group_size=min_group_size,
            rng=attribute_rng(seed, name),
        )
        report[name], found = _attribute_report(
            boot, name=name, n_rows=len(frame), ci_level=ci_level, min_group_size=min_group_size
        )
        flags += found
    return {
        "n_rows": len(frame),
        "favourable": favourable,
        "ci_level": ci_level,
        "n_boot": n_boot,
        "min_group_size": min_group_size,
        "attributes": report,
        "flags": flags,
    }


def plot_base_rates(report: dict[str, Any], path: Path) -> None:
    """One panel per attribute: each group's base rate with its CI as an error bar (small groups grey)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tasks.stage import save_figure

    attributes = report["attributes"]
    fig, axes = plt.subplots(
        1, len(attributes), figsize=(3.2 * len(attributes) + 1, 4), dpi=100, sharey=True, squeeze=False
    )
    for ax, (name, body) in zip(axes[0], attributes.items(), strict=True):
        labels = list(body["groups"])
        for x, label in enumerate(labels):
            group = body["groups"][label]
            rate = group["base_rate"]
            if rate["value"] is None:
                continue
            low, high = rate["ci"] or (rate["value"], rate["value"])
            ax.errorbar(
                x, rate["value"], yerr=[[rate["value"] - low], [high - rate["value"]]], fmt="o", capsize=4,
                color="grey" if group["small"] else "tab:blue",
            )  # fmt: skip
        if body["reference"] is not None:
            reference = body["groups"][body["reference"]]["base_rate"]["value"]
            ax.axhline(FOUR_FIFTHS * reference, linestyle="--", color="tab:red", linewidth=1)
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
        ax.set(title=name, xlim=(-0.5, len(labels) - 0.5), ylim=(-0.05, 1.05))
    axes[0][0].set_ylabel(f"share {report['favourable']} ({report['ci_level']:.0%} CI)")
    fig.suptitle("Base rates in the raw data (grey: small group; dashed: 4/5 of the reference group)")
    fig.tight_layout()
    save_figure(fig, path)


def main() -> None:
    from tasks.data.features import read_snapshot, to_feature_frame
    from tasks.stage import stage_context, write_json

    ctx = stage_context()
    layout, params = ctx.layout, ctx.params
    frame = to_feature_frame(read_snapshot(layout.raw_data), usecase=params.usecase)
    options = params.data_bias
    report = data_bias(
        frame,
        attributes=params.usecase.sensitive,
        intersections=params.usecase.intersections,
        favourable=str(params.usecase.label.favourable),
        n_boot=options.n_boot,
        ci_level=options.ci_level,
        min_group_size=options.min_group_size,
        seed=options.seed,
    )
    write_json(layout.report("data_bias"), report)
    plot_base_rates(report, layout.report("data_bias", "/base_rates.png"))
    for name, body in report["attributes"].items():
        ratio = body["summary"]["base_rate_ratio"]
        print(f"data_bias: {name}: base-rate ratio {ratio['value']} CI {ratio['ci']}")
    for flag in report["flags"]:
        print(f"data_bias: flag: {flag}")


if __name__ == "__main__":
    from tasks.stage import run_stage

    run_stage(main)

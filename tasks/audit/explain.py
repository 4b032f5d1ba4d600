"""Explain stage: SHAP attributions of the model, summed back to the original columns, and proxy detection.

SHAP runs on the estimator over the encoded columns, in log-odds (tasks/serving/attribution.py): exact for
gradient boosting (TreeExplainer) and logistic regression (LinearExplainer), a model-agnostic permutation
explainer on a background sample for any other classifier, which the report says. For every explained row,
base value + Σ SHAP must equal the log-odds the explainer explains.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.metrics import mutual_info_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline

from steward.params import Params
from steward.usecase import UseCase
from tasks.model.evaluate import positive_proba
from tasks.serving.attribution import aggregate, build_explainer, encoded_sources, explain_rows
from tasks.serving.reasons import reason_codes

BEESWARM_NOTE = "aggregated per original column; colour = value for numeric columns, grey for categorical ones"


def importance(aggregated: pd.DataFrame) -> list[dict[str, Any]]:
    """Mean |SHAP| per original column, largest first (ties by name)."""
    means = aggregated.abs().mean(axis=0) if len(aggregated) else aggregated.sum(axis=0) * 0.0
    ranked = sorted(means.items(), key=lambda fm: (-fm[1], fm[0]))
    return [{"feature": f, "mean_abs_shap": round(float(m), 8)} for f, m in ranked]


def importance_by_group(
    aggregated: pd.DataFrame, groups: pd.DataFrame, *, attributes: list[str]
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """importance() within each group of each attribute (rows aligned with `groups`)."""
    result: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for attr in attributes:
        labels = groups[attr].astype(str).to_numpy()
        result[attr] = {g: importance(aggregated[labels == g]) for g in sorted(set(labels))}
    return result


def local_explanations(
    rows: pd.DataFrame,
    aggregated: pd.DataFrame,
    proba: np.ndarray,
    *,
    threshold: float,
    top_k: int,
    protected: list[str],
) -> list[dict[str, Any]]:
    """Decision, probability and reason codes for each row given (`synthetic_examples`), numbered; `protected`
    (the use case's never-changed columns) are never cited as reasons."""
    out = []
    for i in range(len(rows)):
        decision: Literal["approve", "decline"] = "approve" if proba[i] >= threshold else "decline"
        reasons = reason_codes(
            aggregated.iloc[i].to_dict(),
            rows.iloc[i].to_dict(),
            decision=decision,
            top_k=top_k,
            protected=protected,
        )
        out.append(
            {
                "example": i + 1,
                "probability": round(float(proba[i]), 6),
                "decision": decision,
                "reasons": reasons,
            }
        )
    return out


def synthetic_examples(rows: pd.DataFrame, n: int, *, seed: int) -> pd.DataFrame:
    """`n` applicants nobody is: each column's value drawn from a different explained row (independently per
    column), so the report's local examples show how the model reasons on realistic values without describing a
    person (reports are committed and frozen into evidence packs, which cannot erase anyone)."""
    rng = np.random.default_rng(seed)
    n = min(n, len(rows))
    drawn = {column: rows[column].to_numpy()[rng.choice(len(rows), size=n, replace=False)] for column in rows}
    return pd.DataFrame(drawn, index=range(n)).astype(rows.dtypes.to_dict())


# --- proxies: can a model feature stand in for a protected attribute? ---------------------------------

QUANTILE_BINS = 5  # few bins: plug-in MI is biased up by about (bins - 1) * (classes - 1) / 2n
PROBE_FOLDS = 5


def discretise(values: pd.Series, *, bins: int = QUANTILE_BINS) -> np.ndarray:
    """Integer codes: numeric columns with more than `bins` distinct values in quantile bins, others as is."""
    if pd.api.types.is_numeric_dtype(values) and values.nunique() > bins:
        values = pd.qcut(values, q=bins, duplicates="drop")
    return pd.factorize(values.astype(str), sort=True)[0]


def probe_auc(feature: np.ndarray, target: np.ndarray, *, seed: int) -> float | None:
    """Out-of-fold AUC of a probe predicting `target` from one discretised feature (integer codes).

    The probe is the per-code frequency of each class on the training folds (add-one smoothed): the best
    classifier of the target from that feature alone. One-vs-rest macro AUC for a multi-class target;
    None when a class is too rare to cross-validate.
    """
    classes, y = np.unique(target, return_inverse=True)
    folds = min(PROBE_FOLDS, int(np.bincount(y).min())) if len(classes) > 1 else 0
    if folds < 2:
        return None
    proba = np.zeros((len(y), len(classes)))
    for fit_rows, held_out in StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(feature, y):
        counts = np.ones((int(feature.max()) + 1, len(classes)))
        np.add.at(counts, (feature[fit_rows], y[fit_rows]), 1.0)
        proba[held_out] = (counts / counts.sum(axis=1, keepdims=True))[feature[held_out]]
    if len(classes) == 2:
        return float(roc_auc_score(y, proba[:, 1]))
    return float(roc_auc_score(y, proba, multi_class="ovr", average="macro"))


def audited_attributes(usecase: UseCase) -> list[str]:
    """What proxies are sought for: the protected attributes, then the derived groups."""
    return list(dict.fromkeys([*usecase.protected, *usecase.groups]))


def probe_column(attribute: str, *, usecase: UseCase, columns: Any) -> str:
    """The column a proxy probe predicts for `attribute`: its derived group if it is one's source, else itself."""
    return next((name for name, g in usecase.groups.items() if g.column == attribute and name in columns), attribute)


def proxy_table(
    frame: pd.DataFrame, *, features: list[str], attributes: list[str], params: Params
) -> list[dict[str, Any]]:
    """Mutual information and probe AUC of every (feature, protected attribute) pair, flagged over threshold.

    The information is normalised by the attribute's entropy (the share of its uncertainty one feature removes),
    so one threshold means the same for a two-valued attribute and for age in quantile bins. The probe predicts
    the attribute itself, or, for the source column of a derived group (age), that group (age_group).
    """
    ex, usecase = params.explain, params.usecase
    own = {*attributes, *usecase.protected, *usecase.groups}  # the attributes are not proxies of each other
    rows = []
    for attribute in attributes:
        target = frame[probe_column(attribute, usecase=usecase, columns=frame.columns)]
        attr_codes, probe_target = discretise(frame[attribute]), discretise(target)
        entropy = float(mutual_info_score(attr_codes, attr_codes))  # H(A) = I(A; A)
        for feature in (f for f in features if f not in own):
            codes = discretise(frame[feature])
            mi = float(mutual_info_score(attr_codes, codes))
            share = mi / entropy if entropy > 0 else 0.0
            auc = probe_auc(codes, probe_target, seed=ex.seed)
            flagged = share > ex.proxy_nmi_threshold or (auc is not None and auc > ex.proxy_auc_threshold)
            rows.append(
                {
                    "feature": feature,
                    "attribute": attribute,
                    "mutual_information": round(mi, 6),
                    "normalized_mutual_information": round(share, 6),
                    "probe_auc": None if auc is None else round(auc, 6),
                    "flagged": flagged,
                }
            )
    return sorted(
        rows, key=lambda r: (not r["flagged"], -r["normalized_mutual_information"], r["feature"], r["attribute"])
    )


# --- plots -------------------------------------------------------------------------------------------------


def _save(fig: Any, path: Path) -> None:
    from tasks.stage import save_figure

    save_figure(fig, path, dpi=100, bbox_inches="tight")


def plot_all(
    aggregated: pd.DataFrame,
    rows: pd.DataFrame,
    report: dict[str, Any],
    *,
    folder: Path,
    root: Path,
    seed: int,
    subject: str = "row",
) -> dict[str, str]:
    """bar.png (global importance), beeswarm.png (aggregated SHAP per row), by_group.png; paths from root."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import shap

    names = list(aggregated.columns)
    numeric = [
        pd.to_numeric(rows[c], errors="coerce").to_numpy(float)
        if pd.api.types.is_numeric_dtype(rows[c])
        else np.full(len(rows), np.nan)  # categorical: no colour scale, drawn grey
        for c in names
    ]
    explanation = shap.Explanation(
        values=aggregated.to_numpy(),
        base_values=np.full(len(rows), report["base_value"]),
        data=np.column_stack(numeric),
        feature_names=names,
    )
    paths = {"bar": folder / "bar.png", "beeswarm": folder / "beeswarm.png", "by_group": folder / "by_group.png"}

    fig = plt.figure()
    shap.plots.bar(explanation, max_display=15, show=False)
    plt.title(f"Mean |SHAP| per original column (log-odds), {len(rows)} test rows")
    _save(fig, paths["bar"])

    fig = plt.figure()
    state = np.random.get_state()
    np.random.seed(seed)  # the beeswarm jitters points with numpy's global generator: same input, same bytes
    with warnings.catch_warnings():  # all-NaN colour data of categorical columns is intended
        warnings.simplefilter("ignore", RuntimeWarning)
        shap.plots.beeswarm(explanation, max_display=15, show=False)
    np.random.set_state(state)
    plt.title(f"SHAP per {subject} (log-odds of the favourable outcome); categorical columns grey")
    _save(fig, paths["beeswarm"])

    top = [g["feature"] for g in report["global_importance"][:8]][::-1]
    by_group = report["by_group"]
    fig, axes = plt.subplots(1, len(by_group), figsize=(5 * len(by_group), 5), sharey=True, squeeze=False)
    for ax, (attr, groups) in zip(axes[0], by_group.items(), strict=True):
        height = 0.8 / max(len(groups), 1)
        for k, (group, ranked) in enumerate(groups.items()):
            value = {r["feature"]: r["mean_abs_shap"] for r in ranked}
            n = report["group_sizes"][attr][group]
            ax.barh(np.arange(len(top)) + k * height, [value[f] for f in top], height, label=f"{group} (n={n})")
        ax.set(yticks=np.arange(len(top)) + 0.4 - height / 2, yticklabels=top, title=attr, xlabel="mean |SHAP|")
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    _save(fig, paths["by_group"])
    return {k: str(v.relative_to(root)) if v.is_relative_to(root) else str(v) for k, v in paths.items()}


def explain(
    model: Pipeline, train: pd.DataFrame, test: pd.DataFrame, *, params: Params
) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """The explain report (without plots), the aggregated SHAP frame and the explained rows."""
    ex, usecase = params.explain, params.usecase
    rows = test.sample(n=min(ex.sample_size, len(test)), random_state=ex.seed).reset_index(drop=True)
    background = train.sample(n=min(ex.background_size, len(train)), random_state=ex.seed)
    explainer = build_explainer(model, background=background)
    attribution = explain_rows(model, rows, explainer=explainer)
    aggregated = aggregate(attribution.values, encoded_sources(model[0]))
    examples = synthetic_examples(rows, ex.local_examples, seed=ex.seed)
    made_up = explain_rows(model, examples, explainer=explainer)
    proxies = proxy_table(
        train,
        features=list(model.feature_names_in_),
        attributes=audited_attributes(usecase),
        params=params,
    )
    report = {
        "explainer": attribution.explainer,
        "explainer_exact": explainer.exact,
        "explainer_note": explainer.note,
        "n_explained": len(rows),
        "base_value": attribution.base_value,
        "additivity_max_error": attribution.additivity_error,
        "global_importance": importance(aggregated),
        "by_group": importance_by_group(aggregated, rows, attributes=usecase.sensitive),
        "group_sizes": {a: rows[a].astype(str).value_counts().sort_index().to_dict() for a in usecase.sensitive},
        "local_note": "synthetic applicants: each field drawn from a different explained applicant",
        "local": local_explanations(
            examples,
            aggregate(made_up.values, encoded_sources(model[0])),
            positive_proba(model, examples),
            threshold=params.evaluate.threshold,
            top_k=ex.top_k_reasons,
            protected=sorted(usecase.never_changed),
        ),
        "proxies": proxies,
        "proxy_method": (
            "on the training split; mutual information of the discretised feature and attribute (numeric "
            "values in quantile bins), normalised by the attribute's entropy; probe = per-value attribute "
            "frequencies of the discretised feature, out-of-fold AUC (one-vs-rest for multi-class attributes; "
            "for the source column of a derived group, the group)"
        ),
        "flags": [
            f"{p['feature']} is a proxy of {p['attribute']} (normalised MI {p['normalized_mutual_information']:.3f}, "
            f"probe AUC {p['probe_auc'] if p['probe_auc'] is None else round(p['probe_auc'], 3)})"
            for p in proxies
            if p["flagged"]
        ],
    }
    return report, aggregated, rows


def main() -> None:
    import joblib

    from tasks.stage import stage_context, write_json

    started = time.perf_counter()
    ctx = stage_context()
    layout, params = ctx.layout, ctx.params
    model = joblib.load(layout.model_file)
    train, test = pd.read_parquet(layout.prepared_train), pd.read_parquet(layout.prepared_test)
    report, aggregated, rows = explain(model, train, test, params=params)
    plots = plot_all(
        aggregated,
        rows,
        report,
        folder=layout.report("explain", ""),
        root=layout.project_dir,
        seed=params.explain.seed,
        subject=params.usecase.words.subject,
    )
    write_json(layout.report("explain"), {**report, "plots": plots, "beeswarm_note": BEESWARM_NOTE})
    top = ", ".join(f"{g['feature']}={g['mean_abs_shap']:.3f}" for g in report["global_importance"][:5])
    print(
        f"explain: {report['explainer']} on {report['n_explained']} rows, additivity error "
        f"{report['additivity_max_error']:.1e}, top {top}; {len(report['flags'])} flag(s); "
        f"{time.perf_counter() - started:.1f} s"
    )


if __name__ == "__main__":
    from tasks.stage import run_stage

    run_stage(main)

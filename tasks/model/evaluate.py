"""Evaluate stage: discrimination and calibration of the model on the held-out split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss, roc_auc_score
from sklearn.pipeline import Pipeline

from tasks.data.features import LABEL

SINGLE_CLASS = "the held-out split holds only label {value}: AUC is undefined"


def positive_proba(model: Pipeline, frame: pd.DataFrame) -> np.ndarray:
    """P(label = 1) for each row, from the columns the model was fitted on."""
    return model.predict_proba(frame[list(model.feature_names_in_)])[:, 1]


def metrics(y_true: np.ndarray, proba: np.ndarray, *, threshold: float) -> dict[str, float]:
    """AUC, accuracy at `threshold`, Brier score and log loss."""
    if len(np.unique(y_true)) < 2:
        raise ValueError(SINGLE_CLASS.format(value=int(y_true[0])))
    decision = (proba >= threshold).astype(int)
    return {
        "auc": float(roc_auc_score(y_true, proba)),
        "accuracy": float(accuracy_score(y_true, decision)),
        "brier": float(brier_score_loss(y_true, proba)),
        "log_loss": float(log_loss(y_true, proba, labels=[0, 1])),
        "approval_rate": float(decision.mean()),
        "base_rate": float(np.mean(y_true)),
        "n": len(y_true),
    }


def calibration_table(y_true: np.ndarray, proba: np.ndarray, *, bins: int) -> pd.DataFrame:
    """Reliability curve: mean predicted probability vs observed positive rate, per quantile bin."""
    observed, predicted = calibration_curve(y_true, proba, n_bins=bins, strategy="quantile")
    return pd.DataFrame({"predicted": predicted.round(6), "observed": observed.round(6)})


def plot_calibration(table: pd.DataFrame, path: Path, *, title: str, favourable: str = "favourable") -> None:
    """The reliability curve; `favourable` names the favourable label on the axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tasks.stage import save_figure

    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    ax.plot(table["predicted"], table["observed"], marker="o", label="model")
    ax.set(
        xlabel=f"mean predicted P({favourable})",
        ylabel=f"observed share {favourable}",
        title=title,
        xlim=(0, 1),
        ylim=(0, 1),
    )
    ax.legend(loc="upper left")
    fig.tight_layout()
    save_figure(fig, path)


def evaluate(
    model: Pipeline, test: pd.DataFrame, *, threshold: float, bins: int
) -> tuple[dict[str, Any], pd.DataFrame]:
    y_true = test[LABEL].to_numpy()
    proba = positive_proba(model, test)
    return metrics(y_true, proba, threshold=threshold), calibration_table(y_true, proba, bins=bins)


def main() -> None:
    import joblib

    from tasks.stage import stage_context, write_json

    ctx = stage_context()
    layout, params = ctx.layout, ctx.params
    model = joblib.load(layout.model_file)
    test = pd.read_parquet(layout.prepared_test)
    scores, table = evaluate(model, test, threshold=params.evaluate.threshold, bins=params.evaluate.calibration_bins)
    write_json(layout.report("evaluate"), {"model": params.train.model, "metrics": scores})
    table.to_csv(layout.report("calibration", ".csv"), index=False)
    plot_calibration(
        table,
        layout.report("calibration", ".png"),
        title=f"Calibration ({params.train.model})",
        favourable=str(params.usecase.label.favourable),
    )
    print("evaluate: " + ", ".join(f"{k}={v:.3f}" for k, v in scores.items() if isinstance(v, float)))


if __name__ == "__main__":
    from tasks.stage import run_stage

    run_stage(main)

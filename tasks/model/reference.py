"""The monitoring reference of a model, computed once at training (DVC stage `reference`) and stored with
the model at registration (a custom object in the BentoML store): what tasks/monitor/window.py compares a window
of the prediction log with.

It holds, for the columns the model reads, what tasks/monitor/drift.py compares with (tasks/monitor/sketch.py: the
deciles and distribution function of each numeric column, the frequencies of each categorical one); the same for
the predicted probability; each sensitive group's approval and error rates on the held-out split under the
service's own decision rule (favourable: P(favourable) at least the threshold and outside the review band); and
each feature's share of the mean absolute SHAP attribution (from the explain stage, which explains the unmitigated
model).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the training flow imports REFERENCE_FILE from here: numpy and pandas load where used
    import numpy as np
    import pandas as pd

PROBABILITY = "probability"
REFERENCE_FILE = "models/reference.json"  # the DVC output; registration stores it with the model


def approvals(probability: np.ndarray, *, threshold: float, band: tuple[float, float]) -> np.ndarray:
    """The service's decision rule: favourable when P(favourable) >= threshold and outside the review band."""
    low, high = band
    return (probability >= threshold) & ~((probability >= low) & (probability < high))


def build_reference(
    train: pd.DataFrame,
    test: pd.DataFrame,
    probability: np.ndarray,
    *,
    inputs: Sequence[str],
    sensitive: Sequence[str],
    label: pd.Series,
    threshold: float,
    band: tuple[float, float],
    attributions: Mapping[str, float],
) -> dict[str, Any]:
    """The reference of one model: `probability` is its P(favourable) on `test`, `label` True where favourable."""
    import numpy as np
    import pandas as pd

    from tasks.monitor.sketch import describe, reference  # not for the training flow, which reads REFERENCE_FILE

    approved = approvals(np.asarray(probability), threshold=threshold, band=band)
    favourable = np.asarray(label, dtype=bool)
    groups: dict[str, dict[str, float]] = {}
    for attribute in sensitive:
        for value in sorted(test[attribute].astype(str).unique()):
            member = (test[attribute].astype(str) == value).to_numpy()
            groups[f"{attribute}={value}"] = {
                "n": int(member.sum()),
                "selection_rate": float(approved[member].mean()),
                "error_rate": float((approved[member] != favourable[member]).mean()),
            }
    total = sum(abs(v) for v in attributions.values()) or 1.0
    return {
        "inputs": reference(train, list(inputs)),
        "prediction": describe(pd.Series(probability)),
        "groups": groups,
        "attributions": {k: abs(v) / total for k, v in attributions.items()},
        "threshold": threshold,
        "band": list(band),
    }


def reference_of(
    model: Any,
    train: pd.DataFrame,
    test: pd.DataFrame,
    *,
    params: Any,
    attributions: Mapping[str, float],
) -> dict[str, Any]:
    """The reference of a fitted pipeline on its feature frames (with the 0/1 label), as the stage builds it."""
    from tasks.data.features import LABEL

    inputs = list(model.feature_names_in_)
    return build_reference(
        train,
        test,
        model.predict_proba(test[inputs])[:, 1],
        inputs=inputs,
        sensitive=list(params.usecase.sensitive),
        label=test[LABEL] == 1,
        threshold=params.evaluate.threshold,
        band=params.serve.review_band,
        attributions=attributions,
    )


def main() -> None:
    """DVC stage `reference`: the candidate's monitoring reference, stored with it at registration."""
    import joblib
    import pandas as pd

    from tasks.stage import read_report, stage_context, write_json

    ctx = stage_context()
    layout, params = ctx.layout, ctx.params
    model = joblib.load(layout.candidate_file)
    importance = read_report(layout.report("explain")).get("global_importance", [])
    built = reference_of(
        model,
        pd.read_parquet(layout.prepared_train),
        pd.read_parquet(layout.prepared_test),
        params=params,
        attributions={row["feature"]: row["mean_abs_shap"] for row in importance},
    )
    write_json(layout / REFERENCE_FILE, built)
    print(f"reference: {len(built['inputs'])} inputs, {len(built['groups'])} groups")


if __name__ == "__main__":
    from tasks.stage import run_stage

    run_stage(main)

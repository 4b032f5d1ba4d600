"""Train stage: a seeded scikit-learn pipeline, one-hot encoding + the classifier train.model names."""

from __future__ import annotations

import joblib
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from steward.params import Params
from tasks.data.features import LABEL, model_features
from tasks.model.estimator import build_estimator, family


def build_pipeline(*, numeric: list[str], categorical: list[str], params: Params) -> Pipeline:
    """Preprocessing and the estimator chosen by train.model, unfitted."""
    estimator = build_estimator(params.train)
    # tree models read raw values (SHAP and their splits stay in the data's units); the rest need a scale
    scale: StandardScaler | str = "passthrough" if family(estimator) == "tree" else StandardScaler()
    preprocess = ColumnTransformer(
        [
            ("numeric", scale, numeric),
            ("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical),
        ],
        verbose_feature_names_out=False,
    )
    return Pipeline([("preprocess", preprocess), ("model", estimator)])


def fit(train: pd.DataFrame, *, params: Params) -> Pipeline:
    """Fit on the model's features of the training frame (protected attributes left out by default)."""
    features = model_features(train.columns, params=params)
    numeric = [c for c in features if pd.api.types.is_numeric_dtype(train[c])]
    categorical = [c for c in features if c not in numeric]
    pipeline = build_pipeline(numeric=numeric, categorical=categorical, params=params)
    return pipeline.fit(train[features], train[LABEL])


def main() -> None:
    from tasks.stage import stage_context

    ctx = stage_context()
    train = pd.read_parquet(ctx.layout.prepared_train)
    model = fit(train, params=ctx.params)
    ctx.layout.model_file.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, ctx.layout.model_file)
    print(f"train: {ctx.params.train.model} on {len(train)} rows, {len(model.feature_names_in_)} input columns")


if __name__ == "__main__":
    from tasks.stage import run_stage

    run_stage(main)

"""Train stage: a seeded scikit-learn pipeline (one-hot + gradient boosting, or logistic regression)."""

from __future__ import annotations

import joblib
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from steward.params import Params
from tasks.data.features import LABEL, model_features


def build_pipeline(*, numeric: list[str], categorical: list[str], params: Params) -> Pipeline:
    """Preprocessing and the estimator chosen by train.model, unfitted."""
    train = params.train
    if train.model == "gradient_boosting":
        gb = train.gradient_boosting
        estimator: GradientBoostingClassifier | LogisticRegression = GradientBoostingClassifier(
            n_estimators=gb.n_estimators,
            learning_rate=gb.learning_rate,
            max_depth=gb.max_depth,
            subsample=gb.subsample,
            random_state=train.seed,
        )
        scale: StandardScaler | str = "passthrough"  # trees do not need it; SHAP stays in raw units
    else:
        lr = train.logistic_regression
        estimator = LogisticRegression(C=lr.C, max_iter=lr.max_iter, random_state=train.seed)
        scale = StandardScaler()
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

"""A real model on synthetic German-credit applications, its monitoring reference, and windows of decisions as the
service logs them: what the monitoring tests (unit and on Dask) judge."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tasks.data.features import LABEL, to_feature_frame
from tasks.model.reference import approvals, build_reference
from tasks.model.train import fit
from tests.usecases import params_for, usecase
from usecases.german_credit.generator import generate_applications

PARAMS = params_for()
BAND = (0.45, 0.55)
INPUTS = ["duration_months", "credit_amount", "checking_status", "purpose", "savings", "housing"]
SENSITIVE = ["sex", "age_group"]


def fitted_model() -> Any:
    """A logistic regression on 8,000 synthetic applications."""
    train = PARAMS.train.model_copy(update={"model": "logistic_regression"})
    return fit(
        to_feature_frame(generate_applications(8_000, seed=1), usecase=PARAMS.usecase),
        params=PARAMS.model_copy(update={"train": train}),
    )


def outcomes(name: str) -> tuple[str, str]:
    """The use case's favourable and unfavourable outcomes as /feedback stores them (strings)."""
    label = usecase(name).label
    return str(label.favourable), str(label.unfavourable)


def served(model: Any, n: int, *, seed: int, name: str = "german_credit", **scenario: Any) -> pd.DataFrame:
    """A window as the service logs it: inputs, probability, decision under the service's rule, and the
    outcome in the words of use case `name`."""
    good, bad = outcomes(name)
    frame = to_feature_frame(generate_applications(n, seed=seed, **scenario), usecase=PARAMS.usecase)
    probability = model.predict_proba(frame[list(model.feature_names_in_)])[:, 1]
    approved = approvals(probability, threshold=0.5, band=BAND)
    return frame.assign(
        probability=probability,
        decision=np.where(approved, "approve", "decline"),
        outcome=np.where(frame[LABEL] == 1, good, bad),
        latency_ms=np.full(n, 20.0),
    )


def reference_of(model: Any) -> dict[str, Any]:
    """The monitoring reference of `model` on 6,000 served applications, as the reference stage builds it."""
    test = served(model, 6_000, seed=2)
    importances = {"checking_status": 1.0, "duration_months": 0.5, "credit_amount": 0.3, "savings": 0.2}
    return build_reference(
        to_feature_frame(generate_applications(8_000, seed=1), usecase=PARAMS.usecase),
        test,
        test["probability"].to_numpy(),
        inputs=INPUTS,
        sensitive=SENSITIVE,
        label=test[LABEL] == 1,
        threshold=0.5,
        band=BAND,
        attributions=importances,
    )


def everything_window(model: Any) -> pd.DataFrame:
    """A drifted window with raised requests, missing outcomes, resolved reviews and a referred case."""
    window = served(model, 6_000, seed=12, drift=1.0).assign(review=None)
    window.loc[:59, "decision"] = "error"
    window.loc[window.index % 5 == 0, "outcome"] = None
    window.loc[100:103, "decision"] = "referred"
    window.loc[100:101, "review"] = "approve"
    window.loc[200:210, "review"] = "decline"
    window["latency_ms"] = np.random.default_rng(12).gamma(2.0, 30.0, len(window))
    return window

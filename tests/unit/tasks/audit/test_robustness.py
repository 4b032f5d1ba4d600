import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from tasks.audit.robustness import (
    NOT_A_FEATURE,
    ONE_CLASS,
    cross_age_threshold,
    noise_stability,
    perturb_numeric,
    protected_flips,
    robustness,
    shifted_slices,
    slice_metrics,
    swap_category,
)
from tasks.data.features import to_feature_frame
from tasks.data.prepare import split
from tasks.model.train import fit
from tests.usecases import parse_for, usecase
from usecases.german_credit.generator import generate_applications

GERMAN_CSV = Path(__file__).resolve().parents[4] / "data/german_credit.csv"


@pytest.fixture(scope="module")
def german_split():
    params = parse_for({"train": {"gradient_boosting": {"n_estimators": 60}}})
    frame = to_feature_frame(pd.read_csv(GERMAN_CSV), usecase=params.usecase)
    train, test = split(frame, params=params)
    return params, fit(train, params=params), train, test


def test_a_model_that_ignores_a_feature_never_flips_when_only_that_feature_moves():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(0, 1, 300), "b": rng.normal(0, 1, 300)})
    y = (frame["a"] + rng.normal(0, 0.5, 300) > 0).astype(int)
    uses_a_only = ColumnTransformer([("numeric", "passthrough", ["a"])])  # `b` is dropped
    model = Pipeline([("preprocess", uses_a_only), ("model", LogisticRegression())]).fit(frame, y)
    assert list(model.feature_names_in_) == ["a", "b"]

    options = {"noise": 0.5, "n_draws": 5, "seed": 0, "threshold": 0.5}
    ignored = noise_stability(model, frame, columns=["b"], **options)
    assert ignored == {"flip_rate": 0.0, "mean_abs_proba_change": 0.0}
    used = noise_stability(model, frame, columns=["a"], **options)
    assert used["flip_rate"] > 0 and used["mean_abs_proba_change"] > 0


def test_perturbation_is_seeded_keeps_integers_and_valid_ranges():
    frame = pd.DataFrame(
        {
            "age": np.array([18, 19, 30, 75] * 50, dtype="int64"),
            "installment_rate": np.array([1, 2, 3, 4] * 50, dtype="int64"),
            "duration_months": np.array([1, 4, 24, 72] * 50, dtype="int64"),
            "score": np.linspace(0.0, 1.0, 200),  # not listed: stays ≥ 0 as it was
        }
    )
    columns = list(frame.columns)
    first = perturb_numeric(frame, columns=columns, noise=0.8, rng=np.random.default_rng(3))
    again = perturb_numeric(frame, columns=columns, noise=0.8, rng=np.random.default_rng(3))
    pd.testing.assert_frame_equal(first, again)
    assert (first.dtypes == frame.dtypes).all()
    assert first["age"].min() >= 18 and first["duration_months"].min() >= 1 and first["score"].min() >= 0
    assert first["installment_rate"].between(1, 4).all()
    assert (first["age"] != frame["age"]).any()


def test_a_category_swap_always_picks_another_valid_value():
    values = pd.Series(["a", "b", "c", "d"] * 250, dtype="str")
    swapped = swap_category(values, choices=["a", "b", "c", "d"], rng=np.random.default_rng(0))
    assert (swapped != values).all()
    assert set(swapped) == {"a", "b", "c", "d"}
    # uniform over the three others: each pair (from, to) about a third of the time
    counts = pd.crosstab(values, swapped).to_numpy()
    off_diagonal = counts[~np.eye(4, dtype=bool)]
    assert off_diagonal.min() > 55 and off_diagonal.max() < 115


def test_a_slice_with_one_class_has_a_null_auc_and_a_note():
    got = slice_metrics(np.ones(8, dtype=int), np.linspace(0.2, 0.9, 8), threshold=0.5)
    assert got["auc"] is None and got["note"] == ONE_CLASS.format(value=1)
    assert got["accuracy"] == pytest.approx(np.mean(np.linspace(0.2, 0.9, 8) >= 0.5))
    assert got["approval_rate"] == got["accuracy"]
    empty = slice_metrics(np.array([], dtype=int), np.array([]), threshold=0.5)
    assert empty["count"] == 0 and empty["auc"] is None and empty["accuracy"] is None


def test_slices_flag_small_and_single_class_slices(german_split):
    params, model, _, test = german_split
    test = test.copy()
    test.loc[test["foreign_worker"] == "no", "label"] = 1  # one class in that slice
    slices, flags = shifted_slices(model, test, usecase=params.usecase, threshold=0.5, min_size=30)
    by_name = {s["name"]: s for s in slices}
    assert set(by_name) == {
        "all", "credit_amount top decile", "age under 25", "duration over 36 months", "foreign_worker no",
    }  # fmt: skip
    foreign = by_name["foreign_worker no"]
    assert foreign["count"] == int((test["foreign_worker"] == "no").sum())
    assert foreign["small"] and foreign["auc"] is None and "only label 1" in foreign["note"]
    assert any("foreign_worker no" in f and "rows (< 30)" in f for f in flags)
    under_25 = by_name["age under 25"]
    assert under_25["count"] == int((test["age"] < 25).sum())


def test_moving_age_across_the_threshold_lands_on_the_other_side_at_a_valid_age():
    age = pd.Series([19, 22, 24, 25, 26, 40, 75], dtype="int64")
    moved = cross_age_threshold(age, threshold=25)
    assert list(moved) == [30, 27, 25, 24, 23, 18, 18]
    assert ((age < 25) != (moved < 25)).all()


def test_protected_flip_is_zero_when_the_attribute_is_not_a_feature_and_measured_when_it_is():
    frame = to_feature_frame(generate_applications(1500, seed=2, bias=1.0), usecase=usecase())
    blind = parse_for({"train": {"model": "logistic_regression"}})
    flips = protected_flips(fit(frame, params=blind), frame, data=blind.data, threshold=0.5)
    for attribute in ("sex", "age", "foreign_worker"):
        assert flips[attribute]["flip_rate"] == 0.0
        assert flips[attribute]["note"] == NOT_A_FEATURE.format(attribute=attribute)

    aware = parse_for({"train": {"model": "logistic_regression"}, "prepare": {"exclude_protected": False}})
    flips = protected_flips(fit(frame, params=aware), frame, data=aware.data, threshold=0.5)
    assert flips["sex"]["flip_rate"] > 0  # the generator lowers women's odds; a model given sex uses it
    assert "is a model feature" in flips["sex"]["note"]


def test_the_report_follows_the_contract_and_is_strict_json(german_split):
    params, model, train, test = german_split
    report = json.loads(json.dumps(robustness(model, test, train, params=params), allow_nan=False))
    perturbation = report["perturbation"]
    assert perturbation["numeric_noise"] == 0.05 and perturbation["n_perturbations"] == 5
    assert 0 <= perturbation["flip_rate"] <= 1 and perturbation["mean_abs_proba_change"] >= 0
    assert perturbation["flagged"] == (perturbation["flip_rate"] > params.robustness.max_flip_rate)
    assert "personal_status" in report["category_swaps"]["by_feature"]
    assert not {"sex", "foreign_worker", "age_group"} & set(report["category_swaps"]["by_feature"])
    assert {p["flip_rate"] for p in report["protected_flip"].values()} == {0.0}
    for entry in report["slices"]:
        assert {"name", "count", "auc", "accuracy", "approval_rate", "small"} <= set(entry)
    assert isinstance(report["flags"], list)

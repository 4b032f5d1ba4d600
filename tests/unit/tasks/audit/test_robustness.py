import json

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from steward.usecase import Group, Slice
from tasks.audit.robustness import (
    MISSING_SLICE,
    NOT_A_FEATURE,
    ONE_CLASS,
    change_protected,
    cross_group,
    noise_stability,
    perturb_numeric,
    protected_flips,
    robustness,
    shifted_slices,
    slice_metrics,
    swap_category,
    valid_ranges,
)
from tasks.data.features import read_snapshot, to_feature_frame
from tasks.data.prepare import split
from tasks.data.suites import read_suite
from tasks.model.train import fit
from tests.conftest import PROJECT_DIR
from tests.usecases import SHIPPED, params_for, parse_for, usecase
from usecases.german_credit.generator import generate_applications

GERMAN_SUITE = read_suite(PROJECT_DIR / "expectations/german_credit.json")


def _expected_slices(name: str, test: pd.DataFrame) -> dict[str, pd.Series]:
    """Each shipped use case's slices, written out by hand in pandas."""
    if name == "german_credit":
        return {
            "credit_amount top decile": test["credit_amount"] >= test["credit_amount"].quantile(0.9),
            "age under 25": test["age"] < 25,
            "duration over 36 months": test["duration_months"] > 36,
            "foreign_worker no": test["foreign_worker"] == "no",
        }
    return {
        "age 65 and over": test["age"] >= 65,
        "part-time (under 30 hours)": test["hours_per_week"] < 30,
        "any capital gains": test["capital_gain"] > 0,
        "born outside the US": test["native_country"].notna() & (test["native_country"] != "United-States"),
        "hours_per_week top decile": test["hours_per_week"] >= test["hours_per_week"].quantile(0.9),
    }


@pytest.fixture(scope="module", params=SHIPPED)
def shipped_split(request):
    """A small model on a use case's vendored data (Adult: 4,000 of its rows)."""
    params = params_for(request.param, train={"gradient_boosting": {"n_estimators": 40}})
    raw = read_snapshot(PROJECT_DIR / params.usecase.dataset.file)
    raw = raw.sample(n=min(4000, len(raw)), random_state=0).reset_index(drop=True)
    train, test = split(to_feature_frame(raw, usecase=params.usecase), params=params)
    ranges = valid_ranges(read_suite(PROJECT_DIR / params.usecase.raw_suite))
    return request.param, params, fit(train, params=params), train, test, ranges


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


def test_the_suite_s_bounds_are_the_valid_ranges():
    ranges = valid_ranges(GERMAN_SUITE)
    assert ranges["age"] == (18, 100) and ranges["installment_rate"] == (1, 4)
    assert "purpose" not in ranges  # a category has a value set, not a range


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
    ranges = valid_ranges(GERMAN_SUITE)
    first = perturb_numeric(frame, columns=columns, noise=0.8, rng=np.random.default_rng(3), ranges=ranges)
    again = perturb_numeric(frame, columns=columns, noise=0.8, rng=np.random.default_rng(3), ranges=ranges)
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


def test_slices_are_the_use_case_s_with_sizes_of_a_plain_computation(shipped_split):
    name, params, model, _, test, _ = shipped_split
    expected = _expected_slices(name, test)
    assert [spec.name for spec in params.usecase.slices] == list(expected)
    last = list(expected)[-1]
    test = test.copy()
    test.loc[expected[last], "label"] = 1  # one class in that slice
    minimum = int(expected[last].sum()) + 1
    slices, flags = shifted_slices(model, test, usecase=params.usecase, threshold=0.5, min_size=minimum)
    assert [s["name"] for s in slices] == ["all", *expected]
    by_name = {s["name"]: s for s in slices}
    assert by_name["all"]["count"] == len(test)
    for slice_name, mask in expected.items():
        assert by_name[slice_name]["count"] == int(mask.sum()), slice_name
    chosen = by_name[last]
    assert chosen["small"] and chosen["auc"] is None and "only label 1" in chosen["note"]
    assert any(last in f and f"rows (< {minimum})" in f for f in flags)


def test_a_slice_on_a_column_the_data_lacks_is_skipped_and_flagged(shipped_split):
    _, params, model, _, test, _ = shipped_split
    spec = Slice(name="nowhere", column="no_such_column", op="==", value=1)
    usecase = params.usecase.model_copy(update={"slices": [*params.usecase.slices, spec]})
    slices, flags = shifted_slices(model, test, usecase=usecase, threshold=0.5, min_size=1)
    assert [s["name"] for s in slices] == ["all", *(s.name for s in params.usecase.slices)]
    assert MISSING_SLICE.format(name=spec.name, column=spec.column) in flags


@pytest.mark.parametrize(
    ("cuts", "low", "expected"),
    [
        ([25], 18, [30, 27, 25, 24, 23, 18, 18]),  # under 25 / 25 and over
        ([25, 65], 16, [30, 27, 25, 24, 23, 16, 54]),  # 40 is nearer 25; 75 mirrors across 65
    ],
)
def test_moving_a_value_across_its_nearest_cut_lands_in_the_neighbouring_bin(cuts, low, expected):
    age = pd.Series([19, 22, 24, 25, 26, 40, 75], dtype="int64")
    group = Group(column="age", cuts=cuts)
    moved = cross_group(age, group=group, low=low)
    assert list(moved) == expected and moved.dtype == age.dtype
    assert (group.assign(moved) != group.assign(age)).all()


def test_changing_a_group_s_source_column_changes_every_row_s_group(shipped_split):
    _, params, _, _, test, ranges = shipped_split
    usecase = params.usecase
    for name, group in usecase.groups.items():
        changed = change_protected(test, group.column, usecase=usecase, ranges=ranges)
        assert (changed[name] != test[name]).all()
        pd.testing.assert_series_equal(changed[name], group.assign(changed[group.column]), check_names=False)
        assert changed[group.column].min() >= ranges[group.column][0]
        untouched = [c for c in test.columns if c not in {name, group.column}]
        pd.testing.assert_frame_equal(changed[untouched], test[untouched])


def test_protected_flip_is_zero_when_the_attribute_is_not_a_feature_and_measured_when_it_is():
    frame = to_feature_frame(generate_applications(1500, seed=2, bias=1.0), usecase=usecase())
    blind = parse_for({"train": {"model": "logistic_regression"}})
    flips = protected_flips(fit(frame, params=blind), frame, usecase=blind.usecase, threshold=0.5)
    for attribute in ("sex", "age", "foreign_worker"):
        assert flips[attribute]["flip_rate"] == 0.0
        assert flips[attribute]["note"] == NOT_A_FEATURE.format(attribute=attribute)

    aware = parse_for({"train": {"model": "logistic_regression"}, "prepare": {"exclude_protected": False}})
    flips = protected_flips(fit(frame, params=aware), frame, usecase=aware.usecase, threshold=0.5)
    assert flips["sex"]["flip_rate"] > 0  # the generator lowers women's odds; a model given sex uses it
    assert "is a model feature" in flips["sex"]["note"]


def test_the_report_follows_the_contract_and_is_strict_json(shipped_split):
    _, params, model, train, test, ranges = shipped_split
    usecase = params.usecase
    report = json.loads(json.dumps(robustness(model, test, train, params=params, ranges=ranges), allow_nan=False))
    perturbation = report["perturbation"]
    assert perturbation["numeric_noise"] == 0.05 and perturbation["n_perturbations"] == 5
    assert 0 <= perturbation["flip_rate"] <= 1 and perturbation["mean_abs_proba_change"] >= 0
    assert perturbation["flagged"] == (perturbation["flip_rate"] > params.robustness.max_flip_rate)
    swapped = set(report["category_swaps"]["by_feature"])
    assert swapped and swapped <= set(model.feature_names_in_)
    assert not swapped & {*usecase.protected, *usecase.groups, *usecase.proxies}
    assert set(report["protected_flip"]) == set(usecase.protected)
    assert {p["flip_rate"] for p in report["protected_flip"].values()} == {0.0}  # none is a feature
    for entry in report["slices"]:
        assert {"name", "count", "auc", "accuracy", "approval_rate", "small"} <= set(entry)
    assert isinstance(report["flags"], list)

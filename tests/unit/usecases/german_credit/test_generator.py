"""The synthetic generator: German schema, seeded, a learnable label, injectable bias and drift."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from usecases.german_credit.generator import (
    ERR_ATTRIBUTE,
    ERR_BIAS,
    ERR_DRIFT,
    ERR_GROUP,
    ERR_N,
    generate_applications,
)

GERMAN_CSV = Path(__file__).resolve().parents[4] / "data/german_credit.csv"
N = 50_000


@pytest.fixture(scope="module")
def german() -> pd.DataFrame:
    return pd.read_csv(GERMAN_CSV)


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return generate_applications(N, seed=7)


def good_rate(frame: pd.DataFrame, mask: pd.Series) -> float:
    return float((frame.loc[mask, "credit_risk"] == "good").mean())


def group_masks(frame: pd.DataFrame) -> dict[tuple[str, str], pd.Series]:
    return {
        ("sex", "female"): frame["sex"] == "female",
        ("sex", "male"): frame["sex"] == "male",
        ("age", "under 25"): frame["age"] < 25,
        ("age", "25 and over"): frame["age"] >= 25,
        ("foreign_worker", "yes"): frame["foreign_worker"] == "yes",
        ("foreign_worker", "no"): frame["foreign_worker"] == "no",
    }


def test_schema_and_dtypes_equal_german(reference: pd.DataFrame, german: pd.DataFrame) -> None:
    assert reference.shape == (N, german.shape[1])
    assert list(reference.columns) == list(german.columns)
    assert reference.dtypes.to_dict() == german.dtypes.to_dict()
    assert reference.notna().all().all()


def test_applicant_ids(reference: pd.DataFrame) -> None:
    ids = reference["applicant_id"]
    assert ids.is_unique
    assert ids.iloc[0] == "S0000001" and ids.iloc[-1] == f"S{N:07d}"
    assert ids.str.fullmatch(r"S\d{7}").all()


def test_values_stay_within_german_values_and_ranges(reference: pd.DataFrame, german: pd.DataFrame) -> None:
    for column in german.columns.drop("applicant_id"):
        if german[column].dtype == "int64":
            assert german[column].min() <= reference[column].min(), column
            assert reference[column].max() <= german[column].max(), column
        else:
            assert set(reference[column]) <= set(german[column]), column
    pairs = set(zip(reference["sex"], reference["personal_status"], strict=True))
    assert pairs == set(zip(german["sex"], german["personal_status"], strict=True))


def test_marginals_resemble_german(reference: pd.DataFrame, german: pd.DataFrame) -> None:
    for column in german.columns.drop("applicant_id"):
        if german[column].dtype == "int64":
            assert reference[column].median() == pytest.approx(german[column].median(), rel=0.1), column
            assert reference[column].mean() == pytest.approx(german[column].mean(), rel=0.05), column
        else:
            p = reference[column].value_counts(normalize=True)
            q = german[column].value_counts(normalize=True)
            total_variation = p.sub(q, fill_value=0).abs().sum() / 2
            assert total_variation < 0.05, column
    spearman = reference[["duration_months", "credit_amount"]].corr(method="spearman").iloc[0, 1]
    assert spearman == pytest.approx(0.62, abs=0.05)  # German: 0.62


def test_same_seed_same_frame_other_seed_other_frame() -> None:
    first = generate_applications(2000, seed=3, bias=0.3, drift=0.2)
    pd.testing.assert_frame_equal(first, generate_applications(2000, seed=3, bias=0.3, drift=0.2))
    assert not first.equals(generate_applications(2000, seed=4, bias=0.3, drift=0.2))


def test_label_is_learnable() -> None:
    def design(frame: pd.DataFrame) -> pd.DataFrame:
        return pd.get_dummies(frame.drop(columns=["applicant_id", "credit_risk"]), dtype=float)

    train, test = generate_applications(10_000, seed=1), generate_applications(10_000, seed=2)
    x_train = design(train)
    x_test = design(test).reindex(columns=x_train.columns, fill_value=0.0)
    scale = x_train.std().replace(0, 1)
    model = LogisticRegression(max_iter=1000).fit(x_train / scale, train["credit_risk"] == "good")
    auc = roc_auc_score(test["credit_risk"] == "good", model.predict_proba(x_test / scale)[:, 1])
    assert 0.72 < auc < 0.88
    assert (train["credit_risk"] == "good").mean() == pytest.approx(0.70, abs=0.02)


def test_no_bias_means_equal_group_rates(reference: pd.DataFrame) -> None:
    masks = group_masks(reference)
    for (attribute, group), mask in masks.items():
        rest = good_rate(reference, ~mask)
        # four standard errors of a difference of two proportions near 0.7
        tolerance = 4 * np.sqrt(0.21 * (1 / mask.sum() + 1 / (~mask).sum()))
        assert good_rate(reference, mask) == pytest.approx(rest, abs=tolerance), (attribute, group)


@pytest.mark.parametrize(("attribute", "group"), [("sex", "female"), ("age", "under 25"), ("foreign_worker", "no")])
def test_bias_lowers_only_the_group(reference: pd.DataFrame, attribute: str, group: str) -> None:
    biased = generate_applications(N, seed=7, bias=0.5, bias_attribute=attribute, bias_group=group)
    mask = group_masks(reference)[(attribute, group)]
    pd.testing.assert_frame_equal(
        biased.drop(columns="credit_risk"), reference.drop(columns="credit_risk")
    )  # features do not move
    drop = good_rate(reference, mask) - good_rate(biased, mask)
    assert 0.15 < drop < 0.45  # log-odds - 1.5 from a ~70 % good rate
    assert good_rate(biased, ~mask) == pytest.approx(good_rate(reference, ~mask), abs=0.005)
    stronger = generate_applications(N, seed=7, bias=1.0, bias_attribute=attribute, bias_group=group)
    assert good_rate(stronger, mask) < good_rate(biased, mask)


def test_drift_shifts_distributions(reference: pd.DataFrame) -> None:
    half = generate_applications(N, seed=7, drift=0.5)
    full = generate_applications(N, seed=7, drift=1.0)
    amounts = [frame["credit_amount"].mean() for frame in (reference, half, full)]
    assert amounts[0] < amounts[1] < amounts[2]
    assert amounts[2] > 1.4 * amounts[0]
    assert full["duration_months"].mean() > 1.3 * reference["duration_months"].mean()
    assert full["age"].mean() < reference["age"].mean() - 3
    negative = [(frame["checking_status"] == "< 0 DM").mean() for frame in (reference, half, full)]
    assert negative[0] < negative[1] < negative[2]
    assert full["sex"].value_counts(normalize=True)["female"] == pytest.approx(0.31, abs=0.01)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, ERR_N.format(n=0)),
        ({"n": 2.5}, ERR_N.format(n=2.5)),
        ({"n": 10, "bias": 1.5}, ERR_BIAS.format(bias=1.5)),
        ({"n": 10, "bias": -0.1}, ERR_BIAS.format(bias=-0.1)),
        ({"n": 10, "drift": float("nan")}, ERR_DRIFT.format(drift=float("nan"))),
        (
            {"n": 10, "bias_attribute": "race"},
            ERR_ATTRIBUTE.format(allowed=["sex", "age", "foreign_worker"], attribute="race"),
        ),
        (
            {"n": 10, "bias_attribute": "age", "bias_group": "female"},
            ERR_GROUP.format(attribute="age", allowed=["under 25", "25 and over"], group="female"),
        ),
    ],
)
def test_invalid_arguments_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        generate_applications(**kwargs)


def test_tiny_frame() -> None:
    frame = generate_applications(1, seed=np.int64(5))
    assert frame.shape == (1, 23) and frame["applicant_id"].iloc[0] == "S0000001"

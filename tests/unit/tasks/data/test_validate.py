"""Behaviour of the data contracts (expectations/*.json) and of tasks.data.validate."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from tasks.data.suites import features_suite, read_suite, serving_suite
from tasks.data.validate import (
    COLUMN_ABSENT,
    SUITE_INVALID,
    VALIDATION_FAILED,
    Failure,
    ValidationFailed,
    ValidationSummary,
    check,
    load_suite,
    validate_frame,
)
from tests.usecases import SHIPPED, usecase

ROOT = Path(__file__).resolve().parents[4]
RAW_SUITE = ROOT / "expectations" / "german_credit.json"
FEATURES_SUITE = features_suite(read_suite(RAW_SUITE), usecase("german_credit"))
GERMAN_CSV = ROOT / "data" / "german_credit.csv"

# The decoded schema (data/german_credit.csv), written out independently of the suites.
CATEGORIES: dict[str, list[str]] = {
    "checking_status": ["< 0 DM", "0-200 DM", ">= 200 DM", "no checking account"],
    "credit_history": [
        "no credits or all paid",
        "all paid at this bank",
        "existing paid duly",
        "past delays",
        "critical account",
    ],
    "purpose": [
        "new car",
        "used car",
        "furniture/equipment",
        "radio/television",
        "domestic appliances",
        "repairs",
        "education",
        "vacation",
        "retraining",
        "business",
        "other",
    ],
    "savings": ["< 100 DM", "100-500 DM", "500-1000 DM", ">= 1000 DM", "unknown or none"],
    "employment_since": ["unemployed", "< 1 year", "1-4 years", "4-7 years", ">= 7 years"],
    "personal_status": ["divorced/separated", "divorced/separated/married", "single", "married/widowed"],
    "sex": ["female", "male"],
    "other_debtors": ["none", "co-applicant", "guarantor"],
    "property": ["real estate", "savings agreement or life insurance", "car or other", "unknown or none"],
    "other_installment_plans": ["bank", "stores", "none"],
    "housing": ["rent", "own", "for free"],
    "job": ["unskilled non-resident", "unskilled resident", "skilled", "highly qualified"],
    "telephone": ["yes", "no"],
    "foreign_worker": ["yes", "no"],
}
INTEGERS: dict[str, list[int]] = {
    "duration_months": [4, 12, 24, 72],
    "credit_amount": [250, 1169, 5951, 18424],
    "installment_rate": [1, 2, 3, 4],
    "residence_since": [1, 2, 3, 4],
    "age": [19, 24, 25, 40, 75],
    "existing_credits": [1, 2, 3, 4],
    "people_liable": [1, 2],
}
COLUMNS = [
    "applicant_id",
    "checking_status",
    "duration_months",
    "credit_history",
    "purpose",
    "credit_amount",
    "savings",
    "employment_since",
    "installment_rate",
    "personal_status",
    "sex",
    "other_debtors",
    "residence_since",
    "property",
    "age",
    "other_installment_plans",
    "housing",
    "existing_credits",
    "job",
    "people_liable",
    "telephone",
    "foreign_worker",
    "credit_risk",
]


def inline_raw(n: int = 120) -> pd.DataFrame:
    """A valid raw frame: every allowed value cycled, 3 good for 1 bad."""
    values = {**CATEGORIES, **INTEGERS, "credit_risk": ["good", "good", "good", "bad"]}
    data = {c: [values[c][i % len(values[c])] for i in range(n)] for c in COLUMNS if c != "applicant_id"}
    return pd.DataFrame({"applicant_id": [f"G{i:04d}" for i in range(1, n + 1)], **data})[COLUMNS]


def to_features(raw: pd.DataFrame) -> pd.DataFrame:
    """The prepare stage's feature frame, rebuilt here from its definition."""
    return raw.drop(columns=["credit_risk"]).assign(
        age_group=["under 25" if a < 25 else "25 and over" for a in raw["age"]],
        label=(raw["credit_risk"] == "good").astype("int64"),
    )


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    return inline_raw()


@pytest.fixture(scope="module")
def german() -> pd.DataFrame:
    if not GERMAN_CSV.exists():
        pytest.skip(f"{GERMAN_CSV} not written yet")
    return pd.read_csv(GERMAN_CSV)


def failures_of(summary: ValidationSummary) -> set[tuple[str | None, str]]:
    return {(f.column, f.expectation) for f in summary.failures}


def test_inline_frame_passes_both_suites(raw: pd.DataFrame) -> None:
    assert validate_frame(raw, suite=RAW_SUITE).failures == []
    assert validate_frame(to_features(raw), suite=FEATURES_SUITE).failures == []


def test_german_credit_passes_raw_suite(german: pd.DataFrame) -> None:
    summary = validate_frame(german, suite=RAW_SUITE)
    assert summary.success, summary.message()
    assert (summary.n_rows, summary.evaluated) == (len(german), len(load_suite(RAW_SUITE).expectations))


def test_german_credit_features_pass_features_suite(german: pd.DataFrame) -> None:
    summary = validate_frame(to_features(german), suite=FEATURES_SUITE)
    assert summary.success, summary.message()


def test_string_columns_read_as_text_fail_the_type_check() -> None:
    if not GERMAN_CSV.exists():
        pytest.skip(f"{GERMAN_CSV} not written yet")
    summary = validate_frame(pd.read_csv(GERMAN_CSV, dtype={"age": str}), suite=RAW_SUITE)
    failure = next(f for f in summary.failures if f.expectation == "expect_column_values_to_be_of_type")
    assert (failure.column, failure.observed) == ("age", "str")


def _drop_age(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=["age"])


def _age_as_text(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(age=df["age"].astype(str))


def _ages_out_of_range(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(age=[7, 150, -1, *df["age"].iloc[3:]])


def _third_label(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(credit_risk=["maybe", *df["credit_risk"].iloc[1:]])


def _null_savings(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(savings=[None, None, *df["savings"].iloc[2:]])


def _duplicate_id(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(applicant_id=["G0001", "G0001", *df["applicant_id"].iloc[2:]])


@pytest.mark.parametrize(
    ("corrupt", "expected"),
    [
        (
            _drop_age,
            {
                (None, "expect_table_columns_to_match_set"),
                ("age", "expect_column_values_to_be_of_type"),
                ("age", "expect_column_values_to_be_between"),
                ("age", "expect_column_values_to_not_be_null"),
            },
        ),
        (
            _age_as_text,
            {("age", "expect_column_values_to_be_of_type"), ("age", "expect_column_values_to_be_between")},
        ),
        (_ages_out_of_range, {("age", "expect_column_values_to_be_between")}),
        (_third_label, {("credit_risk", "expect_column_values_to_be_in_set")}),
        (_null_savings, {("savings", "expect_column_values_to_not_be_null")}),
        (_duplicate_id, {("applicant_id", "expect_column_values_to_be_unique")}),
    ],
    ids=["missing column", "age as text", "ages out of range", "third label", "nulls", "duplicate id"],
)
def test_raw_suite_names_the_broken_column_and_expectation(
    raw: pd.DataFrame,
    corrupt: Callable[[pd.DataFrame], pd.DataFrame],
    expected: set[tuple[str | None, str]],
) -> None:
    summary = validate_frame(corrupt(raw), suite=RAW_SUITE)
    assert not summary.success
    assert failures_of(summary) == expected
    with pytest.raises(ValidationFailed) as caught:
        check(summary)
    assert caught.value.summary is summary


def test_missing_column_is_reported_not_raised(raw: pd.DataFrame) -> None:
    summary = validate_frame(raw.drop(columns=["age"]).assign(extra=1), suite=RAW_SUITE)
    column_set, *on_age = summary.failures
    assert column_set.observed == "missing ['age'], extra ['extra']"
    assert {f.observed for f in on_age} == {COLUMN_ABSENT}


def test_observed_shows_count_percent_and_values(raw: pd.DataFrame) -> None:
    bad = _ages_out_of_range(raw)
    n_out = int((~bad["age"].between(18, 100)).sum())  # plain pandas, not GE
    (failure,) = validate_frame(bad, suite=RAW_SUITE).failures
    assert failure.observed == f"{n_out} unexpected values ({100 * n_out / len(bad):.3g}%), e.g. [7, 150, -1]"
    assert failure.expected == "min 18, max 100"


@pytest.mark.parametrize(("good_rate", "n"), [(0.3, 100), (1.0, 100)])
def test_features_suite_bounds_the_label_balance(raw: pd.DataFrame, good_rate: float, n: int) -> None:
    features = to_features(raw.iloc[:n]).assign(label=[1] * int(good_rate * n) + [0] * (n - int(good_rate * n)))
    (failure,) = validate_frame(features, suite=FEATURES_SUITE).failures
    assert (failure.column, failure.expectation) == ("label", "expect_column_mean_to_be_between")
    assert failure.observed == f"{features['label'].mean():.4g}"


def test_features_suite_rejects_a_third_label_and_a_third_age_group(raw: pd.DataFrame) -> None:
    features = to_features(raw)
    features.loc[0, "label"] = 2
    features.loc[1, "age_group"] = "over 65"
    assert failures_of(validate_frame(features, suite=FEATURES_SUITE)) == {
        ("label", "expect_column_values_to_be_in_set"),
        ("age_group", "expect_column_values_to_be_in_set"),
    }


def test_data_docs_index_is_written(raw: pd.DataFrame, tmp_path: Path) -> None:
    summary = validate_frame(_third_label(raw), suite=RAW_SUITE, docs_dir=tmp_path / "docs")
    assert summary.data_docs == str(tmp_path / "docs" / "index.html")
    assert "raw_german_credit" in Path(summary.data_docs).read_text(encoding="utf-8")


def test_summary_json_is_identical_across_runs(raw: pd.DataFrame, tmp_path: Path) -> None:
    bad = _null_savings(_ages_out_of_range(raw))
    first, second = (
        json.dumps(validate_frame(bad, suite=RAW_SUITE, docs_dir=tmp_path).to_dict(), sort_keys=True) for _ in range(2)
    )
    assert first == second


def test_validation_failed_message_lists_each_failure() -> None:
    summary = ValidationSummary(
        suite="raw_credit",
        success=False,
        n_rows=1000,
        evaluated=72,
        failures=[
            Failure("age", "expect_column_values_to_be_between", "3 unexpected values", "min 18, max 100"),
            Failure(None, "expect_table_row_count_to_be_between", "12"),
        ],
    )
    header = VALIDATION_FAILED.format(suite="raw_credit", failed=2, evaluated=72, n_rows=1000)
    assert str(ValidationFailed(summary)).splitlines() == [
        header,
        "  - age: expect_column_values_to_be_between (min 18, max 100) → observed 3 unexpected values",
        "  - (table): expect_table_row_count_to_be_between → observed 12",
    ]
    check(ValidationSummary(suite="raw_credit", success=True, n_rows=1000, evaluated=72))


def test_load_suite_refuses_an_expectation_gx_would_drop(tmp_path: Path) -> None:
    suite = json.loads(RAW_SUITE.read_text(encoding="utf-8"))
    suite["expectations"].append({"type": "expect_column_values_to_be_betwen", "kwargs": {"column": "age"}})
    path = tmp_path / "typo.json"
    path.write_text(json.dumps(suite), encoding="utf-8")
    declared = len(suite["expectations"])
    with pytest.raises(ValueError) as caught:
        load_suite(path)
    assert str(caught.value) == SUITE_INVALID.format(path=path, dropped=1, declared=declared)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_raw_expectation_says_why_and_every_derived_one_where_it_came_from(name: str) -> None:
    raw = read_suite(ROOT / usecase(name).raw_suite)
    for expectation in raw["expectations"]:
        assert expectation["meta"]["why"], expectation["type"]
    for derived in (features_suite(raw, usecase(name)), serving_suite(raw, usecase(name))):
        for expectation in derived["expectations"]:
            assert expectation["meta"]["source"], expectation["type"]

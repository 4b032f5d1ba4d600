"""The serving contract (expectations/serving_request.json) and the request model derived from it."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydantic import ValidationError

from steward.params import load_params
from tasks.data.features import model_features, to_feature_frame
from tasks.data.validate import load_suite, validate_frame
from tasks.serving.schema import (
    INCOMPLETE,
    MISMATCH,
    NOT_IN_RAW,
    SERVING_SUITE,
    UNSUPPORTED,
    Application,
    mismatches,
    read_suite,
    request_model,
    to_frame,
)

ROOT = Path(__file__).resolve().parents[4]
RAW_SUITE = ROOT / "expectations" / "raw_credit.json"
GERMAN_CSV = ROOT / "data" / "german_credit.csv"
PARAMS = load_params(ROOT / "params.yaml")
LABEL = PARAMS.data.label


@pytest.fixture(scope="module")
def german() -> pd.DataFrame:
    return pd.read_csv(GERMAN_CSV)


@pytest.fixture
def request_row(german: pd.DataFrame) -> dict[str, Any]:
    """The first application of the CSV as a /predict body: every column but the label."""
    row: dict[str, Any] = german.drop(columns=[LABEL]).iloc[:1].to_dict(orient="records")[0]
    return row


def _error_locs(exc: pytest.ExceptionInfo[ValidationError]) -> list[tuple[tuple[int | str, ...], str]]:
    return [(e["loc"], e["type"]) for e in exc.value.errors()]


def test_the_default_suite_is_the_projects():
    assert SERVING_SUITE == ROOT / "expectations" / "serving_request.json"


def test_suite_loads_with_great_expectations():
    declared = read_suite(SERVING_SUITE)["expectations"]
    assert len(load_suite(SERVING_SUITE).expectations) == len(declared)


def test_request_fields_are_the_raw_columns_but_the_label(german: pd.DataFrame):
    assert list(Application.model_fields) == [c for c in german.columns if c != LABEL]
    assert all(field.is_required() for field in Application.model_fields.values())
    for protected in PARAMS.data.protected:
        assert protected in Application.model_fields  # fairness monitoring needs them, the model does not


def test_each_field_says_where_its_constraint_came_from():
    for name, field in Application.model_fields.items():
        assert field.description and "raw_credit.json" in field.description, name
    assert "serving_request.json" in (Application.model_fields["applicant_id"].description or "")


def test_first_50_rows_of_the_csv_are_valid_requests(german: pd.DataFrame):
    rows = german.drop(columns=[LABEL]).head(50).to_dict(orient="records")
    assert [Application.model_validate(row).model_dump() for row in rows] == rows


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("purpose", "crypto", "literal_error"),  # unknown category
        ("sex", "Male", "literal_error"),
        ("age", 17, "greater_than_equal"),  # out of range
        ("age", 101, "less_than_equal"),
        ("credit_amount", 0, "greater_than_equal"),
        ("duration_months", 121, "less_than_equal"),
        ("age", "42", "int_type"),  # wrong type: strict, as the raw contract's type check
        ("age", 42.5, "int_type"),
        ("age", True, "int_type"),
        ("housing", 1, "literal_error"),
        ("age", None, "int_type"),  # null
        ("foreign_worker", None, "literal_error"),
        ("applicant_id", "", "string_too_short"),  # empty id
        ("applicant_id", "A" * 65, "string_too_long"),
        ("applicant_id", "G 0001; drop", "string_pattern_mismatch"),
        ("applicant_id", 1, "string_type"),
    ],
)
def test_a_bad_value_is_refused_naming_its_field(request_row: dict[str, Any], field: str, value: Any, error: str):
    with pytest.raises(ValidationError) as exc:
        Application.model_validate({**request_row, field: value})
    assert _error_locs(exc) == [((field,), error)]


@pytest.mark.parametrize("field", ["applicant_id", "age", "purpose", "foreign_worker"])
def test_a_missing_field_is_refused_naming_it(request_row: dict[str, Any], field: str):
    del request_row[field]
    with pytest.raises(ValidationError) as exc:
        Application.model_validate(request_row)
    assert _error_locs(exc) == [((field,), "missing")]


@pytest.mark.parametrize("field", [LABEL, "age_group", "nickname"])
def test_an_unknown_field_is_refused_naming_it(request_row: dict[str, Any], field: str):
    with pytest.raises(ValidationError) as exc:
        Application.model_validate({**request_row, field: "good"})
    assert _error_locs(exc) == [((field,), "extra_forbidden")]


def test_to_frame_is_the_raw_csv_row_and_feeds_the_feature_pipeline(german: pd.DataFrame, request_row: dict[str, Any]):
    frame = to_frame(Application.model_validate(request_row))
    pd.testing.assert_frame_equal(frame, german.drop(columns=[LABEL]).head(1))  # values, order and dtypes
    # to_feature_frame also builds the 0/1 label, so it needs the label column, which a request cannot have.
    features = to_feature_frame(frame.assign(**{LABEL: german[LABEL].head(1)}), data=PARAMS.data)
    training = to_feature_frame(german.head(1), data=PARAMS.data)
    pd.testing.assert_frame_equal(features, training)
    assert model_features(frame.columns, params=PARAMS) == model_features(training.columns, params=PARAMS)


def test_great_expectations_and_the_model_agree_on_a_request(request_row: dict[str, Any]):
    good = to_frame(Application.model_validate(request_row))
    assert validate_frame(good, suite=SERVING_SUITE).success
    bad = {**request_row, "purpose": "crypto", "age": 17, "applicant_id": ""}
    summary = validate_frame(pd.DataFrame([bad]).astype(good.dtypes.to_dict()), suite=SERVING_SUITE)
    with pytest.raises(ValidationError) as exc:
        Application.model_validate(bad)
    assert {f.column for f in summary.failures} == {loc[0] for loc, _ in _error_locs(exc)}


def test_the_shipped_serving_suite_matches_the_raw_suite():
    assert mismatches(read_suite(SERVING_SUITE), read_suite(RAW_SUITE)) == []


def _expectation(suite: dict[str, Any], kind: str, column: str) -> dict[str, Any]:
    return next(e for e in suite["expectations"] if e["type"] == kind and e["kwargs"].get("column") == column)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda s: _expectation(s, "expect_column_values_to_be_between", "age")["kwargs"].update(max_value=120),
            MISMATCH.format(column="age", rule="range", serving=(18, 120), raw=(18, 100)),
        ),
        (
            lambda s: _expectation(s, "expect_column_values_to_be_between", "age")["kwargs"].pop("min_value"),
            MISMATCH.format(column="age", rule="range", serving=(None, 100), raw=(18, 100)),
        ),
        (
            lambda s: s["expectations"].remove(_expectation(s, "expect_column_values_to_be_between", "age")),
            MISMATCH.format(column="age", rule="range", serving=None, raw=(18, 100)),
        ),
        (
            lambda s: _expectation(s, "expect_column_values_to_be_in_set", "sex")["kwargs"]["value_set"].append("x"),
            MISMATCH.format(column="sex", rule="value set", serving=["female", "male", "x"], raw=["female", "male"]),
        ),
        (
            lambda s: _expectation(s, "expect_column_values_to_be_of_type", "age")["kwargs"].update(type_="float"),
            MISMATCH.format(column="age", rule="type", serving="float", raw="int"),
        ),
        (
            lambda s: _expectation(s, "expect_column_values_to_match_regex", "applicant_id")["kwargs"].update(
                regex=".*"
            ),
            MISMATCH.format(column="applicant_id", rule="regex", serving=".*", raw="^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"),
        ),
        (
            lambda s: s["expectations"][0]["kwargs"]["column_set"].append("income"),
            NOT_IN_RAW.format(column="income"),
        ),
    ],
    ids=["widened range", "open range", "no range", "extra category", "type", "regex", "unknown column"],
)
def test_mismatches_names_what_serving_would_accept_beyond_training(change: Any, expected: str):
    serving = copy.deepcopy(read_suite(SERVING_SUITE))
    change(serving)
    assert mismatches(serving, read_suite(RAW_SUITE)) == [expected]


def test_category_order_is_not_a_mismatch():
    serving = copy.deepcopy(read_suite(SERVING_SUITE))
    _expectation(serving, "expect_column_values_to_be_in_set", "housing")["kwargs"]["value_set"].reverse()
    assert mismatches(serving, read_suite(RAW_SUITE)) == []


def _write(tmp_path: Path, suite: dict[str, Any]) -> Path:
    path = tmp_path / "suite.json"
    path.write_text(json.dumps(suite), encoding="utf-8")
    return path


def test_a_suite_with_a_check_the_model_cannot_enforce_is_refused(tmp_path: Path):
    suite = copy.deepcopy(read_suite(SERVING_SUITE))
    suite["expectations"].append({"type": "expect_column_values_to_be_unique", "kwargs": {"column": "applicant_id"}})
    path = _write(tmp_path, suite)
    with pytest.raises(ValueError) as exc:
        request_model(path)
    assert str(exc.value) == UNSUPPORTED.format(suite=path, types=["expect_column_values_to_be_unique"])


def test_a_nullable_column_is_refused(tmp_path: Path):
    suite = copy.deepcopy(read_suite(SERVING_SUITE))
    suite["expectations"].remove(_expectation(suite, "expect_column_values_to_not_be_null", "age"))
    path = _write(tmp_path, suite)
    with pytest.raises(ValueError) as exc:
        request_model(path)
    assert str(exc.value) == INCOMPLETE.format(suite=path, column="age")

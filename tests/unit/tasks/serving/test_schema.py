"""The serving contract, derived from each shipped use case's raw suite, and the request model built from it."""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

import pandas as pd
import pytest
from pydantic import BaseModel, ValidationError

from steward.usecase_check import suite_columns
from tasks.data.features import model_features, read_snapshot, to_feature_frame
from tasks.data.suites import read_suite, serving_suite
from tasks.data.validate import validate_frame
from tasks.serving.schema import UNSUPPORTED, UNTYPED, request_model, to_frame, usecase_request_model
from tests.conftest import PROJECT_DIR
from tests.usecases import SHIPPED, params_for, usecase


@cache
def raw(name: str) -> pd.DataFrame:
    return read_snapshot(PROJECT_DIR / usecase(name).dataset.file)


@cache
def model(name: str) -> type[BaseModel]:
    return usecase_request_model(PROJECT_DIR, usecase(name))


def suite(name: str) -> dict[str, Any]:
    return serving_suite(read_suite(PROJECT_DIR / usecase(name).raw_suite), usecase(name))


def records(name: str, n: int = 50) -> list[dict[str, Any]]:
    """The first n rows of the use case's data as /predict bodies: every column but the label, a gap as null."""
    rows = raw(name).drop(columns=[usecase(name).label.column]).head(n).astype(object)
    return rows.where(rows.notna(), None).to_dict(orient="records")


def _error_locs(exc: pytest.ExceptionInfo[ValidationError]) -> list[tuple[tuple[int | str, ...], str]]:
    return [(e["loc"], e["type"]) for e in exc.value.errors()]


@pytest.mark.parametrize("name", SHIPPED)
def test_request_fields_are_the_raw_columns_but_the_label(name: str):
    spec = usecase(name)
    assert list(model(name).model_fields) == [c for c in raw(name).columns if c != spec.label.column]
    for protected in spec.protected:
        assert protected in model(name).model_fields  # fairness monitoring needs them, the model does not


@pytest.mark.parametrize("name", SHIPPED)
def test_exactly_the_columns_the_raw_suite_lets_be_missing_are_optional(name: str):
    described = suite_columns(read_suite(PROJECT_DIR / usecase(name).raw_suite))  # a second reading of the suite
    fields = model(name).model_fields
    optional = {c for c, f in fields.items() if not f.is_required()}
    assert optional == {c for c in fields if described[c]["nullable"]}
    if name == "adult_income":
        assert optional == {"workclass", "occupation", "native_country"}  # the census's '?' gaps


@pytest.mark.parametrize("name", SHIPPED)
def test_each_field_says_where_its_constraint_came_from(name: str):
    raw_name = read_suite(PROJECT_DIR / usecase(name).raw_suite)["name"]
    for field_name, field in model(name).model_fields.items():
        assert field.description and raw_name in field.description, field_name


@pytest.mark.parametrize("name", SHIPPED)
def test_real_rows_of_the_data_are_valid_requests(name: str):
    rows = records(name)
    assert [model(name).model_validate(row).model_dump() for row in rows] == rows


@pytest.mark.parametrize("name", SHIPPED)
def test_a_null_is_accepted_exactly_where_the_data_may_have_a_gap(name: str):
    row = records(name, 1)[0]
    for column, field in model(name).model_fields.items():
        if field.is_required():
            with pytest.raises(ValidationError):
                model(name).model_validate({**row, column: None})
        else:
            assert model(name).model_validate({**row, column: None}).model_dump()[column] is None
            omitted = {k: v for k, v in row.items() if k != column}
            assert model(name).model_validate(omitted).model_dump()[column] is None


BAD = {
    "german_credit": [
        ("purpose", "crypto", "literal_error"),  # unknown category
        ("sex", "Male", "literal_error"),
        ("age", 17, "greater_than_equal"),  # out of range
        ("age", 101, "less_than_equal"),
        ("credit_amount", 0, "greater_than_equal"),
        ("age", "42", "int_type"),  # wrong type: strict, as the raw contract's type check
        ("age", 42.5, "int_type"),
        ("age", True, "int_type"),
        ("age", None, "int_type"),  # null where the data has no gaps
        ("foreign_worker", None, "literal_error"),
        ("applicant_id", "", "string_pattern_mismatch"),
        ("applicant_id", "G 0001; drop", "string_pattern_mismatch"),
        ("applicant_id", 1, "string_type"),
    ],
    "adult_income": [
        ("workclass", "Astronaut", "literal_error"),  # nullable, but not any value
        ("education", "PhD", "literal_error"),
        ("sex", "male", "literal_error"),
        ("age", 15, "greater_than_equal"),
        ("hours_per_week", 110, "less_than_equal"),
        ("capital_gain", 1.5, "int_type"),
        ("native_country", 7, "literal_error"),
        ("race", None, "literal_error"),
        ("person_id", "A 1", "string_pattern_mismatch"),
    ],
}


@pytest.mark.parametrize(("name", "field", "value", "error"), [(n, *case) for n in SHIPPED for case in BAD[n]])
def test_a_bad_value_is_refused_naming_its_field(name: str, field: str, value: Any, error: str):
    with pytest.raises(ValidationError) as exc:
        model(name).model_validate({**records(name, 1)[0], field: value})
    assert _error_locs(exc) == [((field,), error)]


@pytest.mark.parametrize("name", SHIPPED)
def test_a_missing_required_field_is_refused_naming_it(name: str):
    row, fields = records(name, 1)[0], model(name).model_fields
    for column in [c for c in (usecase(name).id_column, *usecase(name).protected) if fields[c].is_required()]:
        with pytest.raises(ValidationError) as exc:
            model(name).model_validate({k: v for k, v in row.items() if k != column})
        assert _error_locs(exc) == [((column,), "missing")]


@pytest.mark.parametrize("name", SHIPPED)
def test_an_unknown_field_is_refused_naming_it(name: str):
    spec = usecase(name)
    for field in (spec.label.column, *spec.groups, "nickname"):
        with pytest.raises(ValidationError) as exc:
            model(name).model_validate({**records(name, 1)[0], field: str(spec.label.favourable)})
        assert _error_locs(exc) == [((field,), "extra_forbidden")]


@pytest.mark.parametrize("name", SHIPPED)
def test_to_frame_is_the_raw_row_and_feeds_the_feature_pipeline(name: str):
    spec, data = usecase(name), raw(name)
    gapped = data[data.isna().any(axis=1)].head(1) if data.isna().any().any() else data.head(1)
    row = gapped.drop(columns=[spec.label.column]).astype(object)
    body = row.where(row.notna(), None).to_dict(orient="records")[0]
    frame = to_frame(model(name).model_validate(body))
    expected = gapped.drop(columns=[spec.label.column]).reset_index(drop=True)
    pd.testing.assert_frame_equal(frame, expected)  # values, gaps, order and dtypes as read_snapshot reads them
    labelled = frame.assign(**{spec.label.column: gapped[spec.label.column].to_numpy()})
    features = to_feature_frame(labelled, usecase=spec)
    pd.testing.assert_frame_equal(features, to_feature_frame(gapped.reset_index(drop=True), usecase=spec))
    params = params_for(name)
    assert model_features(frame.columns, params=params) == model_features(features.columns, params=params)


@pytest.mark.parametrize("name", SHIPPED)
def test_great_expectations_and_the_model_agree_on_a_request(name: str, tmp_path):
    import json

    path = tmp_path / "serving.json"
    path.write_text(json.dumps(suite(name)), encoding="utf-8")
    row = records(name, 1)[0]
    good = to_frame(model(name).model_validate(row))
    assert validate_frame(good, suite=path).success
    categorical = next(c for c, r in suite_columns(suite(name)).items() if "values" in r)
    bad = {**row, categorical: "no such value", usecase(name).id_column: "bad id!"}
    summary = validate_frame(pd.DataFrame([bad]).astype(good.dtypes.to_dict()), suite=path)
    with pytest.raises(ValidationError) as exc:
        model(name).model_validate(bad)
    assert {f.column for f in summary.failures} == {loc[0] for loc, _ in _error_locs(exc)}


def test_a_suite_with_a_check_the_model_cannot_enforce_is_refused():
    changed = copy.deepcopy(suite("german_credit"))
    changed["expectations"].append({"type": "expect_column_values_to_be_unique", "kwargs": {"column": "age"}})
    with pytest.raises(ValueError) as exc:
        request_model(changed)
    assert str(exc.value) == UNSUPPORTED.format(suite=changed["name"], types=["expect_column_values_to_be_unique"])


def test_a_column_without_a_type_is_refused():
    changed = copy.deepcopy(suite("german_credit"))
    changed["expectations"] = [
        e
        for e in changed["expectations"]
        if not (e["type"] == "expect_column_values_to_be_of_type" and e["kwargs"]["column"] == "age")
    ]
    with pytest.raises(ValueError) as exc:
        request_model(changed)
    assert str(exc.value) == UNTYPED.format(suite=changed["name"], column="age")

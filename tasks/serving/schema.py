"""The serving contract as a pydantic model: one /predict request, derived at run time from the use case.

The contract is not written by hand: `tasks.data.suites.serving_suite` derives it from the use case's raw suite
(every raw column but the label, with the raw rules, one row), so serving never accepts what the training data
could not contain, and a new use case is served without a schema of its own. `request_model` turns that suite
into the pydantic model the service validates with: a field per column, each constraint described with the
expectation it came from, unknown fields refused. A column the raw suite lets be missing (its not-null check has
`mostly` below 1) is optional and may be null; every other column is required. Only the suite's JSON is read:
importing great_expectations here would slow every service start by seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, create_model

from steward.usecase import UseCase
from tasks.data.suites import read_suite, serving_suite

UNSUPPORTED = "Suite {suite}: expectation(s) {types} have no counterpart in the request model"
UNTYPED = "Suite {suite}: column {column!r} needs a type (str, int or float)"

# Expectation type → the rule it sets on its column.
RULES = {
    "expect_column_values_to_be_of_type": "type",
    "expect_column_values_to_be_in_set": "value set",
    "expect_column_values_to_be_between": "range",
    "expect_column_value_lengths_to_be_between": "length",
    "expect_column_values_to_match_regex": "regex",
    "expect_column_values_to_not_be_null": "not null",
}
# Table expectations the model enforces by its shape: one field per column, extra="forbid"; the row count is the
# service's (one model instance per /predict request).
BY_SHAPE = {"expect_table_columns_to_match_set", "expect_table_row_count_to_equal"}
PYTHON_TYPES: dict[str, type] = {"str": str, "int": int, "float": float}
# A column's dtype as pandas reads the raw CSV (read_snapshot): text as str (a gap as NaN), and a whole-number
# column with a gap as float64 (NaN has no integer).
DTYPES: dict[str, str] = {"str": "str", "int": "int64", "float": "float64"}
GAPPED_DTYPES: dict[str, str] = {**DTYPES, "int": "float64"}


@dataclass
class Column:
    """One column's rules in a suite, and each rule stated with where it came from (the field's description)."""

    rules: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def nullable(self) -> bool:
        return not self.rules.get("not null", False)


def columns(suite: dict[str, Any]) -> dict[str, Column]:
    """The rules of each column, in the order of the suite's column set; other expectations are skipped."""
    expectations = suite["expectations"]
    schema = [e["kwargs"]["column_set"] for e in expectations if e["type"] == "expect_table_columns_to_match_set"]
    found = {c: Column() for c in (schema[0] if schema else [])}
    for e in expectations:
        rule = RULES.get(e["type"])
        if rule is None:
            continue
        kwargs = e["kwargs"]
        value = _rule_value(rule, kwargs)
        column = found.setdefault(kwargs["column"], Column())
        if rule == "not null" and not value:
            column.notes.append(f"may be null ({e.get('meta', {}).get('source', suite['name'])})")
            continue  # `mostly` below 1 tolerates nulls: the field is optional
        column.rules[rule] = value
        column.notes.append(f"{_describe(rule, value)} ({e.get('meta', {}).get('source', suite['name'])})")
    return found


def _rule_value(rule: str, kwargs: dict[str, Any]) -> Any:
    match rule:
        case "range" | "length":
            return (kwargs.get("min_value"), kwargs.get("max_value"))
        case "not null":
            return kwargs.get("mostly", 1.0) == 1.0
        case "value set":
            return tuple(kwargs["value_set"])
        case "type":
            return kwargs["type_"]
        case _:
            return kwargs["regex"]


def _describe(rule: str, value: Any) -> str:
    if rule in ("range", "length"):
        low, high = value
        return f"{rule} {'' if low is None else low}..{'' if high is None else high}"
    if rule == "value set":
        return f"one of {len(value)} values"
    return rule if rule == "not null" else f"{rule} {value}"


def request_model(suite: dict[str, Any]) -> type[BaseModel]:
    """The pydantic model of one request (`Application`): a field per column of the suite, unknown fields refused.

    Types are strict (the suite's `int` refuses "42" and 42.0, as the raw contract's type check does). A column
    without a not-null rule is `T | None`, default None.
    """
    name = suite.get("name", "suite")
    unsupported = sorted({e["type"] for e in suite["expectations"]} - RULES.keys() - BY_SHAPE)
    if unsupported:
        raise ValueError(UNSUPPORTED.format(suite=name, types=unsupported))
    fields: dict[str, Any] = {}
    for column_name, column in columns(suite).items():
        rules = column.rules
        if rules.get("type") not in PYTHON_TYPES:
            raise ValueError(UNTYPED.format(suite=name, column=column_name))
        annotation: Any = Literal[rules["value set"]] if "value set" in rules else PYTHON_TYPES[rules["type"]]
        low, high = rules.get("range", (None, None))
        shortest, longest = rules.get("length", (None, None))
        constraints = {
            "ge": low,
            "le": high,
            "min_length": shortest,
            "max_length": longest,
            "pattern": rules.get("regex"),
        }
        kept = {k: v for k, v in constraints.items() if v is not None}
        description = "; ".join(column.notes)
        if column.nullable:
            fields[column_name] = (annotation | None, Field(default=None, description=description, **kept))
        else:
            fields[column_name] = (annotation, Field(description=description, **kept))
    config = ConfigDict(extra="forbid", strict=True, frozen=True)
    model: type[BaseModel] = create_model(
        "Application", __config__=config, __doc__=suite.get("meta", {}).get("description"), **fields
    )
    return model


def usecase_request_model(project_dir: Path, usecase: UseCase) -> type[BaseModel]:
    """The request model of `usecase`: its raw suite under `project_dir`, derived by `serving_suite`."""
    return request_model(serving_suite(read_suite(project_dir / usecase.raw_suite), usecase))


def to_frame(app: BaseModel) -> pd.DataFrame:
    """One request as a one-row raw frame: the model's fields in order, dtypes as `read_snapshot` reads the raw
    CSV (a null as NaN; a whole-number column holding one as float64, as pandas reads a gap)."""
    row = app.model_dump()
    dtypes = {}
    for name, info in type(app).model_fields.items():
        kind = _kind(info.annotation)
        dtypes[name] = (GAPPED_DTYPES if row[name] is None else DTYPES)[kind]
    values = {k: [np.nan if v is None else v] for k, v in row.items()}
    return pd.DataFrame(values).astype(dtypes)


def _kind(annotation: Any) -> str:
    """A field's suite type from its annotation: `Literal[...]` by its values, `T | None` by T."""
    args = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) is Literal:
        return _TYPE_NAMES[type(args[0])]
    if args:  # T | None
        return _kind(args[0])
    return _TYPE_NAMES[annotation]


_TYPE_NAMES = {python: name for name, python in PYTHON_TYPES.items()}

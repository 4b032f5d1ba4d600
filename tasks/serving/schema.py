"""The serving contract: one /predict request as a GE suite (expectations/serving_request.json) and a pydantic model.

The suite is the single statement of what a request may hold; `request_model` turns it into the pydantic model the
service validates with, and `mismatches` checks it against the raw contract, so that serving never accepts what the
training data could not contain. Only the suite's JSON is read: importing great_expectations here would slow every
service start by seconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, create_model

SERVING_SUITE = Path(__file__).resolve().parents[2] / "expectations" / "serving_request.json"

UNSUPPORTED = "Suite {suite}: expectation(s) {types} have no counterpart in the request model"
INCOMPLETE = "Suite {suite}: column {column!r} needs a type and a not-null expectation (serving has no imputation)"
MISMATCH = "{column}: {rule} differs (serving {serving}, raw {raw})"
NOT_IN_RAW = "{column}: not a column of the raw contract"

# Expectation type → the rule it sets on its column.
RULES = {
    "expect_column_values_to_be_of_type": "type",
    "expect_column_values_to_be_in_set": "value set",
    "expect_column_values_to_be_between": "range",
    "expect_column_value_lengths_to_be_between": "length",
    "expect_column_values_to_match_regex": "regex",
    "expect_column_values_to_not_be_null": "not null",
}
# Table expectations the model enforces by its shape: one required field per column, extra="forbid"; the
# row count is the service's (one model instance per /predict request).
BY_SHAPE = {"expect_table_columns_to_match_set", "expect_table_row_count_to_equal"}
# What a request may never hold that the training data could not: compared with the raw suite by `mismatches`.
COMPARED = ("type", "value set", "range", "regex")
PYTHON_TYPES: dict[str, type] = {"str": str, "int": int, "float": float}
DTYPES: dict[type, str] = {str: "str", int: "int64", float: "float64"}


@dataclass
class Column:
    """One column's rules in a suite, and each rule stated with where it came from (the field's description)."""

    rules: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def read_suite(path: Path) -> dict[str, Any]:
    """A suite's JSON, as written in expectations/."""
    suite: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return suite


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
        if rule == "not null" and not value:
            continue  # `mostly` below 1 tolerates nulls: no rule for a single request
        column = found.setdefault(kwargs["column"], Column())
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


def request_model(suite_path: Path) -> type[BaseModel]:
    """The pydantic model of one request: a required field per column of the suite, unknown fields refused.

    Types are strict (the suite's `int` refuses "42" and 42.0, as the raw contract's type check does).
    """
    suite = read_suite(suite_path)
    unsupported = sorted({e["type"] for e in suite["expectations"]} - RULES.keys() - BY_SHAPE)
    if unsupported:
        raise ValueError(UNSUPPORTED.format(suite=suite_path, types=unsupported))
    fields: dict[str, Any] = {}
    for name, column in columns(suite).items():
        rules = column.rules
        if rules.get("type") not in PYTHON_TYPES or not rules.get("not null"):
            raise ValueError(INCOMPLETE.format(suite=suite_path, column=name))
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
        description = "; ".join(column.notes)
        fields[name] = (
            annotation,
            Field(description=description, **{k: v for k, v in constraints.items() if v is not None}),
        )
    config = ConfigDict(extra="forbid", strict=True, frozen=True)
    model: type[BaseModel] = create_model(
        "Application", __config__=config, __doc__=suite.get("meta", {}).get("description"), **fields
    )
    return model


def to_frame(app: BaseModel) -> pd.DataFrame:
    """One application as a one-row raw frame: the model's fields in order, dtypes as pandas reads the raw CSV."""
    row = app.model_dump()
    return pd.DataFrame([row]).astype({name: DTYPES[type(value)] for name, value in row.items()})


def mismatches(serving_suite: dict[str, Any], raw_suite: dict[str, Any]) -> list[str]:
    """Each type, value set, range or regex of a serving column that is not exactly the raw contract's."""
    serving, raw = columns(serving_suite), columns(raw_suite)
    problems = []
    for name, column in serving.items():
        if name not in raw:
            problems.append(NOT_IN_RAW.format(column=name))
            continue
        for rule in COMPARED:
            ours, theirs = column.rules.get(rule), raw[name].rules.get(rule)
            if rule == "value set" and ours is not None and theirs is not None:
                ours, theirs = sorted(ours), sorted(theirs)  # order is presentation, not contract
            if ours != theirs:
                problems.append(MISMATCH.format(column=name, rule=rule, serving=ours, raw=theirs))
    return problems


Application = request_model(SERVING_SUITE)

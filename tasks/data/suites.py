"""The data contracts derived from one statement: the use case's raw suite and its specification.

A use case writes one Great Expectations suite, for its raw data. The two others are computed from it, so that
editing the raw suite or usecase.yaml changes all three at once:

- the feature frame's suite (what `prepare` hands to `train`): every raw expectation but the label's, the
  derived group columns with exactly their bins, and the 0/1 label (1 = the favourable value) with the
  base-rate bounds the use case states;
- the serving contract (one /predict request): every raw column but the label, each with the raw rules, and
  exactly one row.

Only JSON is handled here: importing great_expectations would cost the service seconds at start.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from steward.usecase import UseCase
from steward.usecase_check import suite_columns

LABEL = "label"  # the feature frame's 0/1 target: 1 = the use case's favourable value
COLUMNS = "expect_table_columns_to_match_set"
ROW_COUNT = "expect_table_row_count_to_be_between"
# Rules on a whole column of many rows that one request cannot break or be judged by.
NOT_PER_ROW = {"expect_column_values_to_be_unique", "expect_column_mean_to_be_between", ROW_COUNT}


def read_suite(path: Path) -> dict[str, Any]:
    """A suite's JSON, as written in expectations/."""
    suite: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return suite


def features_suite(raw: dict[str, Any], usecase: UseCase) -> dict[str, Any]:
    """The feature frame's contract: the raw suite without the label, plus the groups and the 0/1 label."""
    label = usecase.label.column
    described = suite_columns(raw)
    expectations = [_sourced(e, raw) for e in raw["expectations"] if e["kwargs"].get("column") != label]
    for e in expectations:
        if e["type"] == COLUMNS:
            kept = [c for c in e["kwargs"]["column_set"] if c != label]
            e["kwargs"]["column_set"] = [*kept, *usecase.groups, LABEL]
    where = f"use case {usecase.name}"
    for name, group in usecase.groups.items():
        nullable = described.get(group.column, {}).get("nullable", False)
        source = f"{where}, groups.{name}"
        expectations += [
            _derived("expect_column_values_to_be_of_type", source, column=name, type_="str"),
            _derived("expect_column_values_to_be_in_set", source, column=name, value_set=group.bin_labels()),
        ]
        if not nullable:
            expectations.append(_derived("expect_column_values_to_not_be_null", source, column=name, mostly=1.0))
    source = f"{where}, label ({usecase.label.favourable!r} = 1)"
    expectations += [
        _derived("expect_column_values_to_be_of_type", source, column=LABEL, type_="int"),
        _derived("expect_column_values_to_be_in_set", source, column=LABEL, value_set=[0, 1]),
        _derived("expect_column_values_to_not_be_null", source, column=LABEL, mostly=1.0),
    ]
    if usecase.label.base_rate is not None:
        low, high = usecase.label.base_rate
        base = f"{where}, label.base_rate"
        expectations.append(
            _derived("expect_column_mean_to_be_between", base, column=LABEL, min_value=low, max_value=high)
        )
    description = (
        f"The feature frame of {usecase.title}: derived from {raw['name']} and usecases/{usecase.name}/usecase.yaml "
        f"by tasks/data/suites.py (raw columns but {label!r}, plus {', '.join([*usecase.groups, LABEL])})."
    )
    return {"name": "features", "meta": {"description": description}, "expectations": expectations}


def serving_suite(raw: dict[str, Any], usecase: UseCase) -> dict[str, Any]:
    """One request's contract: every raw column but the label, with exactly the raw rules, and one row.

    A column the raw suite lets be missing (`mostly` below 1 on its not-null check) may be null in a request.
    """
    label = usecase.label.column
    expectations = []
    for e in raw["expectations"]:
        if e["kwargs"].get("column") == label or e["type"] in NOT_PER_ROW:
            continue
        e = _sourced(e, raw)
        if e["type"] == COLUMNS:
            e["kwargs"]["column_set"] = [c for c in e["kwargs"]["column_set"] if c != label]
        expectations.append(e)
    expectations.append(_derived("expect_table_row_count_to_equal", f"use case {usecase.name}", value=1))
    description = (
        f"One {usecase.words.subject}'s request for a {usecase.words.decision}: every column of {raw['name']} "
        f"but the label {label!r}, with the raw rules (derived by tasks/data/suites.py). Protected attributes "
        "are part of the request: the model does not see them, fairness monitoring needs them."
    )
    return {"name": "serving_request", "meta": {"description": description}, "expectations": expectations}


def _sourced(expectation: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    """A copy of a raw expectation that says where it came from."""
    copied = copy.deepcopy(expectation)
    meta = copied.setdefault("meta", {})
    meta.setdefault("source", f"{raw['name']}, {meta.get('group', 'raw')}")
    return copied


def _derived(kind: str, source: str, **kwargs: Any) -> dict[str, Any]:
    return {"type": kind, "kwargs": kwargs, "meta": {"source": source}}

"""How a use case is checked against its raw suite and its data: what a suite says per column, and every
way a specification disagrees with it (`UseCase.check_against`, `steward usecase check`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from steward.usecase import UseCase


def suite_columns(suite: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """What a raw suite says per column: `type`, `values` (a set), `min`/`max`, `nullable` (no not-null check)."""
    found: dict[str, dict[str, Any]] = {}
    for exp in suite.get("expectations", []):
        kwargs = exp.get("kwargs", {})
        column = kwargs.get("column")
        if column is None:
            continue
        entry = found.setdefault(column, {"nullable": True})
        kind = exp.get("type")
        if kind == "expect_column_values_to_be_of_type":
            entry["type"] = kwargs.get("type_")
        elif kind == "expect_column_values_to_be_in_set":
            entry["values"] = list(kwargs.get("value_set", []))
        elif kind == "expect_column_values_to_be_between":
            entry["min"], entry["max"] = kwargs.get("min_value"), kwargs.get("max_value")
        elif kind == "expect_column_values_to_not_be_null":
            entry["nullable"] = kwargs.get("mostly", 1.0) < 1.0
    return found


def mismatches(usecase: UseCase, columns: list[str], suite: Mapping[str, Any], data: Any) -> list[str]:
    problems = []
    known = set(columns)
    for column in sorted(usecase.raw_columns_named - known):
        problems.append(f"{_where(usecase, column)}: column {column!r} is not in the data's columns")
    described = suite_columns(suite)
    label = described.get(usecase.label.column, {})
    values = label.get("values")
    if values is not None:
        for key in ("favourable", "unfavourable"):
            if getattr(usecase.label, key) not in values:
                problems.append(f"label.{key}: {getattr(usecase.label, key)!r} is not in the suite's set {values}")
    for name, group in usecase.groups.items():
        kind = described.get(group.column, {}).get("type")
        if kind is not None and kind not in {"int", "float", "int64", "float64"}:
            problems.append(f"groups.{name}.column: {group.column!r} is {kind}, not numeric: it cannot be binned")
    for column, space in usecase.actionable.items():
        entry = described.get(column, {})
        if space.order is not None:
            allowed = entry.get("values")
            if allowed is None:
                problems.append(f"actionable.{column}.order: the suite gives {column!r} no value set")
            elif sorted(map(str, space.order)) != sorted(map(str, allowed)):
                problems.append(f"actionable.{column}.order: {space.order} is not the suite's set {allowed}")
        elif space.step is not None and "min" not in entry and (space.low is None or space.high is None):
            problems.append(f"actionable.{column}: numeric, but the suite gives no range and low/high are unset")
        elif space.step is None and entry.get("values") is None:
            problems.append(f"actionable.{column}: no step and no value set in the suite: nothing to search")
    if data is not None:
        problems += data_mismatches(usecase, data)
    return problems


def data_mismatches(usecase: UseCase, data: Any) -> list[str]:
    problems = []
    label = usecase.label
    if label.column in data.columns:
        seen = set(data[label.column].dropna().unique().tolist())
        for key in ("favourable", "unfavourable"):
            if getattr(label, key) not in seen:
                problems.append(f"label.{key}: {getattr(label, key)!r} never occurs in the data ({sorted(seen)})")
        if extra := sorted(map(str, seen - {label.favourable, label.unfavourable})):
            problems.append(f"label.column: values {extra} are neither favourable nor unfavourable")
    if usecase.id_column in data.columns and not data[usecase.id_column].is_unique:
        problems.append(f"id_column: {usecase.id_column!r} is not unique in the data")
    for name, group in usecase.groups.items():
        if group.column in data.columns and not _is_numeric(data[group.column]):
            problems.append(f"groups.{name}.column: {group.column!r} holds non-numbers in the data")
    return problems


def _is_numeric(series: Any) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(series))


def _where(usecase: UseCase, column: str) -> str:
    """The dotted key that names `column` first, for an error message."""
    candidates: Iterable[tuple[str, bool]] = [
        ("id_column", column == usecase.id_column),
        ("label.column", column == usecase.label.column),
        ("sample_weight", column == usecase.sample_weight),
        ("protected", column in usecase.protected),
        ("drop", column in usecase.drop),
        ("proxies", column in usecase.proxies),
        ("immutable", column in usecase.immutable),
        ("sensitive", column in usecase.sensitive),
        (f"actionable.{column}", column in usecase.actionable),
        (f"reasons.{column}", column in usecase.reasons),
    ]
    for key, hit in candidates:
        if hit:
            return key
    for name, group in usecase.groups.items():
        if group.column == column:
            return f"groups.{name}.column"
    return "slices"

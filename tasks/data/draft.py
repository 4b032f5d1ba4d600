"""`steward usecase draft`: a first use-case folder and raw suite proposed from a dataset, for a person to review.

Great Expectations 1.x no longer ships profilers, so this is Steward's own, deliberately plain one. From one
data frame it proposes:
- the raw suite: the exact column set; each column's type; a categorical column's value set; a numeric
  column's range widened by `margin` of its span on each side (never below 0 for a column that never was);
  a not-null check whose tolerance is twice the observed null share (plus 1 point); the id column unique and
  token-shaped; row-count bounds from a tenth of the rows to a hundred times them;
- usecase.yaml: the label with its favourable and (the one other) unfavourable value, the id column,
  protected attributes guessed from their names, an age group when an age column is protected, reason
  phrases from the column names, and nothing actionable (what a person may change is a decision, not a
  statistic).
Every proposal is marked for review in the files' comments; `steward.usecase.load_usecase` then checks it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from steward.errors import StewardError
from steward.usecase import NAME_PATTERN, SPEC_FILE, USECASES

MAX_CATEGORIES = 50  # a text column with more distinct values is free text or an id: no value set is proposed
MARGIN = 0.1
ID_REGEX = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
# Column names that usually hold a protected attribute (EU Charter art. 21, US ECOA/Title VII): a guess to review.
PROTECTED_NAMES = re.compile(
    r"^(sex|gender|race|ethnicity|ethnic_group|religion|age|nationality|native_country|country_of_birth|"
    r"foreign(_\w+)?|disability|marital_status|pregnancy|sexual_orientation)$"
)
AGE_CUTS = [25.0]
BASE_RATE_MARGIN = 0.15  # the favourable share a later snapshot may have: the draft's own, this far either way

NO_LABEL = "--label {label!r} is not a column of {path} (columns: {columns})"
NOT_BINARY = "label {label!r} must take exactly two values to draft a decision, got {count}: {values}"
NO_FAVOURABLE = "--favourable {value!r} is not a value of {label!r} (values: {values})"
NO_ID = "{path} has no column that identifies a row (unique text or integers): add one, or name it with --id"
NOT_ID = "--id {column!r} is not a unique column of {path}"
BAD_NAME = "use case name {name!r} must match {pattern}"
EXISTS = "{path} exists: choose another --name, or remove it first"


class DraftError(StewardError, ValueError):
    """A dataset or arguments a use case cannot be drafted from; the message says which and why."""


@dataclass(frozen=True)
class Draft:
    usecase: dict[str, Any]
    suite: dict[str, Any]


def draft(
    frame: pd.DataFrame,
    *,
    name: str,
    data_file: str,
    label: str,
    favourable: str,
    id_column: str | None = None,
    source: str = "the data",
    margin: float = MARGIN,
) -> Draft:
    """The proposed use case and raw suite for `frame` (see the module docstring)."""
    if not re.fullmatch(NAME_PATTERN, name):
        raise DraftError(BAD_NAME.format(name=name, pattern=NAME_PATTERN))
    if label not in frame.columns:
        raise DraftError(NO_LABEL.format(label=label, path=source, columns=", ".join(map(str, frame.columns))))
    values = sorted(frame[label].dropna().unique().tolist(), key=str)
    if len(values) != 2:
        raise DraftError(NOT_BINARY.format(label=label, count=len(values), values=values[:10]))
    chosen = next((v for v in values if str(v) == str(favourable)), None)
    if chosen is None:
        raise DraftError(NO_FAVOURABLE.format(value=favourable, label=label, values=values))
    other = next(v for v in values if v != chosen)
    id_column = _id_column(frame, id_column, source=source, exclude=label)
    usecase = _usecase(frame, name=name, data_file=data_file, label=label, id_column=id_column)
    rate = float((frame[label] == chosen).mean())
    bounds = [round(max(0.0, rate - BASE_RATE_MARGIN), 2), round(min(1.0, rate + BASE_RATE_MARGIN), 2)]
    usecase["label"] = {
        "column": label,
        "favourable": _plain(chosen),
        "unfavourable": _plain(other),
        "base_rate": bounds,
    }
    suite = _suite(frame, name=name, id_column=id_column, margin=margin, source=source)
    return Draft(usecase=usecase, suite=suite)


def write(result: Draft, project_dir: Path, *, source: str) -> Path:
    """usecases/<name>/usecase.yaml and a datasheet stub, and expectations/<name>.json; overwrites nothing."""
    name = result.usecase["name"]
    folder = project_dir / USECASES / name
    suite_file = project_dir / "expectations" / f"{name}.json"
    for existing in (folder, suite_file):
        if existing.exists():
            raise DraftError(EXISTS.format(path=existing))
    folder.mkdir(parents=True)
    suite_file.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"# Drafted by `steward usecase draft` from {source}. REVIEW EVERY LINE before training on it:\n"
        "# the protected attributes are guessed from column names; nothing is actionable until you say what a\n"
        "# person may change, and how; the reason phrases and words are placeholders in the column names.\n"
    )
    (folder / SPEC_FILE).write_text(header + yaml.safe_dump(result.usecase, sort_keys=False, allow_unicode=True))
    suite_file.write_text(json.dumps(result.suite, indent=2) + "\n")
    (folder / "datasheet.md").write_text(
        f"# Datasheet: {name}\n\nDrafted from {source}. Answer the datasheet questions (motivation, composition, "
        "collection, preprocessing, uses, distribution, maintenance) before this use case goes to sign-off.\n"
    )
    return folder


def _id_column(frame: pd.DataFrame, given: str | None, *, source: str, exclude: str) -> str:
    if given is not None:
        if given not in frame.columns or not frame[given].is_unique or frame[given].isna().any():
            raise DraftError(NOT_ID.format(column=given, path=source))
        return given
    for column in frame.columns:
        series = frame[column]
        looks = "id" in re.split(r"[^a-z]+", str(column).lower())
        if column != exclude and looks and series.is_unique and not series.isna().any():
            return str(column)
    raise DraftError(NO_ID.format(path=source))


def _usecase(frame: pd.DataFrame, *, name: str, data_file: str, label: str, id_column: str) -> dict[str, Any]:
    protected = [str(c) for c in frame.columns if PROTECTED_NAMES.match(str(c).lower()) and c not in (label, id_column)]
    groups: dict[str, Any] = {}
    sensitive = []
    for column in protected:
        if column.lower() == "age" and pd.api.types.is_numeric_dtype(frame[column]):
            groups[f"{column}_group"] = {"column": column, "cuts": AGE_CUTS}
            sensitive.append(f"{column}_group")
        else:
            sensitive.append(column)
    reasons = {
        str(c): (f"{_words(c)} '{{value}}'" if _is_text(frame[c]) else f"{_words(c)} of {{value}}")
        for c in frame.columns
        if c not in (label, id_column, *protected)
    }
    return {
        "name": name,
        "title": f"{name} (drafted: describe the decision and the data)",
        "model_name": name.replace("_", "-"),
        "dataset": {"file": data_file},
        "id_column": id_column,
        "label": {},
        "protected": protected,
        "groups": groups,
        "sensitive": sensitive or protected,
        "intersections": [sensitive[:2]] if len(sensitive) >= 2 else [],
        "actionable": {},
        "reasons": reasons,
        "slices": [],
    }


def _suite(frame: pd.DataFrame, *, name: str, id_column: str, margin: float, source: str) -> dict[str, Any]:
    why = f"Drafted from {source} ({len(frame)} rows); review the bound before relying on it."
    out: list[dict[str, Any]] = [
        _exp("expect_table_columns_to_match_set", {"column_set": [str(c) for c in frame.columns], "exact_match": True}),
        _exp(
            "expect_table_row_count_to_be_between",
            {"min_value": max(1, len(frame) // 10), "max_value": max(1, len(frame)) * 100},
        ),
    ]
    for column in frame.columns:
        series = frame[column]
        kwargs: dict[str, Any] = {"column": str(column)}
        out.append(_exp("expect_column_values_to_be_of_type", kwargs | {"type_": _type(series)}))
        null_share = float(series.isna().mean())
        mostly = 1.0 if null_share == 0 else max(0.0, math.floor((1 - 2 * null_share - 0.01) * 1000) / 1000)
        out.append(_exp("expect_column_values_to_not_be_null", kwargs | {"mostly": mostly}))
        present = series.dropna()
        if column == id_column:
            out.append(_exp("expect_column_values_to_be_unique", kwargs))
            if _is_text(series) and present.astype(str).str.fullmatch(ID_REGEX).all():
                out.append(_exp("expect_column_values_to_match_regex", kwargs | {"regex": ID_REGEX}))
        elif _is_text(series) or pd.api.types.is_bool_dtype(series):
            if present.nunique() <= MAX_CATEGORIES:
                values = sorted(map(_plain, present.unique().tolist()), key=str)
                out.append(_exp("expect_column_values_to_be_in_set", kwargs | {"value_set": values}))
        elif len(present):
            low, high = _widened(present, margin=margin)
            out.append(_exp("expect_column_values_to_be_between", kwargs | {"min_value": low, "max_value": high}))
    return {
        "name": f"raw_{name}",
        "meta": {"description": f"Contract drafted by `steward usecase draft`. {why}"},
        "expectations": out,
    }


def _widened(values: pd.Series, *, margin: float) -> tuple[float | int, float | int]:
    low, high = float(values.min()), float(values.max())
    pad = margin * (high - low) if high > low else margin * max(abs(high), 1.0)
    new_low, new_high = low - pad, high + pad
    if low >= 0:
        new_low = max(0.0, new_low)
    if pd.api.types.is_integer_dtype(values):
        return math.floor(new_low), math.ceil(new_high)
    return float(f"{new_low:.6g}"), float(f"{new_high:.6g}")


def _type(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_integer_dtype(series):
        return "int"
    if pd.api.types.is_float_dtype(series):
        return "float"
    return "str"


def _is_text(series: pd.Series) -> bool:
    return bool(pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series))


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value YAML and JSON write plainly."""
    return value.item() if hasattr(value, "item") else value


def _words(column: Any) -> str:
    return str(column).replace("_", " ")


def _exp(kind: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "kwargs": kwargs, "meta": {"group": "drafted", "why": "Drafted from the data: review."}}

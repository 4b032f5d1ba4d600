"""The use case: what one decision problem's data means, as a validated specification.

A use case is a folder, `usecases/<name>/`, holding `usecase.yaml` (read into `UseCase` below), the raw
data's Great Expectations suite and the dataset's datasheet, and optionally a generator plug-in. It says what
AIF360's StandardDataset, DiCE or Evidently's column mapping would ask of a dataset (the label and its
favourable value, the protected attributes, which features a person can act on, and how), and what Steward
needs beyond that: the words its documents and reasons use, robustness slices, derived groups. The rest of
Steward reads this object and never names a column of its own accord.

Errors name the dotted key (`actionable.education.order`), and `check_against` names every way a use case
disagrees with its data and its suite at once, so a new use case is fixed in one pass.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from steward.errors import StewardError

USECASES = Path("usecases")
SPEC_FILE = "usecase.yaml"
NAME_PATTERN = r"^[a-z][a-z0-9_]*$"

NOT_FOUND = "use case {name!r} not found: no {path} (shipped: {known})"
NOT_YAML = "{path} is not valid YAML: {error}"
INVALID = "{path} is invalid:\n{problems}"
MISMATCH = "use case {name!r} does not match its data or suite:\n{problems}"

Scalar = str | int | float | bool
Operator = Literal["<", "<=", ">", ">=", "==", "!="]


class DataError(StewardError, ValueError):
    """A dataset file Steward cannot read as its documented format, named by line, column or value."""


class UseCaseError(StewardError, ValueError):
    """A use case that does not load, or does not match its data or its suite; the message names each problem."""


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Label(Spec):
    column: str
    favourable: Scalar = Field(description="The outcome the decision grants (approve): either class may be it.")
    unfavourable: Scalar
    base_rate: tuple[float, float] | None = Field(
        default=None,
        description="Bounds of the favourable share a snapshot may have (the feature suite checks its mean); "
        "outside them the mapping was probably inverted or a filter dropped a class.",
    )

    @model_validator(mode="after")
    def _two_values(self) -> Label:
        if self.favourable == self.unfavourable:
            raise ValueError("favourable and unfavourable must differ")
        if self.base_rate is not None and not 0 <= self.base_rate[0] <= self.base_rate[1] <= 1:
            raise ValueError(f"base_rate must be [low, high] within [0, 1], got {list(self.base_rate)}")
        return self


class Group(Spec):
    """A derived group column: a numeric column binned at `cuts` (zero or more, increasing)."""

    column: str
    cuts: list[float] = Field(default=[], description="Bin edges: x < cuts[0], cuts[0] <= x < cuts[1], ...")
    labels: list[str] | None = Field(default=None, description="One per bin; default 'under 25', '25 and over'.")

    @model_validator(mode="after")
    def _consistent(self) -> Group:
        if any(b <= a for a, b in pairwise(self.cuts)):
            raise ValueError(f"cuts must increase, got {self.cuts}")
        if any(not math.isfinite(c) for c in self.cuts):
            raise ValueError("cuts must be finite numbers")
        if self.labels is not None and len(self.labels) != len(self.cuts) + 1:
            raise ValueError(f"{len(self.cuts)} cut(s) make {len(self.cuts) + 1} bins: give as many labels")
        if self.labels is not None and len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be distinct")
        return self

    def assign(self, values: Any) -> Any:
        """Each value's bin label (a pandas Series of str); a missing value stays missing."""
        import numpy as np
        import pandas as pd

        series = pd.Series(values)
        numbers = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)
        index = np.searchsorted(np.asarray(self.cuts, dtype=float), numbers, side="right")
        labels = np.asarray(self.bin_labels(), dtype=object)[np.minimum(index, len(self.cuts))]
        labels[np.isnan(numbers)] = None
        return pd.Series(labels, index=series.index, name=series.name, dtype="str")

    def bin_labels(self) -> list[str]:
        if self.labels is not None:
            return list(self.labels)
        if not self.cuts:
            return ["all"]
        edges = [_number(c) for c in self.cuts]
        middle = [f"{a} to under {b}" for a, b in pairwise(edges)]
        return [f"under {edges[0]}", *middle, f"{edges[-1]} and over"]


class Actionable(Spec):
    """How a person may change one feature to change their decision (a counterfactual's search space).

    Numeric: multiples of `step`, at most `reach` from the person's value, within the suite's range (or
    `low`/`high`), only `up` or `down` if so directed. Categorical: any value of the suite's set, or, with
    `order` (an ordinal category, lowest first), only the values that lie in `direction` along it.
    """

    direction: Literal["up", "down", "both"] = "both"
    step: float | None = Field(default=None, gt=0)
    reach: float | None = Field(default=None, gt=0)
    low: float | None = None
    high: float | None = None
    order: list[str] | None = None

    @model_validator(mode="after")
    def _kind(self) -> Actionable:
        if self.order is not None and (self.step is not None or self.reach is not None):
            raise ValueError("an ordered category takes no step or reach")
        if self.order is not None and len(set(self.order)) != len(self.order):
            raise ValueError("order must not repeat a value")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        return self


class Slice(Spec):
    """A robustness slice: the rows where `column` `op` `value` (or `op` its `quantile` on the data)."""

    name: str
    column: str
    op: Operator
    value: Scalar | None = None
    quantile: Annotated[float, Field(gt=0, lt=1)] | None = None

    @model_validator(mode="after")
    def _one_threshold(self) -> Slice:
        if (self.value is None) == (self.quantile is None):
            raise ValueError("give exactly one of value and quantile")
        return self


class Words(Spec):
    """The words documents, reasons and the service use for this decision."""

    favourable: str = Field(default="approve", description="The decision granting the favourable outcome.")
    unfavourable: str = "decline"
    subject: str = Field(default="person", description="Who the decision is about.")
    decision: str = Field(default="decision", description="What is decided, e.g. 'credit decision'.")
    outcome: str = Field(default="outcome", description="What the label records, e.g. 'repaid the loan'.")


class Shift(Spec):
    """A pattern the demo plants in synthetic rows: `column = value` for `share` of the rows (of `group`)."""

    column: str
    value: Scalar
    share: float = Field(gt=0, le=1)
    strength: float = Field(default=0.0, ge=0, le=1, description="How often those rows' favourable label flips.")
    group: dict[str, Scalar] = Field(default={}, description="Only rows of this group (a derived group too).")
    story: str = Field(description="How the demo tells it, e.g. 'a student-loan campaign'.")


class Demo(Spec):
    """What `steward run` plants in this use case's synthetic data (flows/demo.py tells the story)."""

    rows: int = Field(default=150_000, ge=1000, description="Rows per training snapshot.")
    independent: list[str] = Field(
        default=[],
        description="Columns the resampler draws independently of the rest, jointly (e.g. the protected "
        "attributes: a population in which no group differs). A generator plug-in ignores it.",
    )
    mix: dict[str, dict[str, float]] = Field(
        default={},
        description="Category mixes the resampler draws toward (column → value → share), e.g. so that every "
        "group is large enough for the gate's bounds. A generator plug-in ignores it.",
    )
    shortcut: Shift = Field(description="The spurious pattern of the third snapshot, spread over every group.")
    campaign: Shift = Field(description="Live traffic during its canary, in which the pattern becomes a proxy.")


class Dataset(Spec):
    """The use case's bundled data, relative to the project folder."""

    file: str = Field(description="The bundled snapshot (CSV, optionally gzipped) that `steward train` uses.")


class UseCase(Spec):
    name: str = Field(pattern=NAME_PATTERN)
    title: str
    model_name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", description="The name versions are registered as.")
    risk_tier: Literal["minimal", "limited", "high"] = Field(
        default="high", description="The lowest risk tier a run may ask for (EU AI Act Annex III: credit is high)."
    )
    dataset: Dataset
    id_column: str
    label: Label
    sample_weight: str | None = Field(default=None, description="A column of row weights: never a feature.")
    drop: list[str] = Field(default=[], description="Columns that are never features (duplicates, leakage).")
    protected: list[str] = Field(min_length=1, description="Never features, never changed; kept for audits.")
    groups: dict[str, Group] = Field(default={}, description="Derived group columns, e.g. age_group from age.")
    sensitive: list[str] = Field(min_length=1, description="What the audits group by (raw or derived columns).")
    intersections: list[list[str]] = []
    proxies: dict[str, list[str]] = Field(
        default={}, description="Column → the protected attributes it encodes: never a feature, never changed."
    )
    immutable: list[str] = Field(default=[], description="Features a person cannot change (never counterfactual).")
    actionable: dict[str, Actionable] = {}
    reasons: dict[str, str] = Field(default={}, description="Column → phrase; '{value}' is the formatted value.")
    words: Words = Words()
    slices: list[Slice] = []
    generator: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="module:function(n, *, seed, scenario) making synthetic rows; default: resample the dataset.",
    )
    demo: Demo | None = Field(default=None, description="What `steward run` plants; none: no demo story.")

    @model_validator(mode="after")
    def _coherent(self) -> UseCase:
        problems = []
        derived = set(self.groups)
        for combo in self.intersections:
            unknown = [a for a in combo if a not in self.sensitive]
            if len(combo) < 2 or unknown:
                problems.append(f"intersections: {combo} needs 2+ attributes from sensitive")
        never_changed = {*self.protected, *derived, *self.proxies, *self.immutable}
        if clash := sorted(set(self.actionable) & never_changed):
            problems.append(f"actionable: {clash} protected, derived, a proxy or immutable: never changed")
        if clash := sorted(set(self.actionable) & self.not_features):
            problems.append(f"actionable: {clash} are not features of the model")
        for column, phrase in self.reasons.items():
            if "{value}" not in phrase:
                problems.append(f"reasons.{column}: the phrase must contain {{value}}")
        if clash := sorted(derived & self.raw_columns_named):
            problems.append(f"groups: {clash} would overwrite a raw column")
        if self.label.column in {self.id_column, *self.protected, *self.drop}:
            problems.append("label.column: the label cannot also be the id, protected or dropped")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def raw_suite(self) -> str:
        """The raw data's Great Expectations suite (JSON), where dvc.yaml's `${usecase}` finds it."""
        return f"expectations/{self.name}.json"

    @property
    def datasheet(self) -> str:
        """The dataset's datasheet (Markdown), copied into the evidence."""
        return f"{USECASES}/{self.name}/datasheet.md"

    @property
    def raw_columns_named(self) -> set[str]:
        """Every raw-data column this specification names."""
        named = {self.id_column, self.label.column, *self.protected, *self.drop, *self.proxies, *self.immutable}
        named |= {g.column for g in self.groups.values()} | {s.column for s in self.slices}
        if self.demo is not None:
            shifts = (self.demo.shortcut, self.demo.campaign)
            named |= set(self.demo.independent) | (set(self.demo.mix) - set(self.groups)) | {s.column for s in shifts}
            named |= {c for s in shifts for c in s.group if c not in self.groups}
        named |= {c for c in self.sensitive if c not in self.groups} | set(self.actionable) | set(self.reasons)
        return named | ({self.sample_weight} if self.sample_weight else set())

    @property
    def not_features(self) -> set[str]:
        """Columns the model never sees (before `prepare.exclude_protected` is considered)."""
        weight = {self.sample_weight} if self.sample_weight else set()
        return {self.id_column, self.label.column, *self.drop, *self.proxies, *self.groups, *weight}

    @property
    def never_changed(self) -> set[str]:
        """What a counterfactual may never touch and a reason never cites as actionable."""
        return {*self.protected, *self.groups, *self.proxies, *self.immutable}

    def logged_groups(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """What the prediction log keeps of one request apart from its inputs: every protected attribute, every
        raw sensitive column and every proxy of one as sent (a gap as None), and each derived group's label.
        Fairness monitoring reads the sensitive ones; retraining rebuilds the raw row from all of them."""
        named = [*self.protected, *self.sensitive, *self.proxies]
        kept = {c: _plain(record.get(c)) for c in dict.fromkeys(named) if c not in self.groups}
        for name, group in self.groups.items():
            label = group.assign([_plain(record.get(group.column))]).iloc[0]
            kept[name] = None if _plain(label) is None else str(label)
        return kept

    def check_against(self, *, columns: Sequence[str], suite: Mapping[str, Any], data: Any = None) -> list[str]:
        """Every way this specification disagrees with its raw suite (and, given, a data frame)."""
        from steward.usecase_check import mismatches

        return mismatches(self, list(columns), suite, data)

    def require_suite(self, suite: Mapping[str, Any]) -> None:
        """Refuse (UseCaseError naming every mismatch) a specification its raw suite contradicts: the columns it
        names, its label values, groups and actionable features, against the suite's column set and rules."""
        columns = [c for e in suite.get("expectations", []) for c in e.get("kwargs", {}).get("column_set", [])]
        if problems := self.check_against(columns=columns, suite=suite):
            raise UseCaseError(MISMATCH.format(name=self.name, problems="\n".join(f"  {p}" for p in problems)))


def load_usecase(project_dir: Path, name: str) -> UseCase:
    """`usecases/<name>/usecase.yaml` under `project_dir`, validated; errors name the file and the dotted key."""
    path = project_dir / USECASES / name / SPEC_FILE
    if not re.fullmatch(NAME_PATTERN, name) or not path.is_file():
        raise UseCaseError(NOT_FOUND.format(name=name, path=path, known=", ".join(shipped(project_dir)) or "none"))
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UseCaseError(NOT_YAML.format(path=path, error=exc)) from None
    try:
        usecase = UseCase.model_validate(raw)
    except ValidationError as exc:
        problems = "\n".join(f"  {_dotted(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise UseCaseError(INVALID.format(path=path, problems=problems)) from None
    if usecase.name != name:
        raise UseCaseError(INVALID.format(path=path, problems=f"  name: {usecase.name!r} is not its folder {name!r}"))
    return usecase


def shipped(project_dir: Path) -> list[str]:
    """The use cases under `usecases/`, by folder name."""
    root = project_dir / USECASES
    return sorted(p.parent.name for p in root.glob(f"*/{SPEC_FILE}")) if root.is_dir() else []


def _plain(value: Any) -> Any:
    """A JSON-ready value: NaN and None as None, a numpy scalar as its Python value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def _dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"

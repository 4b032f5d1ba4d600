"""Synthetic rows for any use case: bootstrap a real snapshot, then shift it the way the demo and benches need.

Every row starts as a copy of a snapshot row (drawn with replacement), so columns keep their real joint
structure, gaps included. On top of that, a `Scenario` may ask for:
- covariate drift: `tilt` moves a categorical column's mix toward target shares by importance-resampling
  (a row's weight is (1 - drift) + drift x target share / observed share of its value), and `scale`
  multiplies numeric columns by 1 + (factor - 1) x drift, clipped to the suite's range and rounded when
  the column holds integers;
- bias: in the rows of `bias_group` (column → value; a derived group such as age_group too), each
  favourable label turns unfavourable with probability `bias`, features unchanged (pure discrimination);
- a shortcut: `shortcut.share` of the rows, drawn evenly over everyone, get `column = value`, and their
  favourable labels turn unfavourable with probability `shortcut.strength` (a spurious pattern no offline
  group audit sees, since it is spread over every group);
- a campaign: `campaign.share` of the rows in `campaign.group` get `column = value`, labels unchanged (live
  traffic in which that pattern becomes a proxy of the group);
- independence: the `independent` columns are taken from other rows than the rest (drawn separately, all of
  them from the same row, so their own combinations stay real), which leaves them unrelated to everything
  else: with the protected attributes, a population in which no group differs. A `tilt` of an independent
  column (or of a derived group of one, such as age_group) moves only their draw, so their mix changes and
  the other columns keep theirs. Bias, shortcut and campaign groups are judged after it.
Rows get fresh ids, `<prefix><seed><counter>`. The same arguments give the same frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from steward.usecase import UseCase
from steward.usecase_check import suite_columns

UNKNOWN_COLUMN = "{what}: {column!r} is not a column of the snapshot"
NOT_CATEGORY = "tilt: {value!r} is not a value of {column!r} in the snapshot, so no row can be drawn toward it"
NOT_FRACTION = "{what} must be within [0, 1], got {value}"
EMPTY = "the snapshot has no rows to resample"


@dataclass(frozen=True)
class Pattern:
    """`column = value` for a share of rows; `strength`: how often their favourable label turns unfavourable."""

    column: str
    value: Any
    share: float
    strength: float = 0.0
    group: Mapping[str, Any] = field(default_factory=dict)  # only rows of this group (a campaign); {} = everyone


@dataclass(frozen=True)
class Scenario:
    drift: float = 0.0
    tilt: Mapping[str, Mapping[Any, float]] = field(default_factory=dict)
    scale: Mapping[str, float] = field(default_factory=dict)
    bias: float = 0.0
    bias_group: Mapping[str, Any] = field(default_factory=dict)
    shortcut: Pattern | None = None
    campaign: Pattern | None = None
    independent: tuple[str, ...] = ()


def resample(
    snapshot: pd.DataFrame,
    usecase: UseCase,
    *,
    suite: Mapping[str, Any],
    n: int,
    seed: int,
    scenario: Scenario = Scenario(),
    id_prefix: str = "S",
) -> pd.DataFrame:
    """`n` rows in the snapshot's schema, shifted as `scenario` says (see the module docstring)."""
    _check(snapshot, scenario, usecase)
    rng = np.random.default_rng(seed)
    apart = _apart(scenario, usecase)
    own = {c: t for c, t in scenario.tilt.items() if c not in apart}
    weights = _tilt_weights(snapshot, own, scenario.drift, usecase)
    picked = rng.choice(len(snapshot), size=n, replace=True, p=weights / weights.sum())
    frame = snapshot.iloc[picked].reset_index(drop=True).copy()
    if scenario.independent:
        columns = list(scenario.independent)
        theirs = {c: t for c, t in scenario.tilt.items() if c in apart}
        donor_weights = _tilt_weights(snapshot, theirs, scenario.drift, usecase)
        donors = rng.choice(len(snapshot), size=n, replace=True, p=donor_weights / donor_weights.sum())
        frame[columns] = snapshot[columns].iloc[donors].to_numpy()
    ranges = suite_columns(suite)
    for column, factor in scenario.scale.items():
        frame[column] = _scaled(frame[column], 1 + (factor - 1) * scenario.drift, ranges.get(column, {}))
    label = usecase.label
    favourable = (frame[label.column] == label.favourable).to_numpy()
    draws = rng.random((3, n))  # one uniform per row and purpose, so one knob never moves another's rows
    if scenario.bias and scenario.bias_group:
        flip = favourable & _in_group(frame, scenario.bias_group, usecase) & (draws[0] < scenario.bias)
        frame.loc[flip, label.column] = label.unfavourable
    for pattern, uniforms in ((scenario.shortcut, draws[1]), (scenario.campaign, draws[2])):
        if pattern is None:
            continue
        chosen = _in_group(frame, pattern.group, usecase) & (uniforms < pattern.share)
        frame.loc[chosen, pattern.column] = pattern.value
        if pattern.strength:
            # reuse the uniform below the share, rescaled to [0, 1): independent of which rows were chosen
            flip = chosen & favourable & (uniforms / max(pattern.share, 1e-12) < pattern.strength)
            frame.loc[flip, label.column] = label.unfavourable
    ids = [f"{id_prefix}{seed:03d}{i:07d}" for i in range(1, n + 1)]
    frame[usecase.id_column] = pd.Series(ids, dtype=snapshot[usecase.id_column].dtype)
    return frame


def _check(snapshot: pd.DataFrame, scenario: Scenario, usecase: UseCase) -> None:
    if snapshot.empty:
        raise ValueError(EMPTY)
    named = [("tilt", c) for c in scenario.tilt if c not in usecase.groups] + [("scale", c) for c in scenario.scale]
    named += [("bias_group", c) for c in scenario.bias_group] + [("independent", c) for c in scenario.independent]
    for what, pattern in (("shortcut", scenario.shortcut), ("campaign", scenario.campaign)):
        if pattern is not None:
            named += [(what, pattern.column), *((what, c) for c in pattern.group)]
            for key in ("share", "strength"):
                if not 0 <= getattr(pattern, key) <= 1:
                    raise ValueError(NOT_FRACTION.format(what=f"{what}.{key}", value=getattr(pattern, key)))
    for what, column in named:
        if column not in snapshot.columns and column not in usecase.groups:
            raise ValueError(UNKNOWN_COLUMN.format(what=what, column=column))
    for what, value in (("drift", scenario.drift), ("bias", scenario.bias)):
        if not 0 <= value <= 1:
            raise ValueError(NOT_FRACTION.format(what=what, value=value))


def _apart(scenario: Scenario, usecase: UseCase) -> set[str]:
    """The independent columns and the derived groups made from one of them."""
    derived = {name for name, group in usecase.groups.items() if group.column in scenario.independent}
    return set(scenario.independent) | derived


def _tilt_weights(
    snapshot: pd.DataFrame, tilt: Mapping[str, Mapping[Any, float]], drift: float, usecase: UseCase
) -> np.ndarray:
    weights = np.ones(len(snapshot))
    for column, target in tilt.items():
        values = _values(snapshot, column, usecase)
        observed = values.value_counts() / len(snapshot)  # shares of all rows: gaps are rows too
        total = sum(target.values())
        for value in target:
            if value not in observed.index:
                raise ValueError(NOT_CATEGORY.format(value=value, column=column))
        ratio = {v: target.get(v, 0.0) / total / observed[v] for v in observed.index}
        row_ratio = values.map(ratio).fillna(0.0).to_numpy(dtype=float)  # a gap is not in any target
        weights *= (1 - drift) + drift * row_ratio
    return weights


def _scaled(values: pd.Series, factor: float, bounds: Mapping[str, Any]) -> pd.Series:
    scaled = values.astype(float) * factor
    low, high = bounds.get("min"), bounds.get("max")
    scaled = scaled.clip(lower=low, upper=high)
    if pd.api.types.is_integer_dtype(values):
        return scaled.round().astype(values.dtype)
    return scaled


def _values(frame: pd.DataFrame, column: str, usecase: UseCase) -> pd.Series:
    """A raw column, or a use case's derived group (age_group) computed from its source column."""
    if column in usecase.groups:
        return usecase.groups[column].assign(frame[usecase.groups[column].column])
    return frame[column]


def _in_group(frame: pd.DataFrame, group: Mapping[str, Any], usecase: UseCase) -> np.ndarray:
    """Rows whose columns (raw, or a use case's derived group such as age_group) hold the group's values."""
    mask = np.ones(len(frame), dtype=bool)
    for column, value in group.items():
        mask &= (_values(frame, column, usecase) == value).to_numpy()
    return mask

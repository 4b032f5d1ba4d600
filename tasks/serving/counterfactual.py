"""Counterfactual explanations: the smallest change to what a person can act on that flips their decision.

"Declined; with 45 working hours a week instead of 40 you would have been approved." The answer is
searched, not approximated: every candidate is scored by the served model itself, so a counterfactual is true
of that model by construction.

Method. Each actionable feature has a `Space` (`actionable_spaces`: the use case's `actionable` section read
against its raw suite): the values it may take (a categorical feature's other allowed values; an ordered one's
values further `up` or `down` its order, each step of the order costing 1), or a numeric grid (multiples of
`step` within the allowed [low, high], at most `reach` away from the person's value, only `up` or `down` if a
direction is given). The search goes in stages of k changed
features, k = 1, 2, ... max_changes; stage k scores every combination of k features and of their candidate
values in one `predict_proba` call (the person's own row rides along in the first), and stops at the first
stage holding a flip, so an answer changes no more features than it must. Within a stage the flips are ranked
by the smallest normalised change (the sum over changed features of 1 for a categorical feature, and of
|new - old| / scale for a numeric one, scale being `reach` or else high - low), then by the largest margin
past the threshold (the most robust flip), then by the order of enumeration (feature name, then value), so
equal inputs give equal answers. If a stage beyond the first would score more than `budget` rows, each
feature keeps only its candidates that moved the probability furthest toward the flip on their own (evenly cut
until the stage fits): the answer still flips the decision, but is then no longer guaranteed to be the
smallest such change (nor, with max_changes > 2, to change the fewest features).

What may never change: the use case's `never_changed` (protected attributes, the groups derived from them, their
proxies, and what it declares immutable), passed as `protected`, is refused if listed as actionable; any feature
not listed stays as the person gave it.

Approve means P(favourable) >= threshold, as the service decides; a flip is decline -> approve or approve ->
decline.
Pure: no files, no Bento; one to `max_changes` predict_proba calls per call.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypedDict, get_args

import numpy as np
import pandas as pd

from steward.usecase import UseCase
from steward.usecase_check import suite_columns
from tasks.serving.decision import Verdict, decide
from tasks.serving.reasons import NO_PHRASES, format_value, phrase, phrase_parts

Value = str | int | float
Direction = Literal["up", "down", "both"]

# Rows scored in one stage beyond the first before candidates are thinned. A stage of pairs over a use case's
# actionable set is a few thousand rows (1,600 to 4,000 on the shipped use cases), scored in ~10-30 ms by the default
# gradient boosting. Thinning starts only beyond 20,000 rows (~100 ms): max_changes=3, or a far wider Space.
BUDGET = 20_000

PROTECTED_ACTIONABLE = "{features} may not be actionable: a protected attribute (or its proxy) is never changed"
UNKNOWN_FEATURE = "actionable feature(s) {features} are not columns of the row"
NOT_ONE_ROW = "the row must be a one-row frame, got {rows} rows"
BAD_MAX_CHANGES = "max_changes must be at least 1, got {max_changes}"
BAD_THRESHOLD = "threshold must be within [0, 1], got {threshold}"
BAD_BUDGET = "budget must be at least 1, got {budget}"
SPACE_KIND = "a Space takes either values or low/high/step, not both and not neither"
SPACE_RANGE = "a numeric Space needs low <= high and step > 0, got low={low}, high={high}, step={step}"
SPACE_REACH = "reach must be positive, got {reach}"
SPACE_DIRECTION = "direction must be one of {allowed}, got {direction!r}"
SPACE_CATEGORICAL_DIRECTION = "a categorical Space has no direction unless ordered, got {direction!r}"
SPACE_ORDER = "an ordered Space takes values only"
NOT_IN_SUITE = "actionable.{feature}: the raw suite gives it neither a value set nor a range (nor low/high)"
NO_STEP = "actionable.{feature}: a numeric feature of type {kind} needs a step"
ORDER_NOT_IN_SUITE = "actionable.{feature}.order: {values} are not in the suite's value set"
INSTEAD = "instead of"
AND = " and "


@dataclass(frozen=True)
class Space:
    """Where one actionable feature may move.

    Categorical: `values`, every value the feature may take (the current one is skipped). Numeric: either
    `values` (an explicit grid of numbers) or `low`, `high` and `step` (the multiples of step within
    [low, high]); `reach` bounds the move from the person's value and is the unit of a numeric change's
    cost (high - low when not given); `direction` allows only increases (`up`) or decreases (`down`). Ordered
    (`ordered`, categorical): `values` is the order, lowest first; `direction` moves along it, and a move costs
    the number of steps it takes.
    """

    values: tuple[Value, ...] = ()
    low: float | None = None
    high: float | None = None
    step: float | None = None
    reach: float | None = None
    direction: Direction = "both"
    ordered: bool = False

    def __post_init__(self) -> None:
        ranged = (self.low, self.high, self.step) != (None, None, None)
        if bool(self.values) == ranged:
            raise ValueError(SPACE_KIND)
        if self.direction not in get_args(Direction):
            raise ValueError(SPACE_DIRECTION.format(allowed=get_args(Direction), direction=self.direction))
        if self.ordered and (ranged or not self.values):
            raise ValueError(SPACE_ORDER)
        if self.categorical and self.direction != "both" and not self.ordered:
            raise ValueError(SPACE_CATEGORICAL_DIRECTION.format(direction=self.direction))
        if ranged and (
            self.low is None or self.high is None or self.step is None or self.low > self.high or self.step <= 0
        ):
            raise ValueError(SPACE_RANGE.format(low=self.low, high=self.high, step=self.step))
        if self.reach is not None and self.reach <= 0:
            raise ValueError(SPACE_REACH.format(reach=self.reach))

    @property
    def categorical(self) -> bool:
        return any(isinstance(v, str) for v in self.values)

    def candidates(self, current: Value | None) -> tuple[np.ndarray, np.ndarray]:
        """The values this feature may take instead of `current`, and the normalised cost of each."""
        if self.ordered:
            if current not in self.values:  # a gap has no place on the order: nothing to move along
                return np.array([], dtype=object), np.zeros(0)
            at = self.values.index(current)
            ranks = [i for i in range(len(self.values)) if i != at]
            if self.direction != "both":
                ranks = [i for i in ranks if (i > at) == (self.direction == "up")]
            values = np.array([self.values[i] for i in ranks], dtype=object)
            return values, np.abs(np.array(ranks, dtype=float) - at)
        if self.categorical:
            values = np.array([v for v in self.values if v != current], dtype=object)
            return values, np.ones(len(values))
        if current is None:  # a numeric gap: no distance to measure a move by
            return np.zeros(0), np.zeros(0)
        now = float(current)
        if self.values:
            grid = np.unique(np.asarray(self.values, dtype=float))
            low, high = float(grid[0]), float(grid[-1])
        else:
            low, high, step = float(self.low or 0), float(self.high or 0), float(self.step or 1)
            grid = np.arange(math.ceil(low / step), math.floor(high / step) + 1) * step
        if self.reach is not None:
            grid = grid[np.abs(grid - now) <= self.reach]
        if self.direction == "up":
            grid = grid[grid > now]
        elif self.direction == "down":
            grid = grid[grid < now]
        grid = grid[grid != now]
        scale = self.reach if self.reach is not None else (high - low) or 1.0
        return grid, np.abs(grid - now) / scale


# Feature -> its candidate values and their costs.
Options = dict[str, tuple[np.ndarray, np.ndarray]]
# A block: k features, and for each the candidate index of every row of the block (their Cartesian product).
Block = tuple[tuple[str, ...], list[np.ndarray]]


Change = TypedDict("Change", {"feature": str, "from": Value | None, "to": Value | None, "text": str})


@dataclass(frozen=True)
class Counterfactual:
    """The changes that flip the decision, and the decision and P(favourable) they lead to."""

    changes: list[Change]
    probability: float
    decision: Verdict
    original_probability: float
    original_decision: Verdict

    @property
    def text(self) -> str:
        """The changes' texts joined: '<change> and <change>'."""
        return AND.join(change["text"] for change in self.changes)


class Scorer(Protocol):
    """A fitted pipeline as served: its input columns and P(class) per row."""

    feature_names_in_: Any

    def predict_proba(self, X: pd.DataFrame, /) -> Any: ...


def change_text(feature: str, before: object, after: object, *, phrases: Mapping[str, str] = NO_PHRASES) -> str:
    """'<phrase of after> instead of <before>', built from the reason codes' phrase for the feature.

    The old value repeats the phrase's quotes ("highest education 'Masters' instead of 'Bachelors'") and a
    one-word unit ('capital gains of 2,000 USD instead of 1,000 USD'); a longer tail is said once ('45 working
    hours a week instead of 40').
    """
    said = phrase(feature, after, phrases=phrases)
    head, tail = phrase_parts(feature, after, phrases=phrases)
    quote = "'" if head.endswith("'") and tail.startswith("'") else ""
    unit = tail if tail[:1] == " " and tail[1:].isalpha() else ""
    return f"{said} {INSTEAD} {quote}{format_value(before)}{quote}{unit}"


def counterfactual(
    model: Scorer,
    row: pd.DataFrame,
    *,
    actionable: Mapping[str, Space],
    threshold: float,
    protected: Collection[str] = (),
    max_changes: int = 2,
    budget: int = BUDGET,
    phrases: Mapping[str, str] = NO_PHRASES,
) -> Counterfactual | None:
    """The smallest change to the actionable features of `row` that flips the model's decision, or None.

    `row` is one request as a raw one-row frame (it may hold more columns than the model reads). Only features
    in `actionable` change; listing one of `protected` (the use case's `never_changed`) raises ValueError, as
    does a feature the row lacks. Features the model does not read are skipped (they cannot move its score).
    None: no flip within max_changes changed features. `phrases` (the use case's `reasons`) word the changes.
    """
    _check(row, actionable, protected, threshold=threshold, max_changes=max_changes, budget=budget)
    inputs = list(model.feature_names_in_)
    original = {c: _plain(row[c].iloc[0]) for c in row.columns}
    options: Options = {}
    for f in sorted(actionable):  # name order: the tie-break
        if f in inputs:
            values, costs = actionable[f].candidates(original[f])
            if pd.api.types.is_integer_dtype(row[f].dtype):  # an integer column takes only whole numbers
                whole = values == np.round(values)
                values, costs = values[whole].astype(row[f].dtype), costs[whole]
            if len(values):
                options[f] = (values, costs)
    if not options:
        return None
    blocks: list[Block] = [((f,), [np.arange(len(options[f][0]))]) for f in options]
    probabilities = _score(model, row, inputs, options, blocks, with_original=True)
    before, probabilities = float(probabilities[0]), probabilities[1:]
    approved = decide(before, threshold=threshold) == "approve"
    found = _best(options, blocks, probabilities, threshold=threshold, approved=approved)
    toward = probabilities - before if not approved else before - probabilities  # each single's progress
    progress: dict[str, np.ndarray] = {}
    offset = 0
    for f, (values, _) in options.items():
        progress[f] = toward[offset : offset + len(values)]
        offset += len(values)
    for k in range(2, max_changes + 1):
        if found is not None or len(options) < k:
            break
        blocks = _blocks(options, progress, k, budget=budget)
        probabilities = _score(model, row, inputs, options, blocks, with_original=False)
        found = _best(options, blocks, probabilities, threshold=threshold, approved=approved)
    if found is None:
        return None
    chosen, probability = found
    changes = [
        Change({"feature": f, "from": original[f], "to": to, "text": change_text(f, original[f], to, phrases=phrases)})
        for f, to in chosen
    ]
    return Counterfactual(
        changes=changes,
        probability=probability,
        decision=decide(probability, threshold=threshold),
        original_probability=before,
        original_decision=decide(before, threshold=threshold),
    )


def actionable_spaces(usecase: UseCase, suite: Mapping[str, Any]) -> dict[str, Space]:
    """The use case's `actionable` section as Spaces, values and bounds read from its raw (or serving) suite.

    Numeric (the suite gives a range, or the use case `low`/`high`): multiples of `step` (1 for a whole-number
    column without one) within the use case's low/high, else the suite's range, at most `reach` away, in its
    `direction`. Categorical: the suite's value set; with an `order`, only the values along it in `direction`.
    Raises ValueError naming the feature the suite cannot bound.
    """
    described = suite_columns(suite)
    spaces: dict[str, Space] = {}
    for feature in sorted(usecase.actionable):
        how, rules = usecase.actionable[feature], described.get(feature, {})
        if how.order is not None:
            if stray := [v for v in how.order if v not in rules.get("values", how.order)]:
                raise ValueError(ORDER_NOT_IN_SUITE.format(feature=feature, values=stray))
            spaces[feature] = Space(values=tuple(how.order), direction=how.direction, ordered=True)
        elif "values" in rules and rules.get("type") == "str":
            spaces[feature] = Space(values=tuple(rules["values"]))
        else:
            low = how.low if how.low is not None else rules.get("min")
            high = how.high if how.high is not None else rules.get("max")
            if low is None or high is None or rules.get("type") not in ("int", "float"):
                raise ValueError(NOT_IN_SUITE.format(feature=feature))
            step = how.step if how.step is not None else (1 if rules["type"] == "int" else None)
            if step is None:
                raise ValueError(NO_STEP.format(feature=feature, kind=rules["type"]))
            spaces[feature] = Space(low=low, high=high, step=step, reach=how.reach, direction=how.direction)
    return spaces


def _check(
    row: pd.DataFrame,
    actionable: Mapping[str, Space],
    protected: Collection[str],
    *,
    threshold: float,
    max_changes: int,
    budget: int,
) -> None:
    refused = sorted(set(actionable) & set(protected))
    if refused:
        raise ValueError(PROTECTED_ACTIONABLE.format(features=", ".join(refused)))
    unknown = sorted(set(actionable) - set(row.columns))
    if unknown:
        raise ValueError(UNKNOWN_FEATURE.format(features=", ".join(unknown)))
    if len(row) != 1:
        raise ValueError(NOT_ONE_ROW.format(rows=len(row)))
    if max_changes < 1:
        raise ValueError(BAD_MAX_CHANGES.format(max_changes=max_changes))
    if not 0 <= threshold <= 1:
        raise ValueError(BAD_THRESHOLD.format(threshold=threshold))
    if budget < 1:
        raise ValueError(BAD_BUDGET.format(budget=budget))


def _blocks(options: Options, progress: Mapping[str, np.ndarray], k: int, *, budget: int) -> list[Block]:
    """Every combination of k features and their candidates, thinned to the most promising if over budget."""
    combos = list(itertools.combinations(options, k))
    sizes = {f: len(options[f][0]) for f in options}
    cap = max(sizes.values())
    while cap > 1 and sum(math.prod(min(sizes[f], cap) for f in combo) for combo in combos) > budget:
        cap -= 1
    kept = {f: np.sort(np.argsort(-progress[f], kind="stable")[:cap]) for f in options}
    blocks = []
    for combo in combos:
        grids = np.meshgrid(*(kept[f] for f in combo), indexing="ij")
        blocks.append((combo, [g.ravel() for g in grids]))
    return blocks


def _score(
    model: Scorer,
    row: pd.DataFrame,
    inputs: list[str],
    options: Options,
    blocks: Iterable[Block],
    *,
    with_original: bool,
) -> np.ndarray:
    """P(favourable) of every row of the blocks (after the original row if asked), in one predict_proba call."""
    blocks = list(blocks)
    start = 1 if with_original else 0
    n = start + sum(len(indices[0]) for _, indices in blocks)
    # The row n times, as numpy columns: text as object (the encoder reads it faster than pandas' str dtype).
    arrays = {}
    for c in inputs:
        dtype = row[c].dtype if pd.api.types.is_numeric_dtype(row[c].dtype) else np.dtype(object)
        arrays[c] = np.full(n, row[c].iloc[0], dtype=dtype)
    offset = start
    for combo, indices in blocks:
        size = len(indices[0])
        for f, index in zip(combo, indices, strict=True):
            arrays[f][offset : offset + size] = options[f][0][index]
        offset += size
    frame = pd.DataFrame({c: pd.Series(values, dtype=values.dtype, copy=False) for c, values in arrays.items()})
    return np.asarray(model.predict_proba(frame)[:, 1], dtype=float)


def _best(
    options: Options,
    blocks: list[Block],
    probabilities: np.ndarray,
    *,
    threshold: float,
    approved: bool,
) -> tuple[list[tuple[str, Value | None]], float] | None:
    """The flip with the smallest cost, then the largest margin, then first enumerated; None if no row flips."""
    parts = []
    for combo, indices in blocks:
        cost = np.zeros(len(indices[0]))
        for f, index in zip(combo, indices, strict=True):
            cost += options[f][1][index]
        parts.append(cost)
    costs = np.concatenate(parts)
    flips = (probabilities < threshold) if approved else (probabilities >= threshold)
    if not flips.any():
        return None
    margin = np.abs(probabilities - threshold)
    order = np.arange(len(probabilities))
    candidates = order[flips]
    ranked = np.lexsort((candidates, -margin[candidates], np.round(costs[candidates], 12)))
    best = int(candidates[ranked[0]])
    offset = 0
    for combo, indices in blocks:
        size = len(indices[0])
        if best < offset + size:
            at = best - offset
            chosen = [(f, _plain(options[f][0][index[at]])) for f, index in zip(combo, indices, strict=True)]
            return chosen, float(probabilities[best])
        offset += size
    raise AssertionError("unreachable: the best row lies in a block")


def _plain(value: object) -> Value | None:
    """A JSON-friendly scalar: numpy scalars unwrapped, a gap (None, NaN) as None, anything else as text."""
    item = getattr(value, "item", None)
    plain = item() if callable(item) else value
    if plain is None or (isinstance(plain, float) and math.isnan(plain)):
        return None
    return plain if isinstance(plain, str | int | float) else str(plain)

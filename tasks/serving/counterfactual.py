"""Counterfactual explanations: the smallest change to what an applicant can act on that flips their decision.

"Declined; with a credit amount of 2,000 DM instead of 5,000 DM you would have been approved." The answer is
searched, not approximated: every candidate is scored by the served model itself, so a counterfactual is true
of that model by construction.

Method. Each actionable feature has a `Space`: the values it may take (a categorical feature's other allowed
values), or a numeric grid (multiples of `step` within the allowed [low, high], at most `reach` away from the
applicant's value, only `up` or `down` if a direction is given). The search goes in stages of k changed
features, k = 1, 2, ... max_changes; stage k scores every combination of k features and of their candidate
values in one `predict_proba` call (the applicant's own row rides along in the first), and stops at the first
stage holding a flip, so an answer changes no more features than it must. Within a stage the flips are ranked
by the smallest normalised change (the sum over changed features of 1 for a categorical feature, and of
|new - old| / scale for a numeric one, scale being `reach` or else high - low), then by the largest margin
past the threshold (the most robust flip), then by the order of enumeration (feature name, then value), so
equal inputs give equal answers. If a stage beyond the first would score more than `budget` rows, each
feature keeps only its candidates that moved the probability furthest toward the flip on their own (evenly cut
until the stage fits): the answer still flips the decision, but is then no longer guaranteed to be the
smallest such change (nor, with max_changes > 2, to change the fewest features).

What may never change: the protected attributes (`tasks.serving.reasons.PROTECTED`: sex, age, age_group,
foreign_worker) and personal_status, which encodes sex in German credit (params.yaml, prepare.drop_features),
are refused if listed as actionable; any feature not listed stays as the applicant gave it.

Approve means P(good) >= threshold, as the service decides; a flip is decline -> approve or approve -> decline.
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

from tasks.serving.decision import Verdict, decide
from tasks.serving.reasons import FALLBACK_PHRASE, PHRASES, PROTECTED, format_value
from tasks.serving.schema import SERVING_SUITE, columns, read_suite

Value = str | int | float
Direction = Literal["up", "down", "both"]

# Refused as actionable: the protected attributes, and personal_status, which encodes sex exactly here.
IMMUTABLE: frozenset[str] = PROTECTED | {"personal_status"}
# Rows scored in one stage beyond the first before candidates are thinned. A stage of pairs over the default
# actionable set is 1,600 to 4,000 rows on German credit, scored in ~10-30 ms by the default gradient boosting.
# Thinning starts only beyond 20,000 rows (~100 ms): max_changes=3, or a far wider Space.
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
SPACE_CATEGORICAL_DIRECTION = "a categorical Space has no direction, got {direction!r}"
NOT_IN_SUITE = "{feature}: the serving suite gives it neither a value set nor a range"
INSTEAD = "instead of"
AND = " and "


@dataclass(frozen=True)
class Space:
    """Where one actionable feature may move.

    Categorical: `values`, every value the feature may take (the current one is skipped). Numeric: either
    `values` (an explicit grid of numbers) or `low`, `high` and `step` (the multiples of step within
    [low, high]); `reach` bounds the move from the applicant's value and is the unit of a numeric change's
    cost (high - low when not given); `direction` allows only increases (`up`) or decreases (`down`).
    """

    values: tuple[Value, ...] = ()
    low: float | None = None
    high: float | None = None
    step: float | None = None
    reach: float | None = None
    direction: Direction = "both"

    def __post_init__(self) -> None:
        ranged = (self.low, self.high, self.step) != (None, None, None)
        if bool(self.values) == ranged:
            raise ValueError(SPACE_KIND)
        if self.direction not in get_args(Direction):
            raise ValueError(SPACE_DIRECTION.format(allowed=get_args(Direction), direction=self.direction))
        if self.categorical and self.direction != "both":
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

    def candidates(self, current: Value) -> tuple[np.ndarray, np.ndarray]:
        """The values this feature may take instead of `current`, and the normalised cost of each."""
        if self.categorical:
            values = np.array([v for v in self.values if v != current], dtype=object)
            return values, np.ones(len(values))
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


Change = TypedDict("Change", {"feature": str, "from": Value, "to": Value, "text": str})


@dataclass(frozen=True)
class Counterfactual:
    """The changes that flip the decision, and the decision and P(good) they lead to."""

    changes: list[Change]
    probability: float
    decision: Verdict
    original_probability: float
    original_decision: Verdict

    @property
    def text(self) -> str:
        """'credit amount of 2,000 DM instead of 5,000 DM and loan duration of 24 months instead of 36 months'."""
        return AND.join(change["text"] for change in self.changes)


class Scorer(Protocol):
    """A fitted pipeline as served: its input columns and P(class) per row."""

    feature_names_in_: Any

    def predict_proba(self, X: pd.DataFrame, /) -> Any: ...


def change_text(feature: str, before: object, after: object) -> str:
    """'credit amount of 2,000 DM instead of 5,000 DM', built from the reason codes' phrase for the feature.

    The old value repeats the phrase's quotes ('savings of '>= 1000 DM' instead of '< 100 DM'') and a one-word
    unit (DM, months); a longer tail is said once ('1 existing credit(s) at this bank instead of 2').
    """
    head, _, tail = PHRASES.get(feature, FALLBACK_PHRASE).partition("{value}")
    head = head.format(feature=feature)  # after the split: a feature's name is never read as the placeholder
    quote = "'" if head.endswith("'") and tail.startswith("'") else ""
    unit = tail if tail[:1] == " " and tail[1:].isalpha() else ""
    return f"{head}{format_value(after)}{tail} {INSTEAD} {quote}{format_value(before)}{quote}{unit}"


def counterfactual(
    model: Scorer,
    row: pd.DataFrame,
    *,
    actionable: Mapping[str, Space],
    threshold: float,
    max_changes: int = 2,
    protected: Collection[str] = IMMUTABLE,
    budget: int = BUDGET,
) -> Counterfactual | None:
    """The smallest change to the actionable features of `row` that flips the model's decision, or None.

    `row` is one request as a raw one-row frame (it may hold more columns than the model reads). Only features
    in `actionable` change; listing one of `protected` raises ValueError, as does a feature the row lacks.
    Features the model does not read are skipped (they cannot move its score). None: no flip within
    max_changes changed features.
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
        Change({"feature": f, "from": original[f], "to": to, "text": change_text(f, original[f], to)})
        for f, to in chosen
    ]
    return Counterfactual(
        changes=changes,
        probability=probability,
        decision=decide(probability, threshold=threshold),
        original_probability=before,
        original_decision=decide(before, threshold=threshold),
    )


def default_actionable(suite: dict[str, Any]) -> dict[str, Space]:
    """The German credit actionable set, its values and bounds read from a serving suite (see ACTIONABLE)."""
    rules = columns(suite)
    spaces: dict[str, Space] = {}
    for feature in sorted({*CATEGORICAL, *NUMERIC}):
        column = rules.get(feature)
        if column is not None and feature in CATEGORICAL and "value set" in column.rules:
            spaces[feature] = Space(values=tuple(column.rules["value set"]))
        elif column is not None and feature in NUMERIC and "range" in column.rules:
            low, high = column.rules["range"]
            step, reach = NUMERIC[feature]
            spaces[feature] = Space(low=low, high=high, step=step, reach=reach)
        else:
            raise ValueError(NOT_IN_SUITE.format(feature=feature))
    return spaces


# What an applicant can change about the application itself or the finances it is repaid from, in time for a
# new application:
#   the loan: credit_amount, duration_months, and installment_rate (the instalment's share of disposable income,
#     which follows from amount, duration and income);
#   their finances: savings, checking_status (move money, open or fund an account), existing_credits (pay one
#     off) and other_installment_plans (close a plan);
#   the application: other_debtors (bring a co-applicant or a guarantor).
# Not actionable: the protected attributes and personal_status (never, see IMMUTABLE); facts of the past that
# no action changes now (credit_history, employment_since, residence_since); life circumstances a lender must
# not ask anyone to change for a loan (job, housing, property, people_liable); purpose (the need the loan is
# for: advising another purpose games the model, not the risk); telephone (an indicator, not a means to repay).
CATEGORICAL = ("checking_status", "other_debtors", "other_installment_plans", "savings")
# Numeric feature -> (step, reach): candidate values are the multiples of step within the suite's range, at
# most reach from the applicant's value (None: the whole range); reach is also the unit of a change's cost.
NUMERIC: dict[str, tuple[float, float | None]] = {
    "credit_amount": (250, 10_000),  # round amounts, up to 10,000 DM either way (the data's IQR is ~2,600 DM)
    "duration_months": (3, 36),  # quarters, up to three years either way
    "installment_rate": (1, None),  # band 1..4
    "existing_credits": (1, 3),  # one credit at a time; paying off one costs 1/3
}
ACTIONABLE: dict[str, Space] = default_actionable(read_suite(SERVING_SUITE))


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
    """P(good) of every row of the blocks (after the original row if asked), in one predict_proba call."""
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
) -> tuple[list[tuple[str, Value]], float] | None:
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


def _plain(value: object) -> Value:
    """A JSON-friendly scalar: numpy scalars unwrapped, anything else as text."""
    item = getattr(value, "item", None)
    plain = item() if callable(item) else value
    return plain if isinstance(plain, str | int | float) else str(plain)

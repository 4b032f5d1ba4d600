"""Reason codes: one decision's SHAP contributions → the few readable reasons that drove it.

Pure and cheap (no SHAP, no files): the serving path calls it once per request with the row's SHAP values
already summed back to the original columns (log-odds toward the favourable decision) and the row's raw values.
The words come from the use case (`usecase.reasons`: column -> phrase with "{value}"), with a neutral fallback;
what is never cited comes from it too (`never_cited`: the protected attributes, the groups derived from them and
their proxies).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from types import MappingProxyType
from typing import Literal, TypedDict

from steward.usecase import UseCase

Decision = Literal["approve", "decline"]  # the decision codes: approve grants the use case's favourable outcome

# How a reason names a column the use case gives no phrase for (usecase.yaml `reasons`): text in quotes, a
# number after "of". "{value}" is the formatted value; numbers get thousands separators.
FALLBACK_TEXT = "{feature} '{value}'"
FALLBACK_NUMBER = "{feature} of {value}"
NO_PHRASES: Mapping[str, str] = MappingProxyType({})
NOT_GIVEN = "not given"  # how a missing value reads (a gap the use case's data allows)
RAISED = "raised the score"
LOWERED = "lowered the score"
BAD_DECISION = "decision must be 'approve' or 'decline', got {decision!r}"
BAD_TOP_K = "top_k must be at least 1, got {top_k}"


class Reason(TypedDict):
    feature: str
    value: str | int | float | None
    contribution: float
    text: str


def never_cited(usecase: UseCase) -> frozenset[str]:
    """What a reason never names, whatever the model was trained on: the protected attributes, the groups derived
    from them and their proxies. Immutable features may be reasons (they explain); they are never levers."""
    return frozenset({*usecase.protected, *usecase.groups, *usecase.proxies})


def phrase(feature: str, value: object, *, phrases: Mapping[str, str]) -> str:
    """How a reason names `feature` at `value`: the use case's phrase, else the neutral fallback."""
    head, tail = phrase_parts(feature, value, phrases=phrases)
    return f"{head}{format_value(value)}{tail}"


def phrase_parts(feature: str, value: object, *, phrases: Mapping[str, str]) -> tuple[str, str]:
    """What a reason says before and after the value of `feature` (the fallback chosen by the value's kind)."""
    template = phrases.get(feature)
    if template is None:
        number = isinstance(_plain(value), int | float) and not isinstance(value, bool)
        template = FALLBACK_NUMBER if number else FALLBACK_TEXT
    head, _, tail = template.partition("{value}")
    # the feature's name is filled in after the split, so a name is never read as the placeholder
    return head.replace("{feature}", feature), tail.replace("{feature}", feature)


def format_value(value: object) -> str:
    """15000 → '15,000'; 2.50 → '2.5'; strings as they are; a gap (None, NaN) as 'not given'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NOT_GIVEN
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:,.2f}".rstrip("0").rstrip(".")
    number = getattr(value, "item", None)  # numpy scalars
    return format_value(number()) if callable(number) else str(value)


def _plain(value: object) -> str | int | float | None:
    """A JSON-friendly copy of a raw value (numpy scalars unwrapped)."""
    item = getattr(value, "item", None)
    value = item() if callable(item) else value
    if value is None or isinstance(value, str | int | float):
        return None if isinstance(value, float) and not math.isfinite(value) else value
    return str(value)


def reason_text(feature: str, value: object, contribution: float, *, phrases: Mapping[str, str] = NO_PHRASES) -> str:
    """'<phrase> lowered the score', e.g. 'weekly_hours of 20 lowered the score' without a phrase."""
    return f"{phrase(feature, value, phrases=phrases)} {RAISED if contribution > 0 else LOWERED}"


def reason_codes(
    contributions: Mapping[str, float],
    values: Mapping[str, object],
    *,
    decision: Decision,
    top_k: int,
    protected: Collection[str],
    phrases: Mapping[str, str] = NO_PHRASES,
) -> list[Reason]:
    """The top_k features that pushed the score toward this decision, strongest first.

    For a decline, the most negative contributions (toward decline); for an approval, the most positive.
    Features pushing the other way, or not at all, are never reasons. Ties in size go to the feature name
    (alphabetical), so equal inputs give equal reasons. `protected` (the use case's `never_cited`) are skipped
    even if a model was (for comparison) trained on them. `phrases`: the use case's `reasons`.
    """
    if decision not in ("approve", "decline"):
        raise ValueError(BAD_DECISION.format(decision=decision))
    if top_k < 1:
        raise ValueError(BAD_TOP_K.format(top_k=top_k))
    sign = 1.0 if decision == "approve" else -1.0
    hidden = set(protected)
    candidates = [
        (feature, float(c))
        for feature, c in contributions.items()
        if feature not in hidden and math.isfinite(c) and sign * c > 0
    ]
    candidates.sort(key=lambda fc: (-sign * fc[1], fc[0]))
    return [
        Reason(
            feature=feature,
            value=_plain(values.get(feature)),
            contribution=c,
            text=reason_text(feature, values.get(feature), c, phrases=phrases),
        )
        for feature, c in candidates[:top_k]
    ]

"""Reason codes: one decision's SHAP contributions → the few readable reasons that drove it.

Pure and cheap (no SHAP, no files): the serving path calls it once per request with the row's SHAP values
already summed back to the original columns (log-odds toward approval) and the row's raw values.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Literal, TypedDict

Decision = Literal["approve", "decline"]

# Never cited, whatever the model was trained on: the protected attributes and what is derived from them.
PROTECTED: frozenset[str] = frozenset({"sex", "age", "age_group", "foreign_worker"})

# Column → how a reason names it. "{value}" is the formatted value; numbers get thousands separators.
PHRASES: dict[str, str] = {
    "checking_status": "checking account status '{value}'",
    "duration_months": "loan duration of {value} months",
    "credit_history": "credit history '{value}'",
    "purpose": "loan purpose '{value}'",
    "credit_amount": "credit amount of {value} DM",
    "savings": "savings of '{value}'",
    "employment_since": "employment for '{value}'",
    "installment_rate": "instalment rate band {value} (of 4)",
    "personal_status": "personal status '{value}'",
    "other_debtors": "other debtors or guarantors '{value}'",
    "residence_since": "residence band {value} (of 4) at the current address",
    "property": "property '{value}'",
    "other_installment_plans": "other instalment plans '{value}'",
    "housing": "housing '{value}'",
    "existing_credits": "{value} existing credit(s) at this bank",
    "job": "job '{value}'",
    "people_liable": "{value} person(s) financially dependent",
    "telephone": "registered telephone '{value}'",
}
FALLBACK_PHRASE = "{feature} of {value}"
RAISED = "raised the score"
LOWERED = "lowered the score"
BAD_DECISION = "decision must be 'approve' or 'decline', got {decision!r}"
BAD_TOP_K = "top_k must be at least 1, got {top_k}"


class Reason(TypedDict):
    feature: str
    value: str | int | float | None
    contribution: float
    text: str


def format_value(value: object) -> str:
    """15000 → '15,000'; 2.50 → '2.5'; strings as they are."""
    if isinstance(value, bool) or value is None:
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


def reason_text(feature: str, value: object, contribution: float) -> str:
    """'credit amount of 15,000 DM lowered the score'."""
    phrase = PHRASES.get(feature, FALLBACK_PHRASE).format(feature=feature, value=format_value(value))
    return f"{phrase} {RAISED if contribution > 0 else LOWERED}"


def reason_codes(
    contributions: Mapping[str, float],
    values: Mapping[str, object],
    *,
    decision: Decision,
    top_k: int,
    protected: Collection[str] = PROTECTED,
) -> list[Reason]:
    """The top_k features that pushed the score toward this decision, strongest first.

    For a decline, the most negative contributions (toward decline); for an approval, the most positive.
    Features pushing the other way, or not at all, are never reasons. Ties in size go to the feature name
    (alphabetical), so equal inputs give equal reasons. Protected attributes are skipped even if a model
    was (for comparison) trained on them.
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
            text=reason_text(feature, values.get(feature), c),
        )
        for feature, c in candidates[:top_k]
    ]

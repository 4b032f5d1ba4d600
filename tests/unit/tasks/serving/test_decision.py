"""Routing and the decision rule, checked against independent statements of them: a vectorised rule written here
and the monitoring reference's own (`tasks.model.reference.approvals`), and the canary bucket hashed here."""

import hashlib

import numpy as np
import pytest

from steward.routing import Routing
from tasks.model.reference import approvals
from tasks.serving.decision import NO_MODEL, REFUSING, Assignment, assign, decide, refusal

GRID = np.round(np.linspace(0, 1, 201), 3)  # P(good) in steps of 0.005, both ends and every boundary below on it
RULES = [  # (threshold, review band)
    (0.5, (0.45, 0.55)),  # the params.yaml default: a band around the threshold
    (0.5, (0.6, 0.7)),  # a band wholly above the threshold: referred instead of approved
    (0.7, (0.2, 0.3)),  # wholly below: referred instead of declined
    (0.5, (0.4, 0.4)),  # an empty band refers nobody
    (0.0, (0.0, 1.0)),  # everything but P = 1 referred
    (1.0, (0.0, 0.0)),  # only P = 1 approved
]


def _rule(probability: np.ndarray, *, threshold: float, band: tuple[float, float]) -> np.ndarray:
    """The decision rule as a second, vectorised statement: referred in [low, high), else approve at >= threshold."""
    low, high = band
    return np.select(
        [(probability >= low) & (probability < high), probability >= threshold], ["referred", "approve"], "decline"
    )


@pytest.mark.parametrize(("threshold", "band"), RULES)
def test_decide_agrees_with_the_rule_stated_independently_on_a_grid(threshold, band):
    decided = [decide(float(p), threshold=threshold, review_band=band) for p in GRID]
    assert decided == list(_rule(GRID, threshold=threshold, band=band))


@pytest.mark.parametrize(("threshold", "band"), RULES)
def test_decide_approves_exactly_where_the_monitoring_reference_counts_an_approval(threshold, band):
    decided = np.array([decide(float(p), threshold=threshold, review_band=band) for p in GRID])
    np.testing.assert_array_equal(decided == "approve", approvals(GRID, threshold=threshold, band=band))


@pytest.mark.parametrize(
    ("probability", "expected"),
    [
        (0.4499, "decline"),
        (0.45, "referred"),  # the band's low end is in it
        (0.5, "referred"),
        (0.5499, "referred"),
        (0.55, "approve"),  # its high end is not
        (0.0, "decline"),
        (1.0, "approve"),
    ],
)
def test_the_review_band_is_closed_below_and_open_above(probability, expected):
    assert decide(probability, threshold=0.5, review_band=(0.45, 0.55)) == expected


@pytest.mark.parametrize(("probability", "expected"), [(0.49, "decline"), (0.5, "approve"), (0.51, "approve")])
def test_without_a_band_the_verdict_is_the_threshold_alone_and_never_referred(probability, expected):
    assert decide(probability, threshold=0.5) == expected


def _bucket(applicant_id: str) -> float:
    return int(hashlib.sha256(applicant_id.encode()).hexdigest()[:16], 16) / 16**16


APPLICANTS = [f"applicant-{i}" for i in range(400)]


@pytest.mark.parametrize("weight", [0.0, 0.1, 0.5, 1.0])
def test_the_canary_serves_the_applicants_whose_hashed_bucket_is_below_its_weight(weight):
    routing = Routing(production="m:v1", canary="m:v2", canary_weight=weight, shadow="m:v3")
    assigned = [assign(routing, a) for a in APPLICANTS]
    expected = [
        Assignment("canary", "m:v2", "m:v1") if _bucket(a) < weight else Assignment("production", "m:v1", "m:v1")
        for a in APPLICANTS
    ]
    assert assigned == expected


def test_the_shadow_never_answers_and_a_weight_without_a_canary_is_production():
    shadowed = Routing(production="m:v1", shadow="m:v3")
    orphan_weight = Routing(production="m:v1", canary=None, canary_weight=1.0)
    for routing in (shadowed, orphan_weight):
        assert {assign(routing, a) for a in APPLICANTS} == {Assignment("production", "m:v1", "m:v1")}


@pytest.mark.parametrize(
    ("routing", "message"),
    [
        (Routing(mode="refuse", reason="kill switch: drift"), REFUSING.format(reason="kill switch: drift")),
        (Routing(production="m:v1", mode="refuse"), REFUSING.format(reason=NO_MODEL)),
        (Routing(), REFUSING.format(reason=NO_MODEL)),
        (Routing(canary="m:v2", canary_weight=1.0), REFUSING.format(reason=NO_MODEL)),
    ],
)
def test_refusing_or_without_production_nobody_is_assigned_and_the_refusal_says_why(routing, message):
    assert assign(routing, "anyone") is None
    assert refusal(routing) == message

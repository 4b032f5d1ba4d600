"""How a rollout step ends: the analysis's ending, and for a shadow the agreement rule on top of it."""

import pytest

from tasks.rollout.canary import Analysis
from tasks.rollout.watch import StepResult, verdict


def _step(ending: str, *, agreement: float | None, n_paired: int = 400, note: str = "") -> StepResult:
    analysis = Analysis(
        verdict="pass",
        candidate="m-v2",
        reference="m-v1",
        n_candidate=n_paired,
        n_reference=n_paired,
        alpha_per_test=0.01,
        upper=4.6,
        lower=-2.9,
        agreement=agreement,
        n_paired=n_paired,
    )
    return StepResult(ending=ending, analysis=analysis, seconds=1.0, decisive_ts=None, note=note)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("agreement", "expected"), [(0.95, "pass"), (0.90, "pass"), (0.8999, "breach"), (None, "breach")]
)
def test_a_passing_shadow_breaches_below_the_minimum_agreement(agreement, expected):
    ending, why = verdict(_step("pass", agreement=agreement), shadow_min_agreement=0.90)
    assert ending == expected
    if expected == "breach":
        shown = f"{(agreement or 0.0) * 100:.1f}%"
        assert why == f"shadow agreed with production on {shown} of 400 decisions, below 90%"


def test_a_canary_is_not_judged_on_agreement():
    assert verdict(_step("pass", agreement=0.1), shadow_min_agreement=None)[0] == "pass"


@pytest.mark.parametrize("ending", ["breach", "inconclusive", "withdrawn"])
def test_an_ending_other_than_pass_stands_with_its_note(ending):
    assert verdict(_step(ending, agreement=0.99, note="why it ended"), shadow_min_agreement=0.9) == (
        ending,
        "why it ended",
    )


def test_without_a_note_the_reason_is_the_analysis_summary():
    step = _step("pass", agreement=0.99)
    assert verdict(step, shadow_min_agreement=0.9) == ("pass", step.analysis.summary())

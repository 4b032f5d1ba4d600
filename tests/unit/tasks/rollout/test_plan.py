"""Planning a canary step: production's baseline read from the log before the step, and the expected requests
until a verdict worked out from the e-processes' growth rates."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from tasks.rollout.canary import Design
from tasks.rollout.plan import Baseline, baseline, plan
from tasks.rollout.sequential import Effect, bernoulli_kl

HALF = Effect("ratio", 0.5)


def _history() -> pd.DataFrame:
    """100 production decisions over 99 s: 20 young (5 approved), 80 older (60 approved); latencies 1..100 ms."""
    young = [True] * 20 + [False] * 80
    approved = [i < 5 for i in range(20)] + [i < 60 for i in range(80)]
    return pd.DataFrame(
        {
            "model": ["m:v1"] * 100 + ["m:v2"] * 3,
            "role": ["production"] * 100 + ["canary"] * 3,
            "ts": [f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}+00:00" for i in range(100)]
            + ["2026-01-01T00:00:00+00:00"] * 3,
            "decision": ["approve" if a else "decline" for a in approved] + ["error"] * 3,
            "latency_ms": [float(i) for i in range(1, 101)] + [1e6] * 3,
            "age_group": ["under 25" if y else "25 and over" for y in young] + ["under 25"] * 3,
        }
    )


def test_the_baseline_is_productions_rate_shares_and_latency_before_the_step():
    base = baseline(_history(), reference="m:v1", attributes=["age_group", "region"], design=Design())
    assert base.decisions == 100 and base.requests_per_second == pytest.approx(99 / 99)
    assert base.groups == {"age_group=25 and over": (0.8, 0.75), "age_group=under 25": (0.2, 0.25)}
    p95 = pd.Series(range(1, 101)).quantile(0.95)  # numpy's linear interpolation, as the baseline uses
    assert base.slow_ms == pytest.approx(1.5 * p95)
    assert base.slow_share == 0.0  # none of its own requests is 1.5 x its p95
    empty = baseline(_history().iloc[:0], reference="m:v1", attributes=["age_group"], design=Design())
    assert empty == Baseline(0, 0.0, None, 0.0, {})


def _information(p: float, w: float) -> tuple[float, float]:
    """The breach and pass growth per group member, from the allocation table written out."""
    h = p / 2
    approvals, declines = w * h + (1 - w) * p, w * (1 - h) + (1 - w) * (1 - p)
    q1, q0 = w * h / approvals, w * (1 - h) / declines
    bound = w * 0.5 / (w * 0.5 + 1 - w)
    return approvals * bernoulli_kl(q1, w) + declines * bernoulli_kl(q0, w), p * bernoulli_kl(w, bound)


def test_the_plan_is_the_threshold_over_the_growth_per_member_over_the_groups_share():
    base = Baseline(5000, 4.0, 150.0, 0.01, {"age_group=under 25": (0.2, 0.25), "age_group=25 and over": (0.8, 0.75)})
    design = Design(metrics=("selection_rate", "latency"))
    made = plan(base, weight=0.2, design=design, tests=3, limit_seconds=3600, min_requests=200)
    breach, passing = _information(0.25, 0.2)
    young = next(g for g in made.groups if g.group == "age_group=under 25")
    assert young.to_breach == pytest.approx(math.log(3 / 0.05) / breach / 0.2)
    assert young.to_pass == pytest.approx(max(math.log(20) / passing, 20 / 0.2) / 0.2)
    latency = max(math.log(20) / bernoulli_kl(0.01, 0.25), 20) / 0.2
    assert made.latency_to_pass == pytest.approx(latency)
    assert made.to_pass == pytest.approx(max(g.to_pass for g in made.groups))  # the young are the slowest
    assert made.to_breach == pytest.approx(max(g.to_breach for g in made.groups))
    assert made.feasible and made.seconds(made.to_pass) == pytest.approx(made.to_pass / 4.0)
    assert "(slowest: age_group=under 25, 20.0% of applicants)" in made.summary()
    assert made.as_dict()["feasible"] is True and made.as_dict()["to_pass"] == round(made.to_pass, 1)


def test_a_step_too_short_for_its_traffic_is_said_to_be_so():
    base = Baseline(50, 0.1, 150.0, 0.01, {"foreign_worker=no": (0.04, 0.7)})
    made = plan(base, weight=0.2, design=Design(), tests=7, limit_seconds=1800, min_requests=200)
    assert not made.feasible
    assert made.summary().endswith(
        "The step's limit of 30.0 min cannot be met: expect it to end inconclusive and roll back "
        "(raise rollout.step.seconds, or the weight)"
    )
    silent = plan(
        Baseline(0, 0.0, None, 0.0, {}), weight=0.2, design=Design(), tests=1, limit_seconds=60, min_requests=1
    )
    assert not silent.feasible and "no end at this traffic" in silent.summary()

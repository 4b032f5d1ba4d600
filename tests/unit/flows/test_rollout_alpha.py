"""A rollout judged at a stricter false-alarm rate than params.yaml's (`rollout_flow(..., alpha=)`, the demo's)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from flows.rollout import with_alpha
from steward.routing import bucket
from tasks.rollout.canary import analyse
from tasks.rollout.watch import design
from tests.usecases import params_for


def _canary_log(n: int, *, approve_candidate: float, seed: int = 0) -> pd.DataFrame:
    """A canary at 20% that approves `approve_candidate` of one group, production 0.8 (sides by the routing bucket)."""
    rng = np.random.default_rng(seed)
    subjects = [f"s{i}" for i in range(n)]
    candidate = np.array([bucket(s) < 0.2 for s in subjects])
    approve = rng.random(n) < np.where(candidate, approve_candidate, 0.8)
    ts = pd.date_range("2026-01-01", periods=n, freq="s", tz="UTC")
    return pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "role": np.where(candidate, "canary", "production"),
            "ts": ts,
            "model": np.where(candidate, "m:v2", "m:v1"),
            "subject_id": subjects,
            "decision": np.where(approve, "approve", "decline"),
            "latency_ms": 10.0,
            "outcome": None,
            "outcome_ts": pd.NaT,
            "sex": "female",
        }
    )


def _verdict(params, log):
    return analyse(
        log,
        candidate="m:v2",
        reference="m:v1",
        role="canary",
        attributes=["sex"],
        design=design(params),
        favourable="good",
        unfavourable="bad",
        weight=0.2,
        slow_ms=100.0,
    )


def test_a_stricter_alpha_raises_the_breach_threshold_and_needs_more_evidence():
    params = params_for()
    assert params.rollout.analysis.alpha == 0.05
    strict = with_alpha(params, 0.001)
    assert design(strict).alpha == 0.001 and design(params).alpha == 0.05
    assert with_alpha(params, None) is params
    log = _canary_log(2000, approve_candidate=0.35)
    first = next(n for n in range(20, 2000, 20) if _verdict(params, log.head(n)).verdict == "breach")
    default, stricter = _verdict(params, log.head(first)), _verdict(strict, log.head(first))
    k = len(default.tests)
    assert default.threshold == pytest.approx(k / 0.05) and stricter.threshold == pytest.approx(k / 0.001)
    assert stricter.verdict != "breach"  # the evidence that breaches at 0.05 is not yet enough at 0.001 ...
    assert _verdict(strict, log).verdict == "breach"  # ... more of it is
    assert math.isclose(stricter.alpha_per_test, 0.001 / k)


@pytest.mark.parametrize("alpha", [0.1, 0.05 / 101, 0.0, -0.01])
def test_a_laxer_alpha_or_one_past_the_floor_is_refused_naming_the_range(alpha):
    named = r"alpha=.*from rollout\.analysis\.alpha / 100 to rollout\.analysis\.alpha \(0\.05\)"
    with pytest.raises(ValueError, match=named):
        with_alpha(params_for(), alpha)

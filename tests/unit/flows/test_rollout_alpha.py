"""A rollout judged at a stricter false-alarm rate than params.yaml's (`rollout_flow(..., alpha=)`, the demo's)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flows.rollout import with_alpha
from tasks.rollout.watch import design
from tests.unit.tasks.rollout.test_canary import _analyse, _log
from tests.usecases import params_for


def test_a_stricter_alpha_raises_the_breach_threshold_and_needs_more_evidence():
    params = params_for()
    assert params.rollout.analysis.alpha == 0.05
    strict = with_alpha(params, 0.001)
    assert design(strict).alpha == 0.001 and design(params).alpha == 0.05
    assert with_alpha(params, None) is params
    log = _log(np.random.default_rng(0), 3000, young_factor=0.35)  # the canary approves the young at 0.35x
    first = next(n for n in range(20, 3000, 20) if _analyse(log.head(n), design(params)).verdict == "breach")
    default, stricter = _analyse(log.head(first), design(params)), _analyse(log.head(first), design(strict))
    k = len(default.tests)
    assert default.threshold == pytest.approx(k / 0.05) and stricter.threshold == pytest.approx(k / 0.001)
    assert stricter.verdict != "breach"  # the evidence that breaches at 0.05 is not yet enough at 0.001 ...
    assert _analyse(log, design(strict)).verdict == "breach"  # ... more of it is
    assert math.isclose(stricter.alpha_per_test, 0.001 / k)


@pytest.mark.parametrize("alpha", [0.1, 0.05 / 101, 0.0, -0.01])
def test_a_laxer_alpha_or_one_past_the_floor_is_refused_naming_the_range(alpha):
    named = r"alpha=.*from rollout\.analysis\.alpha / 100 to rollout\.analysis\.alpha \(0\.05\)"
    with pytest.raises(ValueError, match=named):
        with_alpha(params_for(), alpha)

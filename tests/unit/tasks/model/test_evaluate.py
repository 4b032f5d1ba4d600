import itertools

import numpy as np
import pytest

from tasks.model.evaluate import calibration_table, metrics


def _pairwise_auc(y, p):
    """AUC as the share of (positive, negative) pairs ranked right, ties counting half."""
    pos = [pi for yi, pi in zip(y, p, strict=True) if yi == 1]
    neg = [pi for yi, pi in zip(y, p, strict=True) if yi == 0]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_metrics_agree_with_direct_computation():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    p = np.clip((0.3 * y + rng.uniform(0, 0.7, 200)).round(2), 0.01, 0.99)
    got = metrics(y, p, threshold=0.5)
    assert got["auc"] == pytest.approx(_pairwise_auc(y, p), abs=1e-12)
    assert got["brier"] == pytest.approx(float(np.mean((p - y) ** 2)), abs=1e-12)
    assert got["accuracy"] == pytest.approx(float(np.mean((p >= 0.5) == y)))
    assert got["log_loss"] == pytest.approx(float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))))
    assert got["approval_rate"] == pytest.approx(float(np.mean(p >= 0.5)))
    assert got["n"] == 200


def test_single_class_is_a_clear_error_not_nan():
    with pytest.raises(ValueError, match="only label 1"):
        metrics(np.ones(10, dtype=int), np.full(10, 0.7), threshold=0.5)


def test_calibration_of_a_calibrated_forecaster_is_near_the_diagonal():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 50_000)
    y = (rng.uniform(0, 1, 50_000) < p).astype(int)
    table = calibration_table(y, p, bins=10)
    assert len(table) == 10
    assert np.abs(table["predicted"] - table["observed"]).max() < 0.03

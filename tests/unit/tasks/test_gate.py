import json

import pytest

from steward.params import parse_params
from tasks.gate import decide


def _metric(value, low, high):
    return {"value": value, "ci": [low, high]}


def _fairness(dp, eo):
    return {"attributes": {"sex": {"summary": {"demographic_parity_ratio": dp, "equalized_odds_difference": eo}}}}


GOOD_EVAL = {"metrics": {"auc": 0.8}}
HIGH = parse_params({}).governance


def test_passes_only_when_whole_intervals_clear_the_thresholds():
    verdict = decide(
        governance=HIGH,
        evaluation=GOOD_EVAL,
        fairness=_fairness(_metric(0.9, 0.85, 0.95), _metric(0.05, 0.01, 0.09)),
    )
    assert verdict.verdict == "pass"
    assert verdict.failed == []


def test_a_good_point_estimate_with_a_wide_interval_fails_on_the_bound():
    verdict = decide(
        governance=HIGH,
        evaluation=GOOD_EVAL,
        fairness=_fairness(_metric(0.9, 0.74, 1.0), _metric(0.05, 0.0, 0.16)),
    )
    assert verdict.verdict == "fail"
    failed = {(c.check, c.attribute, c.bound, c.value) for c in verdict.failed}
    assert failed == {
        ("demographic_parity_ratio", "sex", "ci_low", 0.74),
        ("equalized_odds_difference", "sex", "ci_high", 0.16),
    }
    text = verdict.message()
    assert "demographic_parity_ratio [sex]: ci_low 0.740 >= 0.8 required" in text
    assert "equalized_odds_difference [sex]: ci_high 0.160 <= 0.1 required" in text


@pytest.mark.parametrize(("tier", "expected"), [("high", "fail"), ("limited", "pass"), ("minimal", "pass")])
def test_the_tier_sets_the_thresholds(tier, expected):
    governance = parse_params({"governance": {"risk_tier": tier}}).governance
    fairness = _fairness(_metric(0.85, 0.75, 0.95), _metric(0.08, 0.02, 0.15))
    assert decide(governance=governance, evaluation=GOOD_EVAL, fairness=fairness).verdict == expected


def test_low_auc_fails_and_an_uncomputable_figure_is_listed_not_passed():
    fairness = _fairness({"value": None, "ci": None, "note": "fewer than 2 groups of 30+"}, _metric(0.0, 0.0, 0.05))
    verdict = decide(governance=HIGH, evaluation={"metrics": {"auc": 0.6}}, fairness=fairness)
    assert verdict.verdict == "fail"
    assert [c.check for c in verdict.failed] == ["auc"]
    assert [c.note for c in verdict.not_assessable] == ["fewer than 2 groups of 30+"]
    assert "not assessable (fewer than 2 groups of 30+)" in verdict.message()


def test_robustness_and_proxies_count_when_the_tier_says_so():
    governance = parse_params(
        {
            "governance": {
                "tiers": {
                    "high": {
                        "min_auc": 0.7,
                        "min_dp_ratio_lower": 0.8,
                        "max_eo_diff_upper": 0.1,
                        "block_on_proxies": True,
                    }
                }
            }
        }
    ).governance
    fairness = _fairness(_metric(0.9, 0.85, 0.95), _metric(0.05, 0.01, 0.09))
    verdict = decide(
        governance=governance,
        evaluation=GOOD_EVAL,
        fairness=fairness,
        robustness={"perturbation": {"flip_rate": 0.2}},
        explain={"proxies": [{"feature": "personal_status", "attribute": "sex", "probe_auc": 0.9, "flagged": True}]},
    )
    assert {c.check for c in verdict.failed} == {"perturbation_flip_rate", "proxy:personal_status"}


def test_nothing_assessable_fails_and_serialises_to_strict_json():
    verdict = decide(governance=HIGH, evaluation=GOOD_EVAL, fairness=_fairness(None, None))
    body = json.loads(json.dumps(verdict.to_dict(), allow_nan=False))
    assert len(verdict.not_assessable) == 2
    assert body["verdict"] == "fail"
    assert [r["check"] for r in body["reasons"]] == ["fairness_assessed"]

import json

import pytest

from tasks.audit.bootstrap import attribute_name
from tasks.audit.gate import MISSING, MISSING_REPORT, NOTHING_ASSESSED, Verdict, decide
from tests.usecases import parse_for

TIERS = ("high", "limited", "minimal")
SEX_AGE = attribute_name(["sex", "age_group"])
# The tiers' thresholds as params.yaml sets them (min_auc, min_dp_ratio_lower, max_eo_diff_upper, max flip rate).
THRESHOLDS = {
    "high": (0.7, 0.8, 0.1, 0.1),
    "limited": (0.65, 0.7, 0.2, 0.15),
    "minimal": (0.6, 0.6, 0.3, 0.2),
}


def _metric(value, low, high):
    return {"value": value, "ci": [low, high]}


FAIR = {"demographic_parity_ratio": _metric(0.95, 0.9, 1.0), "equalized_odds_difference": _metric(0.02, 0.0, 0.05)}
UNFAIR = {"demographic_parity_ratio": _metric(0.5, 0.4, 0.6), "equalized_odds_difference": _metric(0.3, 0.25, 0.35)}
NOT_ASSESSABLE = {"value": None, "ci": None, "note": "fewer than 2 groups of 30+"}


def _fairness(dp, eo):
    return {"attributes": {"sex": {"summary": {"demographic_parity_ratio": dp, "equalized_odds_difference": eo}}}}


def _audits(**summaries):
    return {"attributes": {name: {"summary": summary} for name, summary in summaries.items()}}


GOOD_EVAL = {"metrics": {"auc": 0.8}}
ROBUST = {"perturbation": {"flip_rate": 0.01}}
HIGH = parse_for({}).governance


def _governance(tier, **policy):
    auc, dp, eo, flip = THRESHOLDS[tier]
    tiers = {
        tier: {"min_auc": auc, "min_dp_ratio_lower": dp, "max_eo_diff_upper": eo, "max_robustness_flip_rate": flip}
        | policy
    }
    return parse_for({"governance": {"risk_tier": tier, "tiers": tiers}}).governance


def _decide(governance=HIGH, *, evaluation=GOOD_EVAL, fairness=None, robustness=ROBUST, **kwargs):
    return decide(
        governance=governance,
        evaluation=evaluation,
        fairness=_audits(sex=FAIR) if fairness is None else fairness,
        robustness=robustness,
        **kwargs,
    )


def _failed(verdict):
    return {(c.check, c.attribute) for c in verdict.failed}


def test_passes_only_when_whole_intervals_clear_the_thresholds():
    verdict = _decide(fairness=_fairness(_metric(0.9, 0.85, 0.95), _metric(0.05, 0.01, 0.09)))
    assert verdict.verdict == "pass"
    assert verdict.failed == []
    assert verdict.not_assessable == []
    assert verdict.message() == "Gate (high risk tier): PASS"


def test_a_good_point_estimate_with_a_wide_interval_fails_on_the_bound():
    verdict = _decide(fairness=_fairness(_metric(0.9, 0.74, 1.0), _metric(0.05, 0.0, 0.16)))
    assert verdict.verdict == "fail"
    failed = {(c.check, c.attribute, c.bound, c.value) for c in verdict.failed}
    assert failed == {
        ("demographic_parity_ratio", "sex", "ci_low", 0.74),
        ("equalized_odds_difference", "sex", "ci_high", 0.16),
    }
    text = verdict.message()
    assert text.splitlines()[0] == "Gate (high risk tier): FAIL"
    assert "  - demographic_parity_ratio [sex]: ci_low 0.740 >= 0.8 required" in text.splitlines()
    assert "  - equalized_odds_difference [sex]: ci_high 0.160 <= 0.1 required" in text.splitlines()


@pytest.mark.parametrize("tier", TIERS)
def test_each_threshold_is_inclusive_and_one_step_past_it_fails(tier):
    auc, dp, eo, flip = THRESHOLDS[tier]
    governance = _governance(tier)
    at = _decide(
        governance,
        evaluation={"metrics": {"auc": auc}},
        fairness=_fairness(_metric(0.99, dp, 1.0), _metric(0.0, 0.0, eo)),
        robustness={"perturbation": {"flip_rate": flip}},
    )
    assert at.verdict == "pass", at.message()
    step = 1e-6
    past = _decide(
        governance,
        evaluation={"metrics": {"auc": auc - step}},
        fairness=_fairness(_metric(0.99, dp - step, 1.0), _metric(0.0, 0.0, eo + step)),
        robustness={"perturbation": {"flip_rate": flip + step}},
    )
    assert _failed(past) == {
        ("auc", None),
        ("demographic_parity_ratio", "sex"),
        ("equalized_odds_difference", "sex"),
        ("perturbation_flip_rate", None),
    }


def test_the_bound_read_is_the_one_on_the_side_of_harm():
    # The ratio is judged on its lower bound, the difference on its upper bound: good point values and good
    # opposite bounds must not rescue a bad bound, and bad opposite bounds must not sink a good one.
    verdict = _decide(fairness=_fairness(_metric(0.99, 0.81, 0.5), _metric(0.5, 0.5, 0.09)))
    assert verdict.verdict == "pass", verdict.message()
    assert [(c.check, c.bound, c.value) for c in verdict.checks if c.attribute] == [
        ("demographic_parity_ratio", "ci_low", 0.81),
        ("equalized_odds_difference", "ci_high", 0.09),
    ]


@pytest.mark.parametrize(("tier", "expected"), [("high", "fail"), ("limited", "pass"), ("minimal", "pass")])
def test_the_tier_sets_the_thresholds(tier, expected):
    fairness = _fairness(_metric(0.85, 0.75, 0.95), _metric(0.08, 0.02, 0.15))
    assert _decide(_governance(tier), fairness=fairness).verdict == expected


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize(
    "evaluation", [{"metrics": {}}, {}, {"metrics": {"auc": None}}], ids=["no-auc", "no-metrics", "auc-null"]
)
def test_a_missing_auc_fails_the_gate_named_in_every_tier(tier, evaluation):
    verdict = _decide(_governance(tier), evaluation=evaluation)
    assert verdict.verdict == "fail"
    assert _failed(verdict) == {("auc", None)}
    assert verdict.failed[0].note == MISSING
    assert verdict.message().splitlines()[1:] == [f"  - auc [model]: {MISSING}"]


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("robustness", [{}, {"perturbation": {}}, {"perturbation": {"flip_rate": None}}])
def test_a_missing_flip_rate_fails_the_gate_named_in_every_tier(tier, robustness):
    verdict = _decide(_governance(tier), robustness=robustness)
    assert verdict.verdict == "fail"
    assert _failed(verdict) == {("perturbation_flip_rate", None)}
    assert verdict.failed[0].note == MISSING


@pytest.mark.parametrize("tier", TIERS)
def test_a_missing_robustness_report_fails_the_gate(tier):
    verdict = _decide(_governance(tier), robustness=None)
    assert verdict.verdict == "fail"
    assert _failed(verdict) == {("perturbation_flip_rate", None)}
    assert verdict.failed[0].note == MISSING_REPORT.format(report="robustness")
    assert "  - perturbation_flip_rate [model]: the robustness report is missing" in verdict.message()


def test_a_missing_explain_report_fails_only_a_tier_that_blocks_on_proxies():
    assert _decide(explain=None).verdict == "pass"
    verdict = _decide(_governance("high", block_on_proxies=True), explain=None)
    assert _failed(verdict) == {("proxies", None)}
    assert verdict.failed[0].note == MISSING_REPORT.format(report="explain")


def test_mitigation_scope_applies_auc_and_fairness_only():
    verdict = _decide(robustness=None, checks=("auc", "fairness"))
    assert verdict.verdict == "pass"
    assert {c.check for c in verdict.checks} == {"auc", "demographic_parity_ratio", "equalized_odds_difference"}
    assert _decide(robustness=None, evaluation={}, checks=("auc", "fairness")).verdict == "fail"
    assert _decide(robustness=None, fairness=_audits(sex=UNFAIR), checks=("auc", "fairness")).verdict == "fail"
    only_auc = _decide(robustness=None, fairness={}, checks=("auc",))
    assert only_auc.verdict == "pass"
    assert [c.check for c in only_auc.checks] == ["auc"]


@pytest.mark.parametrize("tier", TIERS)
def test_an_unfair_second_attribute_fails_beside_a_fair_first(tier):
    verdict = _decide(_governance(tier), fairness=_audits(sex=FAIR, age_group=UNFAIR, foreign_worker=FAIR))
    assert verdict.verdict == "fail"
    assert _failed(verdict) == {
        ("demographic_parity_ratio", "age_group"),
        ("equalized_odds_difference", "age_group"),
    }
    assert "demographic_parity_ratio [age_group]" in verdict.message()


@pytest.mark.parametrize("tier", TIERS)
def test_an_unfair_intersection_fails_beside_fair_attributes(tier):
    fairness = _audits(sex=FAIR, age_group=FAIR, **{SEX_AGE: UNFAIR})
    verdict = _decide(_governance(tier), fairness=fairness, attributes=["sex", "age_group", SEX_AGE])
    assert _failed(verdict) == {
        ("demographic_parity_ratio", SEX_AGE),
        ("equalized_odds_difference", SEX_AGE),
    }


@pytest.mark.parametrize("unfair", ["demographic_parity_ratio", "equalized_odds_difference"])
def test_either_fairness_figure_alone_fails_a_later_attribute(unfair):
    summary = dict(FAIR) | {unfair: UNFAIR[unfair]}
    verdict = _decide(fairness=_audits(sex=FAIR, foreign_worker=summary))
    assert _failed(verdict) == {(unfair, "foreign_worker")}


def test_an_audited_attribute_missing_from_the_report_fails_named():
    verdict = _decide(fairness=_audits(sex=FAIR), attributes=["sex", "age_group", SEX_AGE])
    assert verdict.verdict == "fail"
    assert _failed(verdict) == {
        ("demographic_parity_ratio", "age_group"),
        ("equalized_odds_difference", "age_group"),
        ("demographic_parity_ratio", SEX_AGE),
        ("equalized_odds_difference", SEX_AGE),
    }
    assert all(c.note == MISSING for c in verdict.failed)
    assert f"[{SEX_AGE}]" in verdict.message()


@pytest.mark.parametrize("gone", ["demographic_parity_ratio", "equalized_odds_difference"])
def test_a_summary_figure_missing_for_one_attribute_fails_named(gone):
    partial = {k: v for k, v in FAIR.items() if k != gone}
    verdict = _decide(fairness=_audits(sex=FAIR, age_group=partial))
    assert _failed(verdict) == {(gone, "age_group")}
    # An interval that is missing without a reason is missing too.
    no_ci = dict(FAIR) | {gone: {"value": 0.9}}
    assert _failed(_decide(fairness=_audits(sex=FAIR, age_group=no_ci))) == {(gone, "age_group")}


def test_low_auc_fails_and_a_figure_the_report_explains_is_listed_not_passed():
    fairness = _fairness(NOT_ASSESSABLE, _metric(0.0, 0.0, 0.05))
    verdict = _decide(evaluation={"metrics": {"auc": 0.6}}, fairness=fairness)
    assert verdict.verdict == "fail"
    assert [c.check for c in verdict.failed] == ["auc"]
    assert [(c.check, c.note) for c in verdict.not_assessable] == [
        ("demographic_parity_ratio", "fewer than 2 groups of 30+")
    ]
    assert "  - demographic_parity_ratio [sex]: not assessable (fewer than 2 groups of 30+)" in verdict.message()
    assert "  - auc [model]: value 0.600 >= 0.7 required" in verdict.message()


def test_one_assessable_figure_lets_the_others_be_listed():
    verdict = _decide(fairness=_fairness(NOT_ASSESSABLE, _metric(0.0, 0.0, 0.05)))
    assert verdict.verdict == "pass"
    assert len(verdict.not_assessable) == 1


def test_robustness_and_proxies_count_when_the_tier_says_so():
    governance = _governance("high", block_on_proxies=True)
    verdict = _decide(
        governance,
        robustness={"perturbation": {"flip_rate": 0.2}},
        explain={
            "proxies": [
                {"feature": "personal_status", "attribute": "sex", "probe_auc": 0.9, "flagged": True},
                {"feature": "purpose", "attribute": "age", "probe_auc": 0.55, "flagged": False},
            ]
        },
    )
    assert _failed(verdict) == {("perturbation_flip_rate", None), ("proxy:personal_status", "sex")}
    proxy = next(c for c in verdict.failed if c.check.startswith("proxy:"))
    assert (proxy.value, proxy.note) == (0.9, "feature flagged as a proxy")
    # Without block_on_proxies a flagged proxy is reported by explain, not a gate failure.
    flagged = {"proxies": [{"feature": "x", "attribute": "sex", "probe_auc": 0.9, "flagged": True}]}
    assert _decide(explain=flagged).verdict == "pass"


def test_proxies_alone_do_not_count_as_an_assessed_fairness_figure():
    governance = _governance("high", block_on_proxies=True)
    verdict = _decide(
        governance,
        fairness=_fairness(NOT_ASSESSABLE, NOT_ASSESSABLE),
        explain={"proxies": []},
    )
    assert [c.check for c in verdict.failed] == ["fairness_assessed"]


def test_nothing_assessable_fails_and_serialises_to_strict_json():
    verdict = _decide(fairness=_fairness(NOT_ASSESSABLE, NOT_ASSESSABLE))
    body = json.loads(json.dumps(verdict.to_dict(), allow_nan=False))
    assert len(verdict.not_assessable) == 2
    assert body["verdict"] == "fail"
    assert body["tier"] == "high"
    assert [r["check"] for r in body["reasons"]] == ["fairness_assessed"]
    assert body["reasons"][0]["note"] == NOTHING_ASSESSED
    assert len(body["checks"]) == 5  # auc, two not assessable, the nothing-assessed failure, flip rate


def test_no_fairness_report_at_all_fails():
    verdict = _decide(fairness={})
    assert [c.check for c in verdict.failed] == ["fairness_assessed"]


def test_a_verdict_reads_back_from_its_report():
    verdict = _decide(fairness=_audits(sex=FAIR, age_group=UNFAIR), attributes=["sex", "age_group", "gone"])
    again = Verdict.from_dict(json.loads(json.dumps(verdict.to_dict())))
    assert again == verdict
    assert again.message() == verdict.message()


def _record(verdict, check):
    return next(c for c in verdict.to_dict()["checks"] if c["check"] == check)


@pytest.mark.parametrize("tier", TIERS)
def test_a_missing_figure_keeps_the_requirement_it_could_not_check_in_the_report(tier):
    auc, _, _, flip = THRESHOLDS[tier]
    verdict = _decide(_governance(tier, block_on_proxies=True), evaluation={}, robustness=None, explain=None)
    base = {"attribute": None, "bound": "value", "value": None, "passed": False}
    assert _record(verdict, "auc") == base | {"check": "auc", "threshold": auc, "op": ">=", "note": MISSING}
    assert _record(verdict, "perturbation_flip_rate") == base | {
        "check": "perturbation_flip_rate",
        "threshold": flip,
        "op": "<=",
        "note": MISSING_REPORT.format(report="robustness"),
    }
    assert _record(verdict, "proxies") == base | {
        "check": "proxies",
        "threshold": 0.0,
        "op": "<=",
        "note": MISSING_REPORT.format(report="explain"),
    }


def test_the_nothing_assessed_failure_reads_as_at_least_one_figure_required():
    verdict = _decide(fairness=_fairness(NOT_ASSESSABLE, NOT_ASSESSABLE))
    assert _record(verdict, "fairness_assessed") == {
        "check": "fairness_assessed",
        "attribute": None,
        "bound": "value",
        "value": None,
        "threshold": 1.0,
        "op": ">=",
        "passed": False,
        "note": NOTHING_ASSESSED,
    }
    assert f"  - fairness_assessed [model]: {NOTHING_ASSESSED}" in verdict.message().splitlines()


def test_an_explain_report_without_its_proxy_list_fails_a_tier_that_blocks_on_proxies():
    verdict = _decide(_governance("high", block_on_proxies=True), explain={"global": {}})
    assert _failed(verdict) == {("proxies", None)}
    assert verdict.failed[0].note == MISSING
    assert _decide(_governance("high", block_on_proxies=True), explain={"proxies": []}).verdict == "pass"


@pytest.mark.parametrize("explained", [True, False], ids=["not-assessable", "missing"])
def test_an_unseen_interval_keeps_its_bound_and_threshold_in_the_report(explained):
    unseen = NOT_ASSESSABLE if explained else {}
    _, dp, eo, _ = THRESHOLDS["high"]
    verdict = _decide(fairness=_audits(sex=FAIR, age_group={"demographic_parity_ratio": unseen}))
    dp_record = next(c for c in verdict.to_dict()["checks"] if c["attribute"] == "age_group")
    assert dp_record == {
        "check": "demographic_parity_ratio",
        "attribute": "age_group",
        "bound": "ci_low",
        "value": None,
        "threshold": dp,
        "op": ">=",
        "passed": None if explained else False,
        "note": NOT_ASSESSABLE["note"] if explained else MISSING,
    }
    eo_record = [c for c in verdict.to_dict()["checks"] if c["attribute"] == "age_group"][1]
    assert (eo_record["bound"], eo_record["threshold"], eo_record["op"], eo_record["passed"]) == (
        "ci_high",
        eo,
        "<=",
        False,
    )


def test_a_flagged_proxy_is_recorded_with_its_probe_auc_against_none_allowed():
    flagged = {"proxies": [{"feature": "personal_status", "attribute": "sex", "probe_auc": 0.93, "flagged": True}]}
    verdict = _decide(_governance("high", block_on_proxies=True), explain=flagged)
    assert _record(verdict, "proxy:personal_status") == {
        "check": "proxy:personal_status",
        "attribute": "sex",
        "bound": "value",
        "value": 0.93,
        "threshold": 0.0,
        "op": "<=",
        "passed": False,
        "note": "feature flagged as a proxy",
    }

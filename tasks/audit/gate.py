"""The gate: a pure policy function of the audit reports and the risk tier. It decides on CI bounds.

A fairness figure passes only if the whole confidence interval is on the right side of the tier's
threshold (the lower bound of the demographic parity ratio, the upper bound of the equalized odds
difference), so a small or noisy sample cannot pass by luck, and the same two checks apply to every
sensitive attribute and intersection the audit covers.

A gate never passes on a figure it could not see. A figure the report leaves out (no AUC, no flip rate,
an audited attribute or a summary missing, a report that is not there) fails the gate, named. Only a
figure the report explains it could not compute (a note such as "fewer than two groups of 30+") is
listed as not assessable for the approver, and if no fairness figure at all is assessable the gate
fails too.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from steward.governance import GovernanceParams

Bound = Literal["value", "ci_low", "ci_high"]
Scope = Literal["auc", "fairness", "robustness", "proxies"]
ALL_CHECKS: tuple[Scope, ...] = ("auc", "fairness", "robustness", "proxies")
FAILED_LINE = "  - {check} [{where}]: {bound} {value} {op} {threshold} required"
UNSEEN_LINE = "  - {check} [{where}]: {note}"
NOT_ASSESSABLE_LINE = "  - {check} [{where}]: not assessable ({note})"
NOTHING_ASSESSED = "no fairness figure could be assessed: a model nobody can vouch for does not pass"
MISSING = "missing from the report: a gate never passes on a figure it could not see"
MISSING_REPORT = "the {report} report is missing: a gate never passes on a figure it could not see"
VERDICT_HEAD = "Gate ({tier} risk tier): {verdict}"


@dataclass(frozen=True)
class Check:
    """One threshold applied to one figure."""

    check: str
    attribute: str | None
    bound: Bound
    value: float | None
    threshold: float
    op: Literal[">=", "<="]
    passed: bool | None  # None: the report says why the figure could not be computed (not assessable)
    note: str = ""

    @property
    def where(self) -> str:
        return self.attribute or "model"


@dataclass(frozen=True)
class Verdict:
    verdict: Literal["pass", "fail"]
    tier: str
    checks: list[Check] = field(default_factory=list)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.passed is False]

    @property
    def not_assessable(self) -> list[Check]:
        return [c for c in self.checks if c.passed is None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "tier": self.tier,
            "checks": [asdict(c) for c in self.checks],
            "reasons": [asdict(c) for c in self.failed],
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Verdict:
        """Read back `to_dict` (reports/gate.json)."""
        return cls(verdict=raw["verdict"], tier=raw["tier"], checks=[Check(**check) for check in raw["checks"]])

    def message(self) -> str:
        """The verdict and, one per line, each failing and each not assessable figure."""
        lines = [VERDICT_HEAD.format(tier=self.tier, verdict=self.verdict.upper())]
        lines += [
            FAILED_LINE.format(
                check=c.check,
                where=c.where,
                bound=c.bound,
                value=f"{c.value:.3f}",
                op=c.op,
                threshold=c.threshold,
            )
            if c.value is not None
            else UNSEEN_LINE.format(check=c.check, where=c.where, note=c.note)
            for c in self.failed
        ]
        lines += [NOT_ASSESSABLE_LINE.format(check=c.check, where=c.where, note=c.note) for c in self.not_assessable]
        return "\n".join(lines)


def _check(
    name: str,
    attribute: str | None,
    value: float | None,
    *,
    bound: Bound,
    threshold: float,
    op: Literal[">=", "<="],
    note: str = "",
    missing: str = MISSING,
) -> Check:
    """One threshold on one figure. A figure that is not there fails with `missing`, unless the report says
    why it could not be computed (`note`): then it is not assessable."""
    if value is None:
        return Check(name, attribute, bound, None, threshold, op, passed=None if note else False, note=note or missing)
    passed = value >= threshold if op == ">=" else value <= threshold
    return Check(name, attribute, bound, value, threshold, op, passed=passed)


def _interval_check(
    name: str, attribute: str, metric: dict[str, Any] | None, *, bound: Bound, threshold: float, op: Literal[">=", "<="]
) -> Check:
    """A threshold on one end of a {"value", "ci", "note"} figure's confidence interval."""
    ci = (metric or {}).get("ci")
    if ci is None:
        note = (metric or {}).get("note") or ""
        return _check(name, attribute, None, bound=bound, threshold=threshold, op=op, note=note)
    return _check(name, attribute, ci[0] if bound == "ci_low" else ci[1], bound=bound, threshold=threshold, op=op)


def decide(
    *,
    governance: GovernanceParams,
    evaluation: dict[str, Any],
    fairness: dict[str, Any],
    robustness: dict[str, Any] | None = None,
    explain: dict[str, Any] | None = None,
    attributes: Sequence[str] = (),
    checks: Collection[Scope] = ALL_CHECKS,
) -> Verdict:
    """Apply the tier's thresholds to the reports; `fail` if any check fails or any figure is missing.

    Args:
        attributes: the audited attributes and intersections the fairness report must cover
            (`tasks.audit.bootstrap.attribute_name` of each); one it leaves out fails.
        checks: which parts of the policy to apply; the gate stage applies all of them (mitigation
            compares fairness before robustness has run, so it asks for auc and fairness only).
    """
    policy = governance.policy
    found: list[Check] = []
    if "auc" in checks:
        auc = evaluation.get("metrics", {}).get("auc")
        found.append(_check("auc", None, auc, bound="value", threshold=policy.min_auc, op=">="))
    if "fairness" in checks:
        found += _fairness_checks(governance, fairness, attributes)
    if "robustness" in checks:
        flip = (robustness or {}).get("perturbation", {}).get("flip_rate")
        found.append(
            _check(
                "perturbation_flip_rate",
                None,
                flip,
                bound="value",
                threshold=policy.max_robustness_flip_rate,
                op="<=",
                missing=MISSING if robustness is not None else MISSING_REPORT.format(report="robustness"),
            )
        )
    if "proxies" in checks and policy.block_on_proxies:
        found += _proxy_checks(explain)
    verdict: Literal["pass", "fail"] = "fail" if any(c.passed is False for c in found) else "pass"
    return Verdict(verdict=verdict, tier=governance.risk_tier, checks=found)


def _fairness_checks(governance: GovernanceParams, fairness: dict[str, Any], attributes: Sequence[str]) -> list[Check]:
    """Both fairness thresholds for every audited attribute and intersection, and the nothing-assessed rule."""
    policy = governance.policy
    audits: dict[str, Any] = fairness.get("attributes", {})
    found: list[Check] = []
    for attribute in [*audits, *(a for a in attributes if a not in audits)]:
        summary = (audits.get(attribute) or {}).get("summary", {})
        found.append(
            _interval_check(
                "demographic_parity_ratio",
                attribute,
                summary.get("demographic_parity_ratio"),
                bound="ci_low",
                threshold=policy.min_dp_ratio_lower,
                op=">=",
            )
        )
        found.append(
            _interval_check(
                "equalized_odds_difference",
                attribute,
                summary.get("equalized_odds_difference"),
                bound="ci_high",
                threshold=policy.max_eo_diff_upper,
                op="<=",
            )
        )
    if not any(c.value is not None for c in found):
        found.append(Check("fairness_assessed", None, "value", None, 1.0, ">=", passed=False, note=NOTHING_ASSESSED))
    return found


def _proxy_checks(explain: dict[str, Any] | None) -> list[Check]:
    """A tier that blocks on proxies fails on each feature the explain stage flags: no flagged proxy allowed."""
    proxies = (explain or {}).get("proxies")
    if proxies is None:
        missing = MISSING if explain is not None else MISSING_REPORT.format(report="explain")
        return [_check("proxies", None, None, bound="value", threshold=0.0, op="<=", missing=missing)]
    return [
        Check(
            check=f"proxy:{proxy['feature']}",
            attribute=proxy["attribute"],
            bound="value",
            value=proxy.get("probe_auc"),
            threshold=0.0,
            op="<=",
            passed=False,
            note="feature flagged as a proxy",
        )
        for proxy in proxies
        if proxy.get("flagged")
    ]


def main() -> None:  # pragma: no mutate block (the I/O shell: tests/integration/test_dvc_pipeline.py)
    """DVC stage `gate`: the verdict on the model going forward → reports/gate.json."""
    from tasks.audit.bootstrap import attribute_name, audited
    from tasks.stage import read_report, stage_context, write_json

    ctx = stage_context()
    layout = ctx.layout
    mitigation = read_report(layout.report("mitigate"))
    if mitigation.get("selected") == "mitigated":
        evaluation = mitigation["mitigated"]["evaluation"]
        fairness = mitigation["mitigated"]["fairness"]
    else:
        evaluation, fairness = read_report(layout.report("evaluate")), read_report(layout.report("fairness"))
    verdict = decide(
        governance=ctx.params.governance,
        evaluation=evaluation,
        fairness=fairness,
        robustness=read_report(layout.report("robustness")) or None,
        explain=read_report(layout.report("explain")) or None,
        attributes=[attribute_name(c) for c in audited(ctx.params.usecase.sensitive, ctx.params.usecase.intersections)],
    )
    write_json(
        layout.report("gate"),
        {
            **verdict.to_dict(),
            "model": mitigation.get("selected", "base"),
            "policy": ctx.params.governance.policy.model_dump(),
        },
    )
    print(verdict.message())


if __name__ == "__main__":
    from tasks.stage import run_stage

    run_stage(main)

"""The gate: a pure policy function of the audit reports and the risk tier. It decides on CI bounds.

A fairness figure passes only if the whole confidence interval is on the right side of the tier's
threshold (the lower bound of the demographic parity ratio, the upper bound of the equalized odds
difference), so a small or noisy sample cannot pass by luck. A figure that cannot be computed
(fewer than two groups large enough) is listed as not assessable for the approver, not passed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from steward.params import GovernanceParams

Bound = Literal["value", "ci_low", "ci_high"]
FAILED_LINE = "  - {check} [{where}]: {bound} {value} {op} {threshold} required"
NOT_ASSESSABLE_LINE = "  - {check} [{where}]: not assessable ({note})"
NOTHING_ASSESSED = "no fairness figure could be assessed: a model nobody can vouch for does not pass"
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
    passed: bool | None  # None: the figure could not be computed
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
                value=_fmt(c.value),
                op=c.op,
                threshold=c.threshold,
            )
            for c in self.failed
        ]
        lines += [
            NOT_ASSESSABLE_LINE.format(check=c.check, where=c.where, note=c.note or "no value")
            for c in self.not_assessable
        ]
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _bounded(metric: dict[str, Any] | None, bound: Bound) -> tuple[float | None, str]:
    """The value of a {"value", "ci", "note"} metric at a bound, with the note when it is missing."""
    if not metric:
        return None, "missing from the report"
    if bound == "value":
        return metric.get("value"), metric.get("note", "")
    ci = metric.get("ci")
    if ci is None:
        return None, metric.get("note", "no confidence interval")
    return ci[0] if bound == "ci_low" else ci[1], ""


def _check(
    name: str,
    attribute: str | None,
    metric: dict[str, Any] | None,
    *,
    bound: Bound,
    threshold: float,
    op: Literal[">=", "<="],
) -> Check:
    value, note = _bounded(metric, bound)
    passed = None if value is None else (value >= threshold if op == ">=" else value <= threshold)
    return Check(
        check=name,
        attribute=attribute,
        bound=bound,
        value=value,
        threshold=threshold,
        op=op,
        passed=passed,
        note=note if value is None else "",
    )


def decide(
    *,
    governance: GovernanceParams,
    evaluation: dict[str, Any],
    fairness: dict[str, Any],
    robustness: dict[str, Any] | None = None,
    explain: dict[str, Any] | None = None,
) -> Verdict:
    """Apply the tier's thresholds to the reports; `fail` if any check fails."""
    policy = governance.policy
    auc = evaluation.get("metrics", {}).get("auc")
    checks = [_check("auc", None, {"value": auc}, bound="value", threshold=policy.min_auc, op=">=")]
    for attribute, audit in fairness.get("attributes", {}).items():
        summary = audit.get("summary", {})
        checks.append(
            _check(
                "demographic_parity_ratio",
                attribute,
                summary.get("demographic_parity_ratio"),
                bound="ci_low",
                threshold=policy.min_dp_ratio_lower,
                op=">=",
            )
        )
        checks.append(
            _check(
                "equalized_odds_difference",
                attribute,
                summary.get("equalized_odds_difference"),
                bound="ci_high",
                threshold=policy.max_eo_diff_upper,
                op="<=",
            )
        )
    if robustness is not None:
        flip = robustness.get("perturbation", {}).get("flip_rate")
        checks.append(
            _check(
                "perturbation_flip_rate",
                None,
                {"value": flip},
                bound="value",
                threshold=policy.max_robustness_flip_rate,
                op="<=",
            )
        )
    if explain is not None and policy.block_on_proxies:
        for proxy in explain.get("proxies", []):
            if proxy.get("flagged"):
                checks.append(
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
                )
    fairness_checks = [c for c in checks if c.attribute is not None and not c.check.startswith("proxy:")]
    if not any(c.passed is not None for c in fairness_checks):
        checks.append(
            Check(
                check="fairness_assessed",
                attribute=None,
                bound="value",
                value=None,
                threshold=1.0,
                op=">=",
                passed=False,
                note=NOTHING_ASSESSED,
            )
        )
    verdict: Literal["pass", "fail"] = "fail" if any(c.passed is False for c in checks) else "pass"
    return Verdict(verdict=verdict, tier=governance.risk_tier, checks=checks)


def main() -> None:
    """DVC stage `gate`: the verdict on the model going forward → reports/gate.json."""
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
    main()

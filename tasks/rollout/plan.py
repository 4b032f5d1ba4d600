"""Planning a canary step before it starts: from what production decided just before (its traffic, each group's
share and approval rate, its latencies), how many requests the analysis should need for a verdict, and whether the
step's time limit allows it.

The expected counts follow from the e-processes' growth rates (tasks/rollout/sequential.py): a test reaches its
threshold ln(T) after about ln(T) / (growth per group member) members, and a group is a `share` of requests. A fair
candidate must pass every selection-rate test (1/beta, and `min_samples` of its own decisions per group) and the
latency test; a candidate at the breach effect in one group is caught after that group's breach count. The figures
are approximations (Wald's, without overshoot): bench/canary_stats.py prints them beside simulated ones.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from tasks.rollout.canary import Design
from tasks.rollout.sequential import bernoulli_kl, breach_information, pass_information

LOOKBACK_SECONDS = 600.0  # production's decisions this long before the step are its baseline


@dataclass(frozen=True)
class Baseline:
    """Production just before the step: its request rate, latency threshold, and each group's share and rate."""

    decisions: int
    requests_per_second: float
    slow_ms: float | None  # latency_factor x its p95 (None: no decisions to take it from)
    slow_share: float  # the share of its own requests above slow_ms
    groups: dict[str, tuple[float, float]]  # "attribute=value" -> (share of requests, approval rate)


def baseline(history: pd.DataFrame, *, reference: str, attributes: list[str], design: Design) -> Baseline:
    """`history` is a prediction-log window before the step (`steward.windows.window`)."""
    theirs = history[
        (history["model"] == reference) & (history["role"] == "production") & (history["decision"] != "error")
    ]
    n = len(theirs)
    if n == 0:
        return Baseline(0, 0.0, None, 0.0, {})
    times = [datetime.fromisoformat(str(t)) for t in theirs["ts"]]
    span = (max(times) - min(times)).total_seconds()
    rate = (n - 1) / span if span > 0 else 0.0
    slow_ms = float(np.percentile(theirs["latency_ms"], 95)) * design.latency_factor
    approve = theirs["decision"] == "approve"
    groups = {}
    for attribute in attributes:
        if attribute not in theirs:
            continue
        for value in sorted(theirs[attribute].dropna().astype(str).unique()):
            member = theirs[attribute].astype(str) == value
            groups[f"{attribute}={value}"] = (float(member.mean()), float(approve[member].mean()))
    slow = float((theirs["latency_ms"] > slow_ms).mean())
    return Baseline(n, rate, slow_ms, slow, groups)


@dataclass(frozen=True)
class GroupPlan:
    group: str
    share: float
    rate: float
    to_breach: float  # requests until a breach, were this group at the breach effect
    to_pass: float  # requests until its selection-rate test passes, the candidate as good as production


@dataclass(frozen=True)
class Plan:
    weight: float
    tests: int
    requests_per_second: float
    limit_seconds: float
    min_requests: int
    groups: list[GroupPlan]
    latency_to_pass: float

    @property
    def to_pass(self) -> float:
        """Requests until a fair candidate ends the step: every blocking test passed and the step's minimum."""
        slowest = max([g.to_pass for g in self.groups] + [self.latency_to_pass], default=math.inf)
        return max(slowest, self.min_requests / self.weight)

    @property
    def to_breach(self) -> float:
        """Requests until a breach in the slowest group, were that group at the breach effect."""
        return max((g.to_breach for g in self.groups), default=math.inf)

    def seconds(self, requests: float) -> float:
        return requests / self.requests_per_second if self.requests_per_second > 0 else math.inf

    @property
    def feasible(self) -> bool:
        return self.seconds(self.to_pass) <= self.limit_seconds

    def summary(self) -> str:
        slowest = max(self.groups, key=lambda g: g.to_pass, default=None)
        which = f" (slowest: {slowest.group}, {slowest.share:.1%} of applicants)" if slowest else ""
        text = (
            f"at {self.requests_per_second:.2f} requests/s and weight {self.weight:.0%}, a candidate as good as "
            f"production should pass its {self.tests} tests after about {self.to_pass:,.0f} requests "
            f"({_duration(self.seconds(self.to_pass))}){which}; one at the breach effect in any group should be "
            f"caught after about {self.to_breach:,.0f} requests ({_duration(self.seconds(self.to_breach))})"
        )
        if not self.feasible:
            text += (
                f". The step's limit of {_duration(self.limit_seconds)} cannot be met: expect it to end inconclusive"
                " and roll back (raise rollout.step.seconds, or the weight)"
            )
        return text

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out |= {"to_pass": _finite(self.to_pass), "to_breach": _finite(self.to_breach), "feasible": self.feasible}
        out |= {"latency_to_pass": _finite(self.latency_to_pass), "summary": self.summary()}
        out["groups"] = [
            {k: _finite(v) if isinstance(v, float) else v for k, v in asdict(g).items()} for g in self.groups
        ]
        return out


def plan(base: Baseline, *, weight: float, design: Design, tests: int, limit_seconds: float, min_requests: int) -> Plan:
    """The expected requests until a verdict of a canary step at `weight` with a family of `tests` tests."""
    breach_log = math.log(tests / design.alpha)
    pass_log = math.log(1 / design.beta)
    effect = design.effect("selection_rate")
    groups = []
    for group, (share, rate) in base.groups.items():
        to_breach = to_pass = math.inf
        if share > 0 and 0 < rate < 1:
            to_breach = breach_log / breach_information(rate, weight=weight, effect=effect) / share
            members = max(pass_log / pass_information(rate, weight=weight, effect=effect), design.min_samples / weight)
            to_pass = members / share
        groups.append(GroupPlan(group, share, rate, to_breach, to_pass))
    latency = 0.0 if "latency" not in design.metrics else math.inf
    if "latency" in design.metrics and base.slow_ms is not None:
        slow = min(max(base.slow_share, 1e-3), design.slow_share / 2)
        latency = max(pass_log / bernoulli_kl(slow, design.slow_share), design.min_samples) / weight
    if "selection_rate" not in design.metrics:
        groups = []
    return Plan(weight, tests, base.requests_per_second, limit_seconds, min_requests, groups, latency)


def _finite(value: float) -> float | None:
    return None if math.isinf(value) else round(value, 1)


def _duration(seconds: float) -> str:
    if math.isinf(seconds):
        return "no end at this traffic"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min"

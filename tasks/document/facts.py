"""What the documents state, read off the reports: formatted figures, group tables and the risk register.

Pure functions of loaded report dicts and params. A report that is absent is simply not in the mapping;
it yields no figures here, and the documents print a "not run" note in its place.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from steward.params import Params

Report = dict[str, Any]

# stage → what its report covers; the order is the order of the evidence page
STAGES: dict[str, str] = {
    "validate": "data validation",
    "data_bias": "bias in the raw data",
    "evaluate": "held-out performance",
    "fairness": "fairness of the model's decisions",
    "mitigate": "bias mitigation",
    "explain": "explanations and proxy detection",
    "robustness": "robustness",
    "gate": "the release gate",
}
NOT_RUN = "Not run: {path} does not exist, so {what} has not been assessed for this version."
GROUP_METRICS = {
    "selection_rate": "selection rate",
    "tpr": "TPR",
    "fpr": "FPR",
    "fnr": "FNR",
    "precision": "precision",
    "brier": "Brier",
}
SUMMARY_METRICS = {
    "demographic_parity_difference": "demographic parity difference",
    "demographic_parity_ratio": "demographic parity ratio",
    "equalized_odds_difference": "equalized odds difference",
    "equal_opportunity_difference": "equal opportunity difference",
    "predictive_parity_difference": "predictive parity difference",
}
BIAS_SUMMARY = {"base_rate_difference": "base rate difference", "base_rate_ratio": "base rate ratio"}
# Markdown syntax a report's text could trigger: emphasis, code, tables, headings, raw HTML and
# entities, links (a `]` before `(`, `[` or `:`), and `_` at a word's edge (inside a word it is inert).
_MD_ACTIVE = re.compile(r"[\\`*|~#]|<(?=[A-Za-z/!?])|&(?=[#A-Za-z])|\](?=[(\[:])|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def report_path(stage: str) -> str:
    return f"reports/{stage}.json"


def not_run(stage: str) -> str:
    return NOT_RUN.format(path=report_path(stage), what=STAGES[stage])


def md(text: object) -> str:
    """Text from a report made inert in Markdown: no markup, links, HTML or table breaks."""
    escaped = _MD_ACTIVE.sub(lambda match: "\\" + match.group(0), " ".join(str(text).split()))
    return "\\" + escaped if escaped.startswith("[") else escaped  # not a link reference definition


def plural(noun: str) -> str:
    """The plural of a use case's subject noun ('person' → 'people', 'child' → 'children', else an s)."""
    irregular = {"person": "people", "child": "children", "man": "men", "woman": "women"}
    head, _, last = noun.rpartition(" ")
    lower = last.lower()
    if lower in irregular:
        last = irregular[lower]
    elif lower.endswith(("s", "x", "z", "ch", "sh")):
        last += "es"
    elif lower.endswith("y") and lower[-2:-1] not in set("aeiou"):
        last = last[:-1] + "ies"
    else:
        last += "s"
    return f"{head} {last}" if head else last


def fmt(value: object, *, digits: int = 3) -> str:
    """A figure as the documents print it: floats to `digits` places, None as n/a."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def fmt_metric(metric: Mapping[str, Any] | None) -> str:
    """A metric with CI as `value [low, high]`; a null value as `n/a (why)`."""
    if not metric or metric.get("value") is None:
        note = (metric or {}).get("note")
        return f"n/a ({note})" if note else "n/a"
    ci = metric.get("ci")
    return fmt(metric["value"]) + (f" [{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "")


def _sorted_groups(groups: Mapping[str, Any]) -> list[tuple[str, Any]]:
    return sorted(groups.items(), key=lambda item: (-int(item[1].get("count") or 0), item[0]))


def fairness_tables(fairness: Report) -> list[dict[str, Any]]:
    """Per attribute: one row of metric cells per group, and the summary differences/ratios."""
    tables = []
    for name, attribute in fairness.get("attributes", {}).items():
        rows = [
            {
                "group": group,
                "count": fmt(entry.get("count")),
                "positives": fmt(entry.get("positives")),
                "small": bool(entry.get("small")),
                "cells": [fmt_metric(entry.get(key)) for key in GROUP_METRICS],
            }
            for group, entry in _sorted_groups(attribute.get("groups", {}))
        ]
        summary = attribute.get("summary", {})
        notes = [(summary.get(key) or {}).get("note") for key in SUMMARY_METRICS]
        tables.append(
            {
                "name": name,
                "rows": rows,
                "summary": [(label, fmt_metric(summary.get(key))) for key, label in SUMMARY_METRICS.items()],
                "figures": [fmt_metric({**(summary.get(key) or {}), "note": None}) for key in SUMMARY_METRICS],
                "notes": list(dict.fromkeys(note for note in notes if note)),
            }
        )
    return tables


def bias_tables(data_bias: Report) -> list[dict[str, Any]]:
    """Per attribute of the raw data: count, share and base rate of each group, and the four-fifths test."""
    tables = []
    for name, attribute in data_bias.get("attributes", {}).items():
        summary = attribute.get("summary", {})
        four_fifths = summary.get("four_fifths") or {}
        rows = [
            {
                "group": group,
                "count": fmt(entry.get("count")),
                "share": fmt(entry.get("share")),
                "base_rate": fmt_metric(entry.get("base_rate")),
                "small": bool(entry.get("small")),
            }
            for group, entry in _sorted_groups(attribute.get("groups", {}))
        ]
        passes = four_fifths.get("passes")
        tables.append(
            {
                "name": name,
                "reference": attribute.get("reference"),
                "rows": rows,
                "summary": [(label, fmt_metric(summary.get(key))) for key, label in BIAS_SUMMARY.items()],
                "four_fifths": "n/a" if passes is None else ("passes" if passes else "fails"),
                "four_fifths_on": four_fifths.get("on", ""),
            }
        )
    return tables


def affected_groups(reports: Mapping[str, Report]) -> list[dict[str, str]]:
    """Each audited group with its size in the raw data (data_bias) and in the held-out split (fairness)."""
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for stage, column in (("data_bias", "raw"), ("fairness", "test")):
        for name, attribute in reports.get(stage, {}).get("attributes", {}).items():
            for group, entry in _sorted_groups(attribute.get("groups", {})):
                row = rows.setdefault(
                    (name, group), {"attribute": name, "group": group, "raw": "n/a", "share": "n/a", "test": "n/a"}
                )
                row[column] = fmt(entry.get("count")) + (" (small)" if entry.get("small") else "")
                if stage == "data_bias":
                    row["share"] = fmt(entry.get("share"))
    return list(rows.values())


def _figures(attributes: Mapping[str, Any], metric: str, bound: int) -> str:
    parts = []
    for name, attribute in attributes.items():
        ci = (attribute.get("summary", {}).get(metric) or {}).get("ci")
        parts.append(f"{name} {fmt(ci[bound]) if ci else 'n/a'}")
    return "; ".join(parts) or "n/a"


def threshold_rows(reports: Mapping[str, Report], params: Params) -> list[dict[str, str]]:
    """The active tier's thresholds beside the figure each applies to in this run (the gate judges)."""
    policy = params.governance.policy
    fairness = reports.get("fairness", {}).get("attributes", {})
    proxies = reports.get("explain", {}).get("proxies")
    flagged = None if proxies is None else sum(1 for p in proxies if p.get("flagged"))
    figures = {
        "min_auc": f"AUC {fmt(reports.get('evaluate', {}).get('metrics', {}).get('auc'))}",
        "min_dp_ratio_lower": "demographic parity ratio, CI low: " + _figures(fairness, "demographic_parity_ratio", 0),
        "max_eo_diff_upper": "equalized odds difference, CI high: "
        + _figures(fairness, "equalized_odds_difference", 1),
        "max_robustness_flip_rate": "flip rate under noise "
        + fmt(reports.get("robustness", {}).get("perturbation", {}).get("flip_rate")),
        "block_on_proxies": f"{fmt(flagged)} flagged prox{'y' if flagged == 1 else 'ies'}",
    }
    return [{"name": name, "threshold": fmt(getattr(policy, name)), "figure": text} for name, text in figures.items()]


@dataclass(frozen=True)
class Risk:
    """One entry of the impact assessment's risk register: a finding, its figure, and what answers it."""

    source: str
    finding: str
    figure: str
    response: str


def _gate_risks(gate: Report) -> Iterator[Risk]:
    checks: list[dict[str, Any]] = gate.get("checks") or gate.get("reasons") or []
    for check in checks:
        name = f"gate check {check.get('check')}"
        where = f" on {check['attribute']}" if check.get("attribute") else ""
        if check.get("passed") is False:
            figure = f"{check.get('bound')} {fmt(check.get('value'))}, required {check.get('op', '')} "
            figure += fmt(check.get("threshold"))
            yield Risk(report_path("gate"), f"{name} failed{where}", figure, "release blocked by the gate")
        elif check.get("passed") is None:
            note, response = str(check.get("note") or "no value"), "the approver decides without this figure"
            yield Risk(report_path("gate"), f"{name} not assessable{where}", note, response)


def _audit_risks(reports: Mapping[str, Report], params: Params) -> Iterator[Risk]:
    for name, attribute in reports.get("fairness", {}).get("attributes", {}).items():
        summary = [attribute.get("summary", {}).get(key) or {} for key in SUMMARY_METRICS]
        null = [metric for metric in summary if metric.get("value") is None]
        if null and "gate" not in reports:  # the gate lists them as not assessable
            yield Risk(
                report_path("fairness"),
                f"fairness of decisions across {name} cannot be measured "
                f"({len(null)} of {len(summary)} summaries are null)",
                "; ".join(sorted({str(metric.get("note") or "no value") for metric in null})),
                "not assessed: the gate cannot vouch for this attribute",
            )
    mitigation = params.fairness.mitigation
    for name, attribute in reports.get("data_bias", {}).get("attributes", {}).items():
        summary = attribute.get("summary", {})
        if (summary.get("four_fifths") or {}).get("passes") is False:
            mitigated = reports.get("mitigate", {}).get("applied") and name == params.mitigation_attribute
            yield Risk(
                report_path("data_bias"),
                f"base rates of {name} fail the four-fifths rule in the training data",
                "base rate ratio " + fmt_metric(summary.get("base_rate_ratio")),
                f"mitigation evaluated: {mitigation.method} ({mitigation.constraint})"
                if mitigated
                else "a model trained on it can learn the gap",
            )
    explain = params.explain
    for proxy in reports.get("explain", {}).get("proxies", []):
        if proxy.get("flagged"):
            yield Risk(
                report_path("explain"),
                f"{proxy.get('feature')} is a proxy for {proxy.get('attribute')}",
                f"normalised mutual information {fmt(proxy.get('normalized_mutual_information'))} (threshold "
                f"{fmt(explain.proxy_nmi_threshold)}), probe AUC {fmt(proxy.get('probe_auc'))} "
                f"(threshold {fmt(explain.proxy_auc_threshold)})",
                _proxy_response(str(proxy.get("feature")), params),
            )
    robustness = reports.get("robustness", {})
    noise = robustness.get("perturbation", {})
    if noise.get("flagged"):
        yield Risk(
            report_path("robustness"),
            f"decisions flip under {fmt(noise.get('numeric_noise'))} relative numeric noise",
            f"flip rate {fmt(noise.get('flip_rate'))} (flagged above {fmt(params.robustness.max_flip_rate)})",
            "reviewed at sign-off",
        )
    for name, entry in robustness.get("protected_flip", {}).items():
        if (entry.get("flip_rate") or 0) > 0:
            note = f" ({entry['note']})" if entry.get("note") else ""
            yield Risk(
                report_path("robustness"),
                f"changing {name} alone changes decisions",
                f"flip rate {fmt(entry.get('flip_rate'))}{note}",
                "reviewed at sign-off",
            )


def _proxy_response(feature: str, params: Params) -> str:
    usecase = params.usecase
    if feature in usecase.proxies:
        encoded = ", ".join(usecase.proxies[feature])
        return f"kept out of the model's features: a declared proxy of {encoded} (the use case's proxies)"
    if feature in usecase.drop:
        return "kept out of the model's features (the use case's drop)"
    if params.governance.policy.block_on_proxies:
        return "the gate blocks on proxies"
    return "the model uses it: excluding the attribute does not hide it; reviewed at sign-off"


def _small_group_risks(reports: Mapping[str, Report]) -> Iterator[Risk]:
    for stage, where in (("data_bias", "the raw data"), ("fairness", "the held-out split")):
        limit = reports.get(stage, {}).get("min_group_size")
        for name, attribute in reports.get(stage, {}).get("attributes", {}).items():
            for group, entry in _sorted_groups(attribute.get("groups", {})):
                if entry.get("small"):
                    yield Risk(
                        report_path(stage),
                        f"{name} = {group} is too small in {where} to audit reliably",
                        f"{fmt(entry.get('count'))} rows (minimum {fmt(limit)})",
                        "shown with its CI, left out of the summary differences",
                    )


def risks(reports: Mapping[str, Report], params: Params) -> list[Risk]:
    """Every failing or flagged figure in the reports, and every audit that has not run."""
    missing = [
        Risk(report_path(stage), f"{STAGES[stage]} not assessed", "not run", f"run the {stage} stage")
        for stage in STAGES
        if stage not in reports and stage not in ("mitigate", "validate")
    ]
    return [
        *_gate_risks(reports.get("gate", {})),
        *_audit_risks(reports, params),
        *_small_group_risks(reports),
        *missing,
    ]


def flags(reports: Mapping[str, Report]) -> list[tuple[str, str]]:
    """The flags each report raised, verbatim, with the report they came from."""
    return [
        (report_path(stage), str(flag)) for stage, report in reports.items() for flag in (report.get("flags") or [])
    ]


def statuses(reports: Mapping[str, Report], found: list[Risk]) -> dict[str, str]:
    """Per stage, as the evidence page labels it: not run, failed, flagged, ok (the gate: pass or fail)."""
    out = {}
    for stage in STAGES:
        report = reports.get(stage)
        if report is None:
            out[stage] = "not run"
        elif stage == "gate":
            out[stage] = "pass" if report.get("verdict") == "pass" else "fail"
        elif report.get("success") is False:
            out[stage] = "failed"
        elif report.get("flags") or any(risk.source == report_path(stage) for risk in found) or _unmitigated(report):
            out[stage] = "flagged"
        else:
            out[stage] = "ok"
    return out


def _unmitigated(report: Report) -> bool:
    """A mitigate report whose base model fails the gate and nothing mitigated goes forward."""
    failed = report.get("base", {}).get("verdict", {}).get("verdict") == "fail"
    return failed and report.get("selected") != "mitigated"


def candidate(reports: Mapping[str, Report]) -> dict[str, Report]:
    """The reports describing the model going forward: the mitigated model's audit when mitigate selected it."""
    mitigate = reports.get("mitigate", {})
    if mitigate.get("selected") != "mitigated" or "mitigated" not in mitigate:
        return dict(reports)
    after = mitigate["mitigated"]
    return {**reports, "fairness": after.get("fairness", {}), "evaluate": after.get("evaluation", {})}


def mitigation_view(reports: Mapping[str, Report]) -> dict[str, Any] | None:
    """The mitigate stage's settings and outcome, and the base and mitigated figures side by side."""
    mitigate = reports.get("mitigate")
    if mitigate is None:
        return None
    keys = ("applied", "selected", "method", "constraint", "attribute", "reason")
    settings = [(key, fmt(mitigate[key])) for key in keys if key in mitigate]
    after = mitigate.get("mitigated") or {}
    rows = []
    if after:
        base, mitigated = reports.get("evaluate", {}).get("metrics", {}), after.get("evaluation", {}).get("metrics", {})
        rows += [(key, fmt(base.get(key)), fmt(mitigated.get(key))) for key in ("auc", "accuracy", "approval_rate")]
        base_attributes = reports.get("fairness", {}).get("attributes", {})
        for name, attribute in after.get("fairness", {}).get("attributes", {}).items():
            for key in ("demographic_parity_ratio", "equalized_odds_difference"):
                before = base_attributes.get(name, {}).get("summary", {}).get(key)
                rows.append(
                    (f"{name}: {SUMMARY_METRICS[key]}", fmt_metric(before), fmt_metric(attribute["summary"].get(key)))
                )
    verdicts = [(m.get("verdict") or {}).get("verdict", "n/a") for m in (mitigate.get("base", {}), after)]
    rows.append(("gate verdict", verdicts[0], verdicts[1] if after else "not applied"))
    return {"settings": settings, "rows": rows}


def md_section(markdown: str, title: str) -> str | None:
    """The body of the `## title` section of a Markdown document, without its heading."""
    lines = markdown.splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"^(#+)\s+(.*)$", line)
        if match and match.group(2).strip().lower() == title.lower():
            level = len(match.group(1))
            end = next((j for j in range(i + 1, len(lines)) if re.match(rf"^#{{1,{level}}}\s", lines[j])), len(lines))
            return "\n".join(lines[i + 1 : end]).strip()
    return None


def demote_headings(markdown: str, *, by: int = 1) -> str:
    """Push every ATX heading down `by` levels (outside fenced code), to nest a document in another."""
    out, fenced = [], False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        out.append("#" * by + line if not fenced and re.match(r"^#+\s", line) else line)
    return "\n".join(out)

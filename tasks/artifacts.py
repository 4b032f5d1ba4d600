"""Prefect artifacts: a short Markdown summary of each step, shown on the flow run's page."""

from __future__ import annotations

import json
from typing import Any

from prefect.artifacts import create_markdown_artifact


def markdown_table(rows: dict[str, Any]) -> str:
    lines = ["| | |", "|---|---|"]
    lines += [
        f"| {key} | {value:.4f} |" if isinstance(value, float) else f"| {key} | {value} |"
        for key, value in rows.items()
    ]
    return "\n".join(lines)


def report_markdown(stage: str, report: dict[str, Any], *, ran: bool) -> str:
    """A readable summary of a stage's JSON report (validation results or metrics)."""
    head = f"## {stage}: {'ran' if ran else 'unchanged (skipped or restored by DVC)'}\n\n"
    if "metrics" in report:
        return head + markdown_table(report["metrics"])
    if "suites" in report:
        body = ""
        for suite in report["suites"]:
            verdict = "passed" if suite["success"] else "FAILED"
            counts = f"{suite['evaluated']} expectations, {suite['n_rows']} rows"
            body += f"- suite `{suite['suite']}` {verdict}: {counts}\n"
            body += "".join(f"    - `{f['column']}` {f['expectation']}: {f['observed']}\n" for f in suite["failures"])
        return head + body
    if "attributes" in report:
        return head + summary_table(report)
    if "verdict" in report:
        return head + gate_markdown(report)
    return head + "```json\n" + json.dumps(report, indent=2)[:4000] + "\n```"


def publish(key: str, markdown: str, *, description: str) -> None:
    """Attach a Markdown artifact to the current run (keys: lowercase letters, digits, dashes)."""
    create_markdown_artifact(key=key, markdown=markdown, description=description)


def _with_ci(metric: dict[str, Any] | None) -> str:
    if not metric or metric.get("value") is None:
        return "n/a" + (f" ({metric['note']})" if metric and metric.get("note") else "")
    ci = metric.get("ci")
    return f"{metric['value']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def summary_table(report: dict[str, Any]) -> str:
    """One row per attribute (or intersection), one column per summary figure, each with its CI."""
    rows = list(report["attributes"].items())
    names = sorted({name for _, audit in rows for name in audit.get("summary", {})})
    lines = ["| attribute | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for attribute, audit in rows:
        cells = [_with_ci(audit.get("summary", {}).get(name)) for name in names]
        lines.append(f"| {attribute} | " + " | ".join(cells) + " |")
    flags = report.get("flags", [])
    return "\n".join(lines) + ("\n\nFlags:\n" + "\n".join(f"- {flag}" for flag in flags) if flags else "")


def gate_markdown(report: dict[str, Any]) -> str:
    lines = [f"**{report['verdict'].upper()}** ({report['tier']} risk tier, model: {report.get('model', 'base')})", ""]
    for check in report.get("checks", []):
        mark = {True: "pass", False: "FAIL", None: "not assessable"}[check["passed"]]
        value = "n/a" if check["value"] is None else f"{check['value']:.3f}"
        where = check["attribute"] or "model"
        lines.append(
            f"- {mark}: {check['check']} [{where}] {check['bound']} {value} {check['op']} {check['threshold']}"
        )
    return "\n".join(lines)

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
    return head + "```json\n" + json.dumps(report, indent=2)[:4000] + "\n```"


def publish(key: str, markdown: str, *, description: str) -> None:
    """Attach a Markdown artifact to the current run (keys: lowercase letters, digits, dashes)."""
    create_markdown_artifact(key=key, markdown=markdown, description=description)

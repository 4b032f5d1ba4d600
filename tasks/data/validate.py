"""Validate a data frame against a Great Expectations suite (a data contract) and summarise the result."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steward.errors import StewardError

if TYPE_CHECKING:
    # great_expectations takes seconds to import, pandas half a second; the CLI and the flows import this
    # module (for ValidationFailed), so they are imported where they are used.
    import great_expectations as gx
    import pandas as pd
    from great_expectations.checkpoint import ValidationAction
    from great_expectations.core import ExpectationSuiteValidationResult, ExpectationValidationResult

    from steward.params import Params

SUITE_INVALID = "Suite {path}: {dropped} of {declared} expectations are not valid and were dropped by GE"
VALIDATION_FAILED = "Data contract {suite!r} failed: {failed} of {evaluated} expectations not met ({n_rows} rows)"
FAILURE_LINE = "  - {where}: {expectation}{expected} → observed {observed}"
TABLE_WHERE = "(table)"
COLUMN_ABSENT = "no such column in the frame"
UNEXPECTED = "{count} {noun} ({percent:.3g}%)"
EXAMPLES = ", e.g. {values}"
COLUMNS_MISMATCHED = "missing {missing}, extra {extra}"
ERROR = "error: {message}"
READABLE_CSV = "a readable CSV file"
DATA_DOCS_AT = "\nData Docs: {path}"

NOT_NULL = "expect_column_values_to_not_be_null"
DOCS_SITE = "steward_docs"
RESULT_FORMAT: dict[str, Any] = {"result_format": "SUMMARY", "partial_unexpected_count": 20}
N_EXAMPLES = 5
# kwargs rendered as the expected side of a failure line, in this order, with these labels.
EXPECTED_KWARGS = {
    "min_value": "min",
    "max_value": "max",
    "type_": "type",
    "value_set": "one of",
    "column_set": "columns",
    "regex": "regex",
    "mostly": "mostly",
}


@dataclass(frozen=True)
class Failure:
    """One expectation that was not met: where, which, and what GE observed instead."""

    column: str | None
    expectation: str
    observed: str
    expected: str = ""


@dataclass(frozen=True)
class ValidationSummary:
    """The outcome of validating one frame against one suite; deterministic for the same inputs."""

    suite: str
    success: bool
    n_rows: int
    evaluated: int
    failures: list[Failure] = field(default_factory=list)
    data_docs: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_docs(self, path: str) -> ValidationSummary:
        return replace(self, data_docs=path)

    def message(self) -> str:
        """The failures, one per line."""
        return "\n".join(
            FAILURE_LINE.format(
                where=f.column or TABLE_WHERE,
                expectation=f.expectation,
                expected=f" ({f.expected})" if f.expected else "",
                observed=f.observed,
            )
            for f in self.failures
        )


class ValidationFailed(StewardError):
    """Raised by `check` when a frame breaks its data contract; carries the summary."""

    def __init__(self, summary: ValidationSummary) -> None:
        super().__init__(summary)
        self.summary = summary

    def __str__(self) -> str:
        s = self.summary
        header = VALIDATION_FAILED.format(suite=s.suite, failed=len(s.failures), evaluated=s.evaluated, n_rows=s.n_rows)
        docs = DATA_DOCS_AT.format(path=s.data_docs) if s.data_docs else ""
        return f"{header}\n{s.message()}{docs}"


class SuiteInvalid(StewardError, ValueError):
    """An expectation suite file Great Expectations cannot read whole."""


def check(summary: ValidationSummary) -> None:
    """Raise `ValidationFailed` unless every expectation was met."""
    if not summary.success:
        raise ValidationFailed(summary)


def load_suite(source: Path | dict[str, Any]) -> gx.ExpectationSuite:
    """A suite from its JSON file (or its already-read or derived mapping), refusing one GE would silently shorten."""
    import great_expectations as gx

    raw = json.loads(source.read_text(encoding="utf-8")) if isinstance(source, Path) else source
    path = source if isinstance(source, Path) else raw.get("name", "(derived)")
    suite = gx.ExpectationSuite(**copy.deepcopy(raw))
    # GE logs and drops an expectation it cannot build (a typo in its type or kwargs): a contract
    # must not lose a check quietly.
    declared = len(raw.get("expectations", []))
    if len(suite.expectations) != declared:
        dropped = declared - len(suite.expectations)
        raise SuiteInvalid(SUITE_INVALID.format(path=path, dropped=dropped, declared=declared))
    return suite


def validate_frame(
    df: pd.DataFrame, *, suite: Path | dict[str, Any], docs_dir: Path | None = None
) -> ValidationSummary:
    """Validate `df` as one whole-frame batch; with `docs_dir`, also write Data Docs HTML there."""
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    gx_suite = context.suites.add(load_suite(suite))
    batch_definition = (
        context.data_sources.add_pandas("frames")
        .add_dataframe_asset(gx_suite.name)
        .add_batch_definition_whole_dataframe("whole_frame")
    )
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=gx_suite.name, data=batch_definition, suite=gx_suite)
    )
    actions: list[ValidationAction] = []
    if docs_dir is not None:
        # The ephemeral context already has a `local_site`: add ours under a new name and build only it.
        context.add_data_docs_site(
            site_name=DOCS_SITE,
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        actions.append(UpdateDataDocsAction(name="data_docs", site_names=[DOCS_SITE]))
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=gx_suite.name, validation_definitions=[definition], actions=actions, result_format=RESULT_FORMAT
        )
    )
    run = checkpoint.run(batch_parameters={"dataframe": df})
    result = next(iter(run.run_results.values()))
    order = {e.id: i for i, e in enumerate(gx_suite.expectations)}
    return _summarise(
        result,
        suite=gx_suite.name,
        columns=set(df.columns),
        n_rows=len(df),
        order=order,
        data_docs=str(docs_dir / "index.html") if docs_dir is not None else None,
    )


def _summarise(
    result: ExpectationSuiteValidationResult,
    *,
    suite: str,
    columns: set[str],
    n_rows: int,
    order: dict[str | None, int],
    data_docs: str | None,
) -> ValidationSummary:
    """Reduce a GE validation result to a `ValidationSummary`."""
    # GE returns results in the order it resolved their metrics; report them in the suite's order.
    failed = sorted(
        (r for r in result.results if not r.success),
        key=lambda r: order.get(r.expectation_config.id if r.expectation_config else None, len(order)),
    )
    return ValidationSummary(
        suite=suite,
        success=bool(result.success),
        n_rows=n_rows,
        evaluated=int(result.statistics["evaluated_expectations"]),
        failures=[_failure(r, columns=columns) for r in failed],
        data_docs=data_docs,
    )


def _failure(r: ExpectationValidationResult, *, columns: set[str]) -> Failure:
    config = r.expectation_config
    assert config is not None  # GE always attaches the configuration to a suite's result
    kwargs = config.kwargs
    return Failure(
        column=kwargs.get("column"),
        expectation=config.type,
        observed=_observed(r, kwargs=kwargs, columns=columns, nulls=config.type == NOT_NULL),
        expected=_expected(kwargs),
    )


def _observed(r: ExpectationValidationResult, *, kwargs: dict[str, Any], columns: set[str], nulls: bool) -> str:
    column = kwargs.get("column")
    if column is not None and column not in columns:
        # GE reports a missing column with a different traceback per expectation type; say it once, plainly.
        return COLUMN_ABSENT
    res = r.result or {}
    mismatched = res.get("details", {}).get("mismatched")
    if mismatched:
        return COLUMNS_MISMATCHED.format(
            missing=sorted(mismatched.get("missing", [])), extra=sorted(mismatched.get("unexpected", []))
        )
    if res.get("observed_value") is not None:
        return _fmt(res["observed_value"])
    if res.get("unexpected_count") is not None:
        count = int(res["unexpected_count"])
        noun = ("null" if nulls else "unexpected value") + ("" if count == 1 else "s")
        text = UNEXPECTED.format(count=count, noun=noun, percent=res.get("unexpected_percent") or 0.0)
        examples = _examples(res.get("partial_unexpected_list") or [])
        return text + (EXAMPLES.format(values=examples) if examples else "")
    return ERROR.format(message=_exception_message(r.exception_info))


def _expected(kwargs: dict[str, Any]) -> str:
    parts = []
    for key, label in EXPECTED_KWARGS.items():
        value = kwargs.get(key)
        if value is None or (key == "mostly" and value == 1):
            continue
        if key == "column_set":
            # GE drops kwargs equal to their default from the configuration; exact_match defaults to True.
            exact = "exactly" if kwargs.get("exact_match", True) else "at least"
            parts.append(f"{exact} the {len(value)} {label} of the contract")
            continue
        parts.append(f"{label} {_fmt(value)}")
    return ", ".join(parts)


def _examples(values: list[Any]) -> list[Any]:
    """A few distinct, non-null unexpected values, in the order GE saw them."""
    seen: list[Any] = []
    for v in values:
        v = v.item() if hasattr(v, "item") else v
        if v is None or (isinstance(v, float) and math.isnan(v)) or v in seen:
            continue
        seen.append(v)
        if len(seen) == N_EXAMPLES:
            break
    return seen


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple | set):
        items = sorted(value, key=str) if isinstance(value, set) else list(value)
        shown = ", ".join(repr(v) for v in items[:N_EXAMPLES])
        return f"[{shown}{', …' if len(items) > N_EXAMPLES else ''}]"
    return str(value)


def _exception_message(info: dict[str, Any] | None) -> str:
    """GE nests exception info per metric when a metric fails; take the first message."""
    if not info:
        return "unknown"
    if "exception_message" in info:
        return str(info["exception_message"])
    for nested in info.values():
        if isinstance(nested, dict) and nested.get("exception_message"):
            return str(nested["exception_message"])
    return "unknown"


def relative_docs(summary: ValidationSummary, root: Path) -> ValidationSummary:
    """The summary with its Data Docs path relative to the project (reports must not depend on the clone)."""
    if summary.data_docs is None:
        return summary
    return replace(summary, data_docs=str(Path(summary.data_docs).relative_to(root)))


def summary_from_dict(raw: dict[str, Any]) -> ValidationSummary:
    """Read back a summary written by `ValidationSummary.to_dict`."""
    failures = [Failure(**failure) for failure in raw.get("failures", [])]
    fields = {k: raw[k] for k in ("suite", "success", "n_rows", "evaluated")}
    return ValidationSummary(**fields, failures=failures, data_docs=raw.get("data_docs"))


def validate_snapshot(raw: pd.DataFrame, *, params: Params, root: Path) -> list[ValidationSummary]:
    """Both contracts of a snapshot: the raw suite, then (if it passed) the suite of its feature frame.

    Data Docs go to reports/data_docs/{raw,features} under `root`; paths in the summaries are relative.
    """
    from tasks.data.features import to_feature_frame
    from tasks.data.suites import features_suite, read_suite

    raw_suite = read_suite(root / params.usecase.raw_suite)
    params.usecase.require_suite(raw_suite)  # a use case its own suite contradicts is refused, every mismatch named
    summaries = [validate_frame(raw, suite=raw_suite, docs_dir=root / "reports/data_docs/raw")]
    if summaries[0].success:
        features = to_feature_frame(raw, usecase=params.usecase)
        docs = root / "reports/data_docs/features"
        summaries.append(validate_frame(features, suite=features_suite(raw_suite, params.usecase), docs_dir=docs))
    return [relative_docs(summary, root) for summary in summaries]


def report(summaries: list[ValidationSummary]) -> dict[str, Any]:
    """reports/validate.json: overall success and each suite's summary."""
    return {"success": all(s.success for s in summaries), "suites": [s.to_dict() for s in summaries]}


def first_failure(report: dict[str, Any]) -> ValidationSummary | None:
    """The first failed suite in a validate report, if any."""
    for raw in report.get("suites", []):
        if not raw["success"]:
            return summary_from_dict(raw)
    return None


def main() -> None:
    """DVC stage `validate`: both contracts on data/raw/snapshot.csv → reports/validate.json and Data Docs."""
    import pandas as pd

    from tasks.data.features import read_snapshot
    from tasks.stage import stage_context, write_json

    ctx = stage_context()
    try:
        raw = read_snapshot(ctx.layout.raw_data)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        unreadable = Failure(column=None, expectation=READABLE_CSV, observed=str(exc).strip())
        suite = Path(ctx.params.usecase.raw_suite).stem
        summaries = [ValidationSummary(suite=suite, success=False, n_rows=0, evaluated=1, failures=[unreadable])]
    else:
        summaries = validate_snapshot(raw, params=ctx.params, root=ctx.layout.project_dir)
    write_json(ctx.layout.report("validate"), report(summaries))
    for summary in summaries:
        check(summary)
    met = sum(s.evaluated for s in summaries)
    print(f"validate: {met} expectations met on {summaries[0].n_rows} rows ({len(summaries)} suites)")


if __name__ == "__main__":
    from tasks.stage import run_stage

    run_stage(main)

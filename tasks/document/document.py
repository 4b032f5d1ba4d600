"""Document stage: model card, datasheet, impact assessment and the evidence page, generated from the run.

Nothing here is hand-filled. Every figure and finding comes from a report under reports/, params.yaml and its
use case (whose words, title and datasheet the documents use), or the lineage (data md5, params hash, git
commit); a report that is missing
gives an explicit "not run" section. The renderers are pure functions of an `Evidence` bundle; `main`
gathers it, writes the files and records their sha256 in reports/document.json.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml

from steward.layout import EVIDENCE_PAGE
from steward.params import Params
from tasks.document import facts
from tasks.document.facts import Report
from tasks.model.estimator import estimator_kwargs

DOCUMENT_DIR = "reports/document"
DATA_DOCS = ("reports/data_docs/raw/index.html", "reports/data_docs/features/index.html")
PLOT_FOLDERS = ("data_bias", "fairness", "mitigate", "explain", "robustness")
CALIBRATION_PLOT = "reports/calibration.png"
DOCUMENTS = {  # file under DOCUMENT_DIR → its name on the evidence page
    "model_card.html": "Model card",
    "model_card.md": "Model card (Markdown, Hugging Face style)",
    "datasheet.md": "Datasheet of this data version (Markdown)",
    "impact_assessment.html": "Impact assessment",
    "impact_assessment.md": "Impact assessment (Markdown)",
}
EVALUATE_METRICS = {  # evaluate.json key → (model card metric type, name)
    "auc": ("roc_auc", "AUC"),
    "accuracy": ("accuracy", "accuracy"),
    "brier": ("brier_score", "Brier score"),
    "log_loss": ("log_loss", "log loss"),
    "approval_rate": ("approval_rate", "approval rate"),
}
REPORT_INCOMPLETE = "{template}: a report lacks a field the audit contract promises ({error})"
WROTE = "document: wrote {count} files; gate verdict: {verdict}; not run: {missing}"
Verdict = Literal["pass", "fail", "not run"]


@dataclass(frozen=True)
class Lineage:
    """Where this run came from: the data version, the params hash and the code version."""

    data_file: str
    data_md5: str | None
    data_sha256: str | None
    vendored_file: str
    vendored_sha256: str | None
    params_hash: str
    git_commit: str | None
    model_name: str
    license: str

    @property
    def vendored(self) -> bool:
        """Whether the snapshot is byte for byte the vendored dataset its datasheet describes."""
        return self.data_sha256 is not None and self.data_sha256 == self.vendored_sha256

    @property
    def dataset(self) -> str:
        name = Path(self.vendored_file).name.removesuffix(".gz")
        return Path(name).stem if self.vendored else f"snapshot-{(self.data_md5 or 'unknown')[:8]}"


@dataclass(frozen=True)
class Evidence:
    """Everything the documents are made from."""

    reports: dict[str, Report]  # stage → loaded report, for the reports that exist
    files: dict[str, str]  # project-relative path → sha256, for every evidence file that exists
    datasheet: str | None  # the use case's datasheet (Markdown), if found
    lineage: Lineage
    online: dict[str, int] = field(default_factory=dict)  # linked page → scripts/styles it fetches online

    @property
    def verdict(self) -> Verdict:
        verdict = self.reports.get("gate", {}).get("verdict")
        return verdict if verdict in ("pass", "fail") else "not run"

    def plots(self, stage: str) -> list[str]:
        """The existing PNGs of a stage, in a stable order."""
        return sorted(p for p in self.files if p.startswith(f"reports/{stage}/") and p.endswith(".png"))


def _percent(share: float) -> str:
    return f"{share * 100:g} %"


@cache
def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(md=facts.md, fmt=facts.fmt, metric=facts.fmt_metric, sci="{:.1e}".format, pct=_percent)
    return env


def render(template: str, **context: Any) -> str:
    import jinja2

    try:
        return str(_environment().get_template(template).render(**context))
    except jinja2.UndefinedError as exc:  # a report without a field its contract promises
        raise ValueError(REPORT_INCOMPLETE.format(template=template, error=exc)) from None


def markdown_to_html(markdown: str) -> str:
    """CommonMark + tables to HTML; raw HTML is escaped and only relative links and images are kept."""
    from markdown_it import MarkdownIt

    renderer = MarkdownIt("commonmark", {"html": False}).enable("table")
    external = re.compile(r"^\s*([a-z][a-z0-9+.-]*:|//)", re.I)
    renderer.validateLink = lambda url: external.match(url) is None  # type: ignore[method-assign]
    return str(renderer.render(markdown))


def _context(evidence: Evidence, params: Params, *, folder: str) -> dict[str, Any]:
    """What every template gets: the reports, their tables and risks, and links as seen from `folder`."""
    reports = facts.candidate(evidence.reports)  # the base model's audit, or the mitigated one going forward
    found = facts.risks(reports, params)

    def link(path: str) -> dict[str, Any]:
        return {"path": path, "href": posixpath.relpath(path, start=folder), "sha256": evidence.files.get(path)}

    usecase = params.usecase
    return {
        "params": params,
        "usecase": usecase,
        "words": usecase.words,
        "favourable": str(usecase.label.favourable),
        "subjects": facts.plural(usecase.words.subject),
        "model_params": estimator_kwargs(params.train),
        "lineage": evidence.lineage,
        "verdict": evidence.verdict,
        "reports": reports,
        "not_run": {stage: facts.not_run(stage) for stage in facts.STAGES},
        "bias": facts.bias_tables(reports.get("data_bias", {})),
        "fairness": facts.fairness_tables(reports.get("fairness", {})),
        "group_metrics": list(facts.GROUP_METRICS.values()),
        "summary_labels": list(facts.SUMMARY_METRICS.values()),
        "mitigation": facts.mitigation_view(evidence.reports),
        "forward": evidence.reports.get("mitigate", {}).get("selected", "base"),
        "risks": found,
        "status": facts.statuses(reports, found),
        "affected": facts.affected_groups(reports),
        "flags": facts.flags(reports),
        "thresholds": facts.threshold_rows(reports, params),
        "checks": reports.get("gate", {}).get("checks") or reports.get("gate", {}).get("reasons") or [],
        "link": link,
        "files": evidence.files,
        "online": evidence.online,
        "datasheet": evidence.datasheet,
        "datasheet_section": lambda title: facts.md_section(evidence.datasheet or "", title),
        "plots": evidence.plots,
        "calibration": CALIBRATION_PLOT if CALIBRATION_PLOT in evidence.files else None,
    }


def model_card_metadata(evidence: Evidence, params: Params) -> dict[str, Any]:
    """The model card's YAML front matter, in the Hugging Face model card style (plus a `steward` block)."""
    lineage, reports = evidence.lineage, facts.candidate(evidence.reports)
    scores = reports.get("evaluate", {}).get("metrics", {})
    metrics = [
        {"type": kind, "name": name, "value": scores[key]}
        for key, (kind, name) in EVALUATE_METRICS.items()
        if scores.get(key) is not None
    ]
    summaries = {name: a.get("summary", {}) for name, a in reports.get("fairness", {}).get("attributes", {}).items()}
    fairness = {
        name: {key: {k: (s.get(key) or {}).get(k) for k in ("value", "ci")} for key in facts.SUMMARY_METRICS}
        for name, s in summaries.items()
    }
    split = f"held-out test split, n={scores.get('n', 'unknown')}"
    dataset = {"name": lineage.dataset, "type": "tabular", "revision": lineage.data_md5, "split": split}
    task = {"type": "tabular-classification", "name": params.usecase.label.column}
    steward = {
        "usecase": params.usecase.name,
        "risk_tier": params.governance.risk_tier,
        "gate_verdict": evidence.verdict,
        "decision_threshold": params.evaluate.threshold,
        "favourable_outcome": str(params.usecase.label.favourable),
        "data_md5": lineage.data_md5,
        "params_hash": lineage.params_hash,
        "git_commit": lineage.git_commit,
        "fairness": fairness,
        "not_run": [stage for stage in facts.STAGES if stage not in reports],
    }
    return {
        "license": lineage.license.lower(),
        "library_name": "sklearn",
        "tags": ["tabular-classification", params.train.model, params.usecase.label.column, "fairness-audited"],
        "datasets": [lineage.dataset],
        "metrics": [m["type"] for m in metrics],
        "model-index": [
            {
                "name": f"{lineage.model_name} ({params.train.model})",
                "results": [{"task": task, "dataset": dataset, "metrics": metrics}],
            }
        ],
        "steward": steward,
    }


def model_card(evidence: Evidence, params: Params) -> str:
    """The model card as Markdown with YAML front matter."""
    front = yaml.safe_dump(model_card_metadata(evidence, params), sort_keys=False, allow_unicode=True)
    body = render("model_card.md.j2", **_context(evidence, params, folder=DOCUMENT_DIR))
    return f"---\n{front}---\n\n{body}"


def _html_page(title: str, markdown: str, evidence: Evidence) -> str:
    """A Markdown document as a page; its front matter, title and verdict line move to the page's banner."""
    body = re.sub(r"\A---\n.*?\n---\n", "", markdown, flags=re.S).lstrip()
    body = re.sub(r"\A# [^\n]*\n+(Gate verdict:[^\n]*\n)?", "", body)
    return render(
        "document.html.j2",
        title=title,
        body=markdown_to_html(body),
        verdict=evidence.verdict,
        lineage=evidence.lineage,
        evidence_href=posixpath.relpath(EVIDENCE_PAGE, start=DOCUMENT_DIR),
    )


def model_card_html(evidence: Evidence, params: Params) -> str:
    """The model card as a self-contained HTML page with its plots as relative images."""
    title = f"Model card: {evidence.lineage.model_name} ({params.train.model})"
    return _html_page(title, model_card(evidence, params), evidence)


def datasheet(evidence: Evidence, params: Params) -> str:
    """Datasheet of this data version: the use case's sheet plus this snapshot's identity and groups."""
    context = _context(evidence, params, folder=DOCUMENT_DIR)
    vendored = facts.demote_headings(evidence.datasheet) if evidence.datasheet else None
    return render("datasheet.md.j2", **context, vendored_sheet=vendored)


def impact_assessment(evidence: Evidence, params: Params) -> str:
    """The algorithmic impact assessment as Markdown."""
    return render("impact_assessment.md.j2", **_context(evidence, params, folder=DOCUMENT_DIR))


def impact_assessment_html(evidence: Evidence, params: Params) -> str:
    title = f"Impact assessment: {evidence.lineage.model_name} ({params.train.model})"
    return _html_page(title, impact_assessment(evidence, params), evidence)


def evidence_page(evidence: Evidence, params: Params) -> str:
    """The run's evidence report: verdict first, then every audit with links to its files and hashes."""
    context = _context(evidence, params, folder=str(Path(EVIDENCE_PAGE).parent))
    documents = [(label, f"{DOCUMENT_DIR}/{name}") for name, label in DOCUMENTS.items()]
    title = f"{evidence.lineage.model_name} ({params.train.model})"
    return render("evidence.html.j2", **context, title=title, documents=documents, data_docs=DATA_DOCS)


def render_documents(evidence: Evidence, params: Params) -> dict[str, str]:
    """Every document under reports/document/, by project-relative path."""
    renderers = (model_card, model_card_html, datasheet, impact_assessment, impact_assessment_html)
    names = ("model_card.md", "model_card.html", "datasheet.md", "impact_assessment.md", "impact_assessment.html")
    return {f"{DOCUMENT_DIR}/{name}": render(evidence, params) for name, render in zip(names, renderers, strict=True)}


# --- the I/O shell ---------------------------------------------------------------------------------


def content_sha256(path: Path) -> str:
    """sha256 of a file's content: of its decompressed bytes when it is gzipped (named .gz)."""
    import gzip
    import hashlib

    if path.suffix != ".gz":
        from steward.storage import sha256_file

        return sha256_file(path)
    digest = hashlib.sha256()
    with gzip.open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def gather(project_dir: Path, *, params: Params, git_commit: str | None, model_name: str) -> Evidence:
    """Read the reports, hash the evidence files and work out the lineage.

    The snapshot is the use case's vendored dataset when its bytes are the dataset's (decompressed, if gzipped).
    """
    import json
    from importlib import metadata

    from steward.layout import RAW_DATA
    from steward.storage import sha256_file
    from tasks.dvc import DvcError, tracked_md5

    def sha256(relative: str | Path) -> str | None:
        return sha256_file(project_dir / relative) if (project_dir / relative).is_file() else None

    paths = [facts.report_path(stage) for stage in facts.STAGES] + [CALIBRATION_PLOT, *DATA_DOCS]
    paths += sorted(
        p.relative_to(project_dir).as_posix() for d in PLOT_FOLDERS for p in (project_dir / "reports" / d).glob("*.png")
    )
    files = {path: digest for path in paths if (digest := sha256(path)) is not None}
    reports = {
        s: json.loads((project_dir / facts.report_path(s)).read_text())
        for s in facts.STAGES
        if facts.report_path(s) in files
    }
    vendored = params.usecase.dataset.file
    try:
        data_md5: str | None = tracked_md5(project_dir / f"{RAW_DATA}.dvc")
    except DvcError:
        data_md5 = None
    try:
        license_ = metadata.metadata("steward")["License"] or "unknown"
    except (metadata.PackageNotFoundError, KeyError):
        license_ = "unknown"
    lineage = Lineage(
        data_file=RAW_DATA.as_posix(),
        data_md5=data_md5,
        data_sha256=sha256(RAW_DATA),
        vendored_file=vendored,
        vendored_sha256=content_sha256(project_dir / vendored) if (project_dir / vendored).is_file() else None,
        params_hash=params.digest(),
        git_commit=git_commit,
        model_name=model_name,
        license=license_,
    )
    sheet = project_dir / params.usecase.datasheet
    fetches = re.compile(r"<(?:script|link)\b[^>]*\b(?:src|href)=[\"']https?://", re.I)
    online = {p: len(fetches.findall((project_dir / p).read_text(errors="replace"))) for p in DATA_DOCS if p in files}
    return Evidence(reports, files, sheet.read_text() if sheet.is_file() else None, lineage, online)


def write_documents(project_dir: Path, evidence: Evidence, params: Params) -> dict[str, str]:
    """Write the documents, then the evidence page that links them; returns path → sha256 of each."""
    from steward.storage import sha256_file

    written = {}
    for path, text in render_documents(evidence, params).items():
        (project_dir / path).parent.mkdir(parents=True, exist_ok=True)
        (project_dir / path).write_text(text)
        written[path] = sha256_file(project_dir / path)
    page = project_dir / EVIDENCE_PAGE
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(evidence_page(replace(evidence, files={**evidence.files, **written}), params))
    return {**written, EVIDENCE_PAGE: sha256_file(page)}


def main() -> None:
    from tasks.stage import git_revision, stage_context, write_json

    ctx = stage_context()
    root = ctx.layout.project_dir
    evidence = gather(root, params=ctx.params, git_commit=git_revision(root), model_name=ctx.params.usecase.model_name)
    written = write_documents(root, evidence, ctx.params)
    lineage = {k: getattr(evidence.lineage, k) for k in ("data_md5", "params_hash", "git_commit")}
    missing = [stage for stage in facts.STAGES if stage not in evidence.reports]
    summary = {"documents": written, "inputs": evidence.files, "not_run": missing, "lineage": lineage}
    write_json(ctx.layout.report("document"), {**summary, "verdict": evidence.verdict})
    print(WROTE.format(count=len(written), verdict=evidence.verdict, missing=", ".join(missing) or "none"))


if __name__ == "__main__":
    from tasks.stage import run_stage

    run_stage(main)

"""The training flow: ingest → validate → prepare → train → evaluate (DVC stages) → register as candidate."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from steward.db import make_engine
from steward.layout import MODEL_FILE, Layout
from steward.params import load_params
from steward.registry import ModelVersion, Registry
from steward.settings import Settings
from steward.storage import Storage
from tasks.artifacts import markdown_table, publish, report_markdown
from tasks.dvc import DvcResult, locked_md5, reproduce
from tasks.ingest import (
    Snapshot,
    fetch_snapshot_task,
    push_snapshot_task,
    validate_snapshot_task,
    version_snapshot_task,
)
from tasks.register import MODEL_NAME, git_revision, register_candidate_task
from tasks.stage import read_report

STAGES = ("prepare", "train", "evaluate")  # after validate, which ingest runs


@dataclass(frozen=True)
class TrainResult:
    snapshot: Snapshot
    model: ModelVersion
    stages_run: tuple[str, ...]


@task(name="dvc-repro", task_run_name="dvc repro {stage}", cache_policy=NO_CACHE)
def repro_stage(stage: str, *, settings: Settings) -> DvcResult:
    """One DVC stage as one Prefect task, its output re-logged to the run."""
    return reproduce(stage, settings=settings)


@flow(name="train", log_prints=True)
def train_flow(data: str | None = None) -> TrainResult:
    """Train a candidate on a snapshot (a path or s3:// URI; default: the bundled German credit data)."""
    settings = Settings()
    layout = Layout(settings.project_dir)
    params = load_params(layout.params_file)
    source = data or str(layout.bundled_data)

    staging = fetch_snapshot_task(source, settings=settings, storage=Storage.from_settings(settings))
    snapshot = version_snapshot_task(staging, source=source, settings=settings)
    validate_snapshot_task(snapshot, settings=settings)
    push_snapshot_task(settings=settings)
    publish(
        "ingest",
        markdown_table({"source": source, "data md5 (DVC)": snapshot.md5, "new version": snapshot.changed}),
        description="The snapshot this run trained on",
    )
    publish(
        "stage-validate",
        report_markdown("validate", read_report(layout.report("validate")), ran=snapshot.changed),
        description="Data contracts",
    )

    ran = ["validate"] if snapshot.changed else []
    for stage in STAGES:
        result = repro_stage(stage, settings=settings)
        if result.ran(stage):
            ran.append(stage)
    evaluation = read_report(layout.report("evaluate"))
    publish(
        "stage-evaluate",
        report_markdown("evaluate", evaluation, ran="evaluate" in ran),
        description="Held-out evaluation",
    )

    model = register_candidate_task(
        model_file=layout.model_file,
        model_md5=locked_md5(settings.project_dir, stage="train", path=str(MODEL_FILE)),
        registry=Registry(make_engine(settings.db_url)),
        name=MODEL_NAME,
        data_md5=snapshot.md5,
        params_hash=params.digest(),
        git_commit=git_revision(settings.project_dir),
        flow_run_id=str(flow_run.get_id()) if flow_run.get_id() else None,
        metrics=evaluation.get("metrics", {}),
    )
    publish(
        "register",
        markdown_table(
            {
                "model": model.ref,
                "state": model.state.value,
                "BentoML tag": model.model_tag,
                "data md5": model.data_md5,
                "params hash": model.params_hash[:16],
                "git commit": model.git_commit or "none",
            }
        ),
        description="The registered candidate and its lineage",
    )
    print(f"registered {model.ref} as {model.state.value} ({model.model_tag})")
    return TrainResult(snapshot=snapshot, model=model, stages_run=tuple(ran))

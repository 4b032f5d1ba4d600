"""The training flow: ingest → validate → DVC stages (train, audits, gate, documents) → register the candidate.

A candidate the gate fails is registered and then rejected, with a `steward.gate.failed` event.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from dataclasses import dataclass
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from flows.signoff import sign_off
from steward.anchor import anchored
from steward.db import make_engine
from steward.keys import instance_key
from steward.layout import CANDIDATE_FILE, Layout
from steward.params import load_params
from steward.registry import ModelVersion, Registry, State
from steward.settings import Settings
from steward.storage import Storage
from steward.workspace import usecase_project
from tasks import stage_server
from tasks.artifacts import markdown_table, publish, report_markdown
from tasks.data.ingest import (
    Snapshot,
    fetch_snapshot,
    push_snapshot,
    validate_snapshot,
    version_snapshot,
)
from tasks.dvc import DvcError, DvcResult, Repro, dvc_env, locked_md5, pipeline_stages
from tasks.model.reference import REFERENCE_FILE
from tasks.model.register import act_on_verdict, register_candidate
from tasks.stage import git_revision, read_report

# Every dvc.yaml stage after `validate` (which ingest runs) is one task of the flow; these also get an artifact:
REPORTED = {"data_bias", "evaluate", "fairness", "mitigate", "explain", "robustness", "gate"}
INGESTED = "validate"  # DVC finds it unchanged: ingest has just run it on the snapshot
UNREPORTED = "`dvc repro` did not report stage(s) {stages}: the flow cannot tell whether they ran"
# Registering a new model unpickles it (scikit-learn) and stores it with BentoML: 2 s of imports. This process
# only waits while DVC runs the stages, so once one runs (the model may be new) it imports them meanwhile.
REGISTER_IMPORTS = (
    "sklearn.pipeline",
    "sklearn.compose",
    "sklearn.preprocessing",
    "sklearn.ensemble",
    "bentoml.sklearn",
)


@dataclass(frozen=True)
class TrainResult:
    snapshot: Snapshot
    model: ModelVersion
    stages_run: tuple[str, ...]
    gate: dict[str, Any]

    @property
    def rejected(self) -> bool:
        return self.model.state is State.REJECTED


@task(name="dvc-repro", task_run_name="dvc repro {stage}", cache_policy=NO_CACHE)
def reproduce_stage(stage: str, *, repro: Repro) -> DvcResult:
    """One DVC stage as one Prefect task, from DVC reaching it to DVC leaving it: its output re-logged here."""
    return repro.stage_output(stage)


def import_ahead(modules: tuple[str, ...]) -> None:
    """Import `modules` in a background thread (a later import of one waits for it, or finds it loaded)."""

    def load() -> None:
        for module in modules:
            with contextlib.suppress(Exception):  # the import where the module is used says what went wrong
                importlib.import_module(module)

    threading.Thread(target=load, name="import-ahead", daemon=True).start()


def reproduce_pipeline(layout: Layout, *, settings: Settings, server: stage_server.StageServer) -> list[str]:
    """`dvc repro`, once for the whole pipeline, each stage reported to Prefect as DVC reaches it (a task and,
    for REPORTED stages, an artifact); the stages that ran. A stage that fails fails its task and the flow."""
    ran: list[str] = []
    seen = {INGESTED}
    with Repro.start(settings=settings, env=server.env) as repro:
        while (stage := repro.next_stage()) is not None:
            if repro.runs_next and not ran:  # the first stage to run: the model may be new
                server.start(validate=False)
                import_ahead(REGISTER_IMPORTS)
            result = repro.stage_output(stage) if stage == INGESTED else reproduce_stage(stage, repro=repro)
            seen.add(stage)
            if result.ran(stage):
                ran.append(stage)
            if stage in REPORTED:
                publish(
                    f"stage-{stage.replace('_', '-')}",
                    report_markdown(stage, read_report(layout.report(stage)), ran=result.ran(stage)),
                    description=f"DVC stage {stage}",
                )
    if missing := [stage for stage in pipeline_stages(layout.project_dir) if stage not in seen]:
        raise DvcError(UNREPORTED.format(stages=", ".join(missing)))
    return ran


@flow(name="train", log_prints=True)
def train_flow(
    data: str | None = None, author: str | None = None, demo_signoff: bool = False, usecase: str | None = None
) -> TrainResult:
    """Train and audit a candidate on a snapshot (a path or s3:// URI; default: the use case's bundled data),
    then, if the gate passes, wait for sign-off. `author` (default: STEWARD_USER or the OS user) may not approve.
    `demo_signoff` opens a sign-off that `steward run`'s demo identities may answer (recorded as such).
    `usecase` trains another use case than params.yaml's, in a workspace that selects it (steward/workspace.py)."""
    settings = Settings()
    if usecase is not None:
        project = usecase_project(settings.project_dir, settings.state_dir, usecase)
        settings = settings.model_copy(update={"project_dir": project, "home": settings.state_dir})
    author = author or settings.user
    layout = Layout(settings.project_dir)
    params = load_params(layout.params_file)
    source = data or str(layout / params.usecase.dataset.file)

    # The stage server imports Great Expectations, pandas, scikit-learn & co. while ingest runs: the stages it
    # forks then start warm. With the same snapshot as before nothing may run: it stops until a stage does.
    with stage_server.running(cwd=settings.project_dir, env=dvc_env(settings)) as server:
        staging = fetch_snapshot(source, settings=settings, storage=Storage.from_settings(settings))
        snapshot = version_snapshot(staging, source=source, settings=settings)
        if not snapshot.changed:
            server.stop()
        validate_snapshot(snapshot, settings=settings, env=server.env)
        push_snapshot(settings=settings)
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
        ran = [INGESTED] if snapshot.changed else []
        ran += [stage for stage in reproduce_pipeline(layout, settings=settings, server=server) if stage not in ran]

    engine = make_engine(settings.db_url)
    ledger = anchored(engine, settings)
    registry = Registry(engine, ledger=ledger)
    gate = read_report(layout.report("gate"))
    model = register_candidate(
        model_file=layout.candidate_file,
        model_md5=locked_md5(settings.project_dir, stage="mitigate", path=str(CANDIDATE_FILE)),
        registry=registry,
        name=params.usecase.model_name,
        data_md5=snapshot.md5,
        params_hash=params.digest(),
        git_commit=git_revision(settings.project_dir),
        flow_run_id=str(flow_run.get_id()) if flow_run.get_id() else None,
        metrics={**read_report(layout.report("evaluate")).get("metrics", {}), "gate": gate.get("verdict")},
        reference_file=layout / REFERENCE_FILE,
        signer=instance_key(settings),
    )
    storage = Storage.from_settings(settings)
    model = act_on_verdict(model, gate, registry=registry, ledger=ledger, storage=storage, settings=settings)
    if model.state is State.CANDIDATE:
        model = sign_off(
            model,
            run=params.governance,
            usecase=params.usecase,
            author=author,
            settings=settings,
            registry=registry,
            ledger=ledger,
            demo=demo_signoff,
        )
    publish(
        "register",
        markdown_table(
            {
                "model": model.ref,
                "state": model.state.value,
                "gate": gate.get("verdict", "n/a"),
                "BentoML tag": model.model_tag,
                "data md5": model.data_md5,
                "params hash": model.params_hash[:16],
                "git commit": model.git_commit or "none",
                "evidence": str(layout / "reports/evidence/index.html"),
            }
        ),
        description="The registered candidate, its lineage and its evidence",
    )
    print(f"registered {model.ref} as {model.state.value} ({model.model_tag}); gate: {gate.get('verdict')}")
    return TrainResult(snapshot=snapshot, model=model, stages_run=tuple(ran), gate=gate)

"""A sign-off's evidence page, attached to its run as a Prefect artifact, so that an approver's browser opens it
from the Prefect UI (the pause form links it) rather than from a path on the machine that ran the flow.

The page is the document stage's offline HTML as the sign-off froze it, its images inlined, in a `rich`
artifact: the Prefect UI (its run pages, where the form is) shows it in a sandboxed frame that runs no script
and fetches nothing. The artifact's key names the model version and the evidence digest, and the run owns it,
so the form finds it again from the sign-off request in whichever process the run resumes.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path, PurePosixPath
from urllib.parse import unquote
from uuid import UUID

from prefect import get_client, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.actions import ArtifactCreate
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort
from prefect.settings import PREFECT_UI_URL
from prefect.utilities.context import get_task_and_flow_run_ids

from steward.layout import EVIDENCE_PAGE
from steward.signoff import Request

EVIDENCE_KEY = "evidence-{model}-{digest}"  # artifact keys: lowercase letters, digits and dashes
ARTIFACT_TYPE = "rich"  # HTML in a sandboxed iframe (the Prefect UI's ArtifactDataRich)
SANDBOX: list[str] = []  # every restriction: no script, no form, no navigation of the UI around it
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"  # nothing leaves the page
IMAGE_TYPES = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
DESCRIPTION = (
    "Evidence for the sign-off of **{model}** ({tier} risk tier), frozen with digest `{digest}`: every report "
    "and document of the run. Answer on [the run's page]({run}) (Resume)."
)
_RELATIVE_SRC = re.compile(r'src="([^":#?]+)"')  # a relative path: no scheme, no query, no fragment


def evidence_key(request: Request) -> str:
    """The artifact key of a sign-off's evidence, e.g. `evidence-credit-risk-v3-0123456789ab`."""
    model = re.sub(r"[^a-z0-9]+", "-", request.model.lower()).strip("-")
    return EVIDENCE_KEY.format(model=model, digest=request.evidence_digest[:12])


def evidence_link(request: Request, *, ui_url: str | None, artifact_id: UUID | None) -> str:
    """Where an approver opens the evidence: its artifact's page in the Prefect UI at `ui_url` (its key's page
    when the artifact is not known); with no UI (Prefect's ephemeral API), the page's file."""
    if not ui_url:
        return Path(request.evidence_page).as_uri()
    if artifact_id is None:
        return f"{ui_url.rstrip('/')}/artifacts/key/{evidence_key(request)}"
    return f"{ui_url.rstrip('/')}/artifacts/artifact/{artifact_id}"


def evidence_url(request: Request) -> str:
    """Where an approver opens this sign-off's evidence, as the Prefect API has it now: the artifact its run
    published (`publish_evidence`)."""
    ui_url = PREFECT_UI_URL.value()
    if not ui_url:
        return evidence_link(request, ui_url=None, artifact_id=None)
    published = ArtifactFilter(
        key=ArtifactFilterKey(any_=[evidence_key(request)]),
        flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(request.flow_run_id)]),
    )
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=published, sort=ArtifactSort.CREATED_DESC, limit=1)
    return evidence_link(request, ui_url=ui_url, artifact_id=found[0].id if found else None)


def self_contained(html: str, *, page: Path, root: Path) -> str:
    """`html` with each image it shows from under `root` inlined as a data: URI, so it renders without its files."""

    def inline(match: re.Match[str]) -> str:
        path = (page.parent / unquote(match.group(1))).resolve()
        kind = IMAGE_TYPES.get(path.suffix.lower())
        if kind is None or not path.is_relative_to(root.resolve()) or not path.is_file():
            return match.group(0)
        return f'src="data:{kind};base64,{base64.b64encode(path.read_bytes()).decode("ascii")}"'

    return _RELATIVE_SRC.sub(inline, html)


@task(name="publish-evidence", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[2, 5, 15])
def publish_evidence(request: Request) -> str:
    """Attach the sign-off's evidence page to its run; returns where an approver opens it."""
    page = Path(request.evidence_page)
    root = page.parents[len(PurePosixPath(EVIDENCE_PAGE).parts) - 1]  # the frozen evidence's folder
    html = self_contained(page.read_text(encoding="utf-8"), page=page, root=root)
    ui_url = PREFECT_UI_URL.value()
    run = f"{ui_url}/runs/flow-run/{request.flow_run_id}" if ui_url else request.flow_run_id
    task_run_id, _ = get_task_and_flow_run_ids()
    artifact = ArtifactCreate(
        key=evidence_key(request),
        type=ARTIFACT_TYPE,
        description=DESCRIPTION.format(model=request.model, tier=request.tier, digest=request.evidence_digest, run=run),
        data={"html": html, "sandbox": SANDBOX, "csp": CSP},
        flow_run_id=UUID(request.flow_run_id),
        task_run_id=task_run_id,
    )
    with get_client(sync_client=True) as client:
        created = client.create_artifact(artifact)
    return evidence_link(request, ui_url=ui_url, artifact_id=created.id)

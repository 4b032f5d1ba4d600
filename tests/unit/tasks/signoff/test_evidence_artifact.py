"""The sign-off's evidence as a Prefect artifact: its key, the link the form gives, the page made self-contained."""

import base64
import re
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import pytest

from steward.governance import SignoffPolicy
from steward.signoff import Request
from tasks.signoff.evidence_artifact import evidence_key, evidence_link, self_contained

DIGEST = "0123456789ab" + "cd" * 26


def _request(model="credit-risk:v3", page="/srv/steward/evidence/credit-risk-v3/reports/evidence/index.html"):
    return Request(
        model=model,
        flow_run_id="5f0c6a52-6f3c-4a5e-9d2b-3f4c2a1b0e9d",
        author="alice",
        tier="high",
        policy=SignoffPolicy(),
        evidence_digest=DIGEST,
        evidence_page=page,
        requested_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    ("model", "key"),
    [
        ("credit-risk:v3", "evidence-credit-risk-v3-0123456789ab"),
        ("Adult_Income:v12", "evidence-adult-income-v12-0123456789ab"),
    ],
)
def test_the_key_names_the_model_version_and_the_evidence_in_the_characters_prefect_allows(model, key):
    made = evidence_key(_request(model=model))
    assert made == key
    assert re.fullmatch(r"[a-z0-9-]+", made)


def test_the_form_links_the_artifact_in_the_ui_and_the_file_only_when_there_is_no_ui():
    request, artifact = _request(), UUID("01a236a7-4d5e-704c-95c1-b97bf73810eb")
    ui = "http://127.0.0.1:4317/"
    assert evidence_link(request, ui_url=ui, artifact_id=artifact) == f"{ui}artifacts/artifact/{artifact}"
    assert evidence_link(request, ui_url=ui, artifact_id=None) == (
        f"{ui}artifacts/key/evidence-credit-risk-v3-0123456789ab"
    )
    assert evidence_link(request, ui_url=None, artifact_id=artifact) == f"file://{request.evidence_page}"


def test_the_page_carries_its_images_and_leaves_everything_else_as_it_was(tmp_path: Path):
    root = tmp_path / "frozen"
    page = root / "reports" / "evidence" / "index.html"
    page.parent.mkdir(parents=True)
    plot = bytes(range(256)) * 3
    (root / "reports" / "calibration.png").write_bytes(plot)
    (tmp_path / "outside.png").write_bytes(b"not evidence")
    html = (
        '<img src="../calibration.png"><img src="../missing.png"><img src="../../../outside.png">'
        '<img src="https://example.org/x.png"><a href="../gate.json">gate</a><a href="#files">files</a>'
    )
    made = self_contained(html, page=page, root=root)
    sources = re.findall(r'src="([^"]*)"', made)
    assert sources[0].startswith("data:image/png;base64,")
    assert base64.b64decode(sources[0].removeprefix("data:image/png;base64,")) == plot
    assert sources[1:] == ["../missing.png", "../../../outside.png", "https://example.org/x.png"]
    assert made.endswith('<a href="../gate.json">gate</a><a href="#files">files</a>')

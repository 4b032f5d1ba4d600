"""The evidence page in a real browser: `python -m tasks.document.document` on a copy of the project's reports,
then headless Chromium, offline, dumps the DOM and takes a screenshot."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from support import BIN, PROJECT_DIR, run, steward_env

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
BROWSER_TIMEOUT = 120  # seconds, per Chromium run
SECTIONS = (
    "gate",
    "risks",
    "validation",
    "data-bias",
    "performance",
    "fairness",
    "mitigation",
    "explainability",
    "robustness",
    "documents",
    "files",
)
INPUTS = (
    "params.yaml",
    "dvc.yaml",
    "data/raw/snapshot.csv.dvc",
    "data/raw/snapshot.csv",
    "data/german_credit.csv",
    "usecases/german_credit/usecase.yaml",
    "usecases/german_credit/datasheet.md",
)
OUTPUTS = ("reports/document", "reports/evidence", "reports/document.json")


def chromium_or_skip() -> Path:
    """Chromium, or a skip on a developer's machine without it; in CI its absence is a failure."""
    if CHROMIUM.is_file():
        return CHROMIUM
    message = f"{CHROMIUM} is missing (Debian: apt-get install -y chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(message + ": CI must install it, not skip this test")
    pytest.skip(message)


def browse(page: Path, *, profile: Path, extra: list[str]) -> subprocess.CompletedProcess[str]:
    """Headless Chromium on a local page, with every network lookup refused."""
    args = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={profile}",
        *extra,
        page.as_uri(),
    ]
    done = subprocess.run(args, capture_output=True, text=True, timeout=BROWSER_TIMEOUT, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


class Links(HTMLParser):
    """Every href and src of a DOM, the id of every element, and the text of #verdict."""

    def __init__(self) -> None:
        super().__init__()
        self.targets: list[str] = []
        self.ids: set[str] = set()
        self.verdict = ""
        self._in_verdict = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.targets += [v for k, v in attrs if k in ("href", "src") and v]
        if values.get("id"):
            self.ids.add(str(values["id"]))
        self._in_verdict = values.get("id") == "verdict"

    def handle_data(self, data: str) -> None:
        if self._in_verdict:
            self.verdict += data

    def handle_endtag(self, tag: str) -> None:
        self._in_verdict = False


def local_targets(dom: str, *, page: Path) -> list[Path]:
    """The files a page's links and images point at; fails on anything that is not a local file."""
    parser = Links()
    parser.feed(dom)
    files = []
    for target in parser.targets:
        parts = urlsplit(target)
        if not parts.path:  # an in-page anchor
            continue
        assert parts.scheme in ("", "file") and not parts.netloc, f"{page.name} refers outside: {target}"
        path = Path(unquote(parts.path)) if parts.scheme == "file" else page.parent / unquote(parts.path)
        files.append(path.resolve())
    return files


@pytest.fixture
def documented(tmp_path: Path) -> Path:
    """A folder holding the project's inputs and reports (not its documents), after the document stage."""
    root = tmp_path / "project"
    for name in INPUTS:
        if (PROJECT_DIR / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT_DIR / name, root / name)
    shutil.copytree(
        PROJECT_DIR / "reports", root / "reports", ignore=shutil.ignore_patterns("document*", "evidence", "data_docs")
    )
    for name in OUTPUTS:
        assert not (root / name).exists()
    # Data Docs are git-ignored (they carry timestamps): render them as a clone would, with the validate stage.
    shutil.copy2(PROJECT_DIR / "data/german_credit.csv", root / "data/raw/snapshot.csv")
    shutil.copytree(PROJECT_DIR / "expectations", root / "expectations")
    validated = run([str(BIN / "python"), "-m", "tasks.data.validate"], cwd=root, env=steward_env(root), timeout=300)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    done = run([str(BIN / "python"), "-m", "tasks.document.document"], cwd=root, env=steward_env(root), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return root


def test_the_evidence_page_renders_offline_with_the_verdict_every_section_and_working_links(documented, tmp_path):
    chromium_or_skip()
    summary = json.loads((documented / "reports" / "document.json").read_text())
    page = documented / "reports" / "evidence" / "index.html"

    dom = browse(page, profile=tmp_path / "profile-dom", extra=["--dump-dom"]).stdout
    parser = Links()
    parser.feed(dom)
    assert parser.verdict.strip() == summary["verdict"].upper()
    assert dom.index('id="verdict"') < dom.index('<section id="gate"'), "the verdict comes first"
    assert set(SECTIONS) <= parser.ids
    targets = local_targets(dom, page=page)
    assert targets, "the page links its evidence"
    missing = [str(p) for p in targets if not p.is_file()]
    assert not missing, f"links to missing files: {missing}"
    for path, digest in {**summary["inputs"], **summary["documents"]}.items():
        if path != "reports/evidence/index.html":
            assert digest in dom, f"the page does not show the sha256 of {path}"

    screenshot = tmp_path / "page.png"
    browse(page, profile=tmp_path / "profile-shot", extra=[f"--screenshot={screenshot}", "--window-size=1280,2000"])
    from PIL import Image

    with Image.open(screenshot) as image:
        assert image.size == (1280, 2000)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert screenshot.stat().st_size > 20_000
    assert colours is None or len(colours) > 100, "the screenshot is (nearly) blank"


@pytest.mark.parametrize("document", ["model_card.html", "impact_assessment.html"])
def test_each_html_document_renders_offline_with_working_links(documented, tmp_path, document):
    chromium_or_skip()
    page = documented / "reports" / "document" / document
    dom = browse(page, profile=tmp_path / "profile", extra=["--dump-dom"]).stdout
    assert re.search(r'data-verdict="(pass|fail|not run)"', dom)
    missing = [str(p) for p in local_targets(dom, page=page) if not p.is_file()]
    assert not missing, f"{document} links to missing files: {missing}"

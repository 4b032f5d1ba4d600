"""What every DVC stage entry point starts from: settings, params and the project layout."""

from __future__ import annotations

import gc
import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steward.layout import Layout
from steward.params import Params, load_params
from steward.settings import Settings

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REPORT_DIGITS = 12  # significant digits of a float in a report
REPORT_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class StageContext:
    settings: Settings
    params: Params
    layout: Layout


def stage_context() -> StageContext:
    """Read the environment and params.yaml once, for one stage run."""
    settings = Settings()
    layout = Layout(settings.project_dir)
    return StageContext(settings=settings, params=load_params(layout.params_file), layout=layout)


def run_stage(main: Callable[[], None]) -> None:
    """A stage process's entry point (`if __name__ == "__main__"`): run `main`, then spare the exit its last
    garbage collection: the objects left are frozen, not collected one by one (with pandas and scikit-learn
    loaded that took 0.4 s, with Great Expectations 1 s, for memory the ending process gives back anyway)."""
    main()
    gc.freeze()


def read_report(path: Path) -> dict[str, Any]:
    """A JSON report, or {} when the stage has not written it."""
    return dict(json.loads(path.read_text())) if path.is_file() else {}


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    """Write a report deterministically (sorted keys, floats to 12 significant digits) so that an unchanged run
    gives an equal file, on any CPU: numpy's vectorised sums differ in the last bit between instruction sets."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = _rounded({"schema_version": REPORT_SCHEMA_VERSION, **payload})
    path.write_text(json.dumps(body, indent=2, sort_keys=True, allow_nan=False) + "\n")
    return path


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.{REPORT_DIGITS}g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


def git_revision(project_dir: Path) -> str | None:
    """HEAD's commit, suffixed `-dirty` when tracked files differ from it; None outside git."""

    def git(*args: str) -> str | None:
        done = subprocess.run(["git", *args], cwd=project_dir, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"{commit}-dirty" if dirty else commit


def save_figure(fig: Figure, path: Path, **options: Any) -> Path:
    """Save a plot without a version stamp (same plot, same bytes: DVC sees no change) and free it."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None}, **options)
    plt.close(fig)
    return path

"""Where the ML pipeline's files live inside the project: the paths dvc.yaml names, in one place."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

RAW_DATA = Path("data/raw/snapshot.csv")
PREPARED_TRAIN = Path("data/prepared/train.parquet")
PREPARED_TEST = Path("data/prepared/test.parquet")
MODEL_FILE = Path("models/model.joblib")
CANDIDATE_FILE = Path("models/candidate.joblib")  # the model going forward: MODEL_FILE, or it mitigated
REPORTS = Path("reports")
EVIDENCE_PAGE = "reports/evidence/index.html"  # the run's evidence, one offline page (document stage)


@dataclass(frozen=True)
class Layout:
    """The pipeline's paths resolved against one project folder."""

    project_dir: Path

    def __truediv__(self, relative: Path | str) -> Path:
        return self.project_dir / relative

    @property
    def raw_data(self) -> Path:
        return self.project_dir / RAW_DATA

    @property
    def raw_data_dvc(self) -> Path:
        return self.project_dir / f"{RAW_DATA}.dvc"

    @property
    def prepared_train(self) -> Path:
        return self.project_dir / PREPARED_TRAIN

    @property
    def prepared_test(self) -> Path:
        return self.project_dir / PREPARED_TEST

    @property
    def model_file(self) -> Path:
        return self.project_dir / MODEL_FILE

    @property
    def candidate_file(self) -> Path:
        return self.project_dir / CANDIDATE_FILE

    @property
    def params_file(self) -> Path:
        return self.project_dir / "params.yaml"

    def report(self, stage: str, suffix: str = ".json") -> Path:
        return self.project_dir / REPORTS / f"{stage}{suffix}"

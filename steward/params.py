"""params.yaml as a typed model: one section per stage, parsed once, every bad key or value named."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from steward.errors import StewardError
from steward.governance import GovernanceParams
from steward.usecase import UseCase, UseCaseError, load_usecase

PARAMS_NOT_FOUND = "params file not found: {path}"
PARAMS_NOT_YAML = "{path} is not valid YAML: {error}"
PARAMS_NOT_MAPPING = "{path} must hold a mapping of stage sections, got {kind}"
PARAMS_INVALID = "{path} is invalid:\n{problems}"

Fraction = Annotated[float, Field(gt=0, lt=1)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PrepareParams(Section):
    test_size: Fraction = 0.3
    seed: int = 42
    exclude_protected: bool = Field(
        default=True, description="false trains on the protected attributes too (for comparison only)."
    )


class GradientBoostingParams(Section):
    n_estimators: int = Field(default=150, ge=1, le=5000)
    learning_rate: float = Field(default=0.05, gt=0, le=1)
    max_depth: int = Field(default=3, ge=1, le=16)
    subsample: float = Field(default=1.0, gt=0, le=1)


class LogisticRegressionParams(Section):
    C: float = Field(default=1.0, gt=0)
    max_iter: int = Field(default=2000, ge=10)


BUILT_IN_MODELS = ("gradient_boosting", "logistic_regression")
IMPORT_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")
NOT_A_MODEL = "must be one of {built_in} or a classifier's import path package.module:ClassName"
NOT_AN_IMPORT_PATH = "keys must be import paths package.module:ClassName, got {key!r}"


class TrainParams(Section):
    model: str = Field(
        default="gradient_boosting",
        description="A built-in name, or any classifier with predict_proba by import path (tasks/model/estimator.py).",
    )
    seed: int = 42
    gradient_boosting: GradientBoostingParams = GradientBoostingParams()
    logistic_regression: LogisticRegressionParams = LogisticRegressionParams()
    estimator_kwargs: dict[str, dict[str, Any]] = Field(
        default={
            "lightgbm:LGBMClassifier": {
                "n_estimators": 200,
                "learning_rate": 0.05,
                "num_leaves": 15,
                "min_child_samples": 20,
                "deterministic": True,
                "n_jobs": 1,
                "verbose": -1,
            }
        },
        description="Keyword arguments of the classifier train.model names by import path, keyed by that path.",
    )

    @field_validator("model")
    @classmethod
    def _model_named(cls, model: str) -> str:
        if model not in BUILT_IN_MODELS and not IMPORT_PATH.fullmatch(model):
            raise ValueError(NOT_A_MODEL.format(built_in=", ".join(BUILT_IN_MODELS)))
        return model

    @field_validator("estimator_kwargs")
    @classmethod
    def _keyed_by_import_path(cls, kwargs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for key in kwargs:
            if not IMPORT_PATH.fullmatch(key):
                raise ValueError(NOT_AN_IMPORT_PATH.format(key=key))
        return kwargs


class EvaluateParams(Section):
    calibration_bins: int = Field(default=10, ge=2, le=100)
    threshold: Fraction = Field(default=0.5, description="Probability of the positive label at which to approve.")


class DataBiasParams(Section):
    n_boot: int = Field(default=1000, ge=50, le=100_000)
    ci_level: Fraction = 0.95
    min_group_size: int = Field(default=30, ge=1, description="Smaller groups are flagged, not reported as fact.")
    seed: int = 0


class MitigationParams(Section):
    enabled: bool = True
    method: Literal["threshold_optimizer", "exponentiated_gradient"] = Field(
        default="exponentiated_gradient",
        description="exponentiated_gradient decides without the protected attribute; threshold_optimizer reads it "
        "at decision time, so the policy must allow that (governance.decision_time_attributes).",
    )
    constraint: Literal["demographic_parity", "equalized_odds", "true_positive_rate_parity"] = "demographic_parity"
    attribute: str | None = Field(
        default=None, description="The sensitive attribute the mitigation constrains (default: the first one)."
    )


class FairnessParams(Section):
    n_boot: int = Field(default=1000, ge=50, le=100_000)
    ci_level: Fraction = 0.95
    min_group_size: int = Field(default=30, ge=1)
    seed: int = 0
    mitigation: MitigationParams = MitigationParams()


class ExplainParams(Section):
    sample_size: int = Field(default=500, ge=10, description="Rows explained for global and per-group importance.")
    background_size: int = Field(default=200, ge=10, description="Background rows for the linear explainer.")
    local_examples: int = Field(default=5, ge=0)
    top_k_reasons: int = Field(default=4, ge=1, le=20)
    proxy_nmi_threshold: float = Field(
        default=0.1, ge=0, le=1, description="Share of a protected attribute's entropy one feature explains."
    )
    proxy_auc_threshold: float = Field(default=0.7, gt=0.5, le=1, description="Probe AUC flagging a proxy.")
    seed: int = 0


class RobustnessParams(Section):
    numeric_noise: float = Field(default=0.05, gt=0, le=1, description="Relative size of numeric perturbations.")
    n_perturbations: int = Field(default=5, ge=1, le=100)
    max_flip_rate: Fraction = Field(default=0.05, description="Decision flips under noise above this are flagged.")
    min_slice_size: int = Field(default=30, ge=1)
    seed: int = 0


class ServeParams(Section):
    """The serving process: when to refer a decision to a person, and the guards on every endpoint."""

    review_band: tuple[float, float] = Field(
        default=(0.45, 0.55),
        description="P(favourable) in [low, high): the decision is `referred` and a review case opens.",
    )
    rate_per_second: float = Field(default=50.0, gt=0, description="Requests per second per client (token bucket).")
    burst: int = Field(default=100, ge=1, description="Requests a client may send at once.")
    max_body_bytes: int = Field(default=16384, ge=512, le=1_048_576)
    log_flush_seconds: float = Field(default=0.1, gt=0, le=10, description="Prediction log batch interval.")
    ledger_interval_seconds: float = Field(
        default=60.0,
        ge=0,
        le=300,
        description="Decision batches are sealed in one decisions.interval ledger record this often (at most the "
        "anchor's checkpoint interval, so no decision waits longer than the ledger's own tail to be vouched for).",
    )
    log_backlog: int = Field(
        default=20_000, ge=1, description="Decisions that may wait for the database; past it /predict answers 503."
    )
    log_stall_seconds: float = Field(
        default=5.0, gt=0, description="Seconds decisions may wait with nothing reaching the database before 503s."
    )
    journal_segment_seconds: float = Field(
        default=300.0,
        gt=0,
        le=3600,
        description="A decision leaves the local journal at most this long after reaching the database (the journal "
        "holds personal data: an erasure reaches its copies within this).",
    )
    max_open_contests: int = Field(
        default=3, ge=1, description="Open contest cases one decision may have at once; /contest refuses more (409)."
    )

    @model_validator(mode="after")
    def _band_ordered(self) -> ServeParams:
        low, high = self.review_band
        if not 0 <= low <= high <= 1:
            raise ValueError(f"serve.review_band must be [low, high] within [0, 1], got {list(self.review_band)}")
        return self


class AnalysisParams(Section):
    """The canary analysis's hypotheses and error rates (tasks/rollout/canary.py; its e-processes refuse a design
    outside these ranges too, naming the setting)."""

    alpha: float = Field(default=0.05, gt=0, lt=0.5, description="Family-wise false-alarm rate (Bonferroni).")
    beta: float = Field(default=0.05, gt=0, lt=0.5, description="Pass rate of a candidate at the breach effect.")
    selection_ratio: float = Field(
        default=0.5, gt=0, lt=1, description="Breach: a group approved at this x production."
    )
    rate_gap: float = Field(default=0.2, gt=0, lt=1, description="Breach: a group's TPR this much lower (FPR higher).")
    latency_factor: float = Field(default=1.5, gt=1, description="Slow: above this x production's p95 latency.")
    slow_share: float = Field(default=0.25, gt=0.05, lt=1, description="Breach: this share of requests slow.")
    min_samples: int = Field(default=20, ge=5, description="Per test, the candidate's observations before a pass.")
    metrics: tuple[Literal["selection_rate", "tpr", "fpr", "latency"], ...] = (
        "selection_rate",
        "tpr",
        "fpr",
        "latency",
    )


class StepParams(Section):
    requests: int = Field(ge=1, description="At least this many of the model's decisions before the step ends.")
    seconds: float = Field(gt=0, description="The step's time limit: an analysis still inconclusive rolls back.")


class ShadowParams(StepParams):
    min_agreement: float = Field(default=0.8, ge=0, le=1, description="Share of mirrored decisions like production's.")


class RolloutParams(Section):
    """Shadow, then the canary weights, then production (flows/rollout.py)."""

    shadow: ShadowParams = ShadowParams(requests=500, seconds=900)
    weights: tuple[float, ...] = Field(default=(0.2, 0.5), min_length=1)
    step: StepParams = StepParams(requests=200, seconds=1800)
    poll_seconds: float = Field(default=0.5, gt=0, le=60, description="How often the log is analysed.")
    lease_seconds: float = Field(
        default=60.0,
        ge=1,
        le=3600,
        description="A rollout not renewing its lease this long is withdrawn (steward/leases.py).",
    )
    analysis: AnalysisParams = AnalysisParams()

    @model_validator(mode="after")
    def _weights_rise(self) -> RolloutParams:
        w = list(self.weights)
        if any(not 0 < x < 1 for x in w) or w != sorted(set(w)):
            raise ValueError(f"rollout.weights must rise strictly within (0, 1), got {w}")
        if self.lease_seconds < 3 * self.poll_seconds:  # the watch renews at its looks, at least every third
            raise ValueError(
                f"rollout.lease_seconds ({self.lease_seconds:g}) must be at least 3 x rollout.poll_seconds "
                f"({self.poll_seconds:g}): the watch renews the lease at its looks"
            )
        return self


class MonitorParams(Section):
    """Monitoring a served model (tasks/monitor/window.py, tasks/monitor/drift.py)."""

    psi: float = Field(default=0.2, gt=0, description="A numeric input drifts above this population stability index.")
    ks: float = Field(default=0.1, gt=0, lt=1, description="... or above this Kolmogorov-Smirnov statistic.")
    js: float = Field(
        default=0.1, gt=0, lt=1, description="A categorical input drifts above this Jensen-Shannon distance."
    )
    prediction_psi: float = Field(default=0.2, gt=0, description="Prediction drift: PSI of P(favourable).")
    selection_gap: float = Field(default=0.1, gt=0, lt=1, description="A group's approval rate this far from training.")
    error_gap: float = Field(default=0.1, gt=0, lt=1, description="A group's error rate this far from training.")
    attribution_js: float = Field(default=0.1, gt=0, lt=1, description="SHAP attribution shares, JS distance.")
    max_p95_latency_ms: float = Field(default=250.0, gt=0)
    max_error_rate: float = Field(default=0.01, ge=0, lt=1, description="Share of requests the model raised on.")
    min_group_size: int = Field(default=50, ge=1, description="A group judged only with this many decisions.")
    seed: int = Field(default=0, description="The window rows explained for attribution drift.")
    task_runner: Literal["thread", "dask"] = Field(
        default="thread",
        description="dask: each model's window on a Dask cluster (prefect-dask), a Parquet window's partitions too.",
    )
    dask_workers: int = Field(default=2, ge=1, le=64, description="Worker processes of a local cluster.")
    dask_address: str | None = Field(
        default=None,
        pattern=r"^(tcp|tls)://[^\s/]+:\d+$",
        description="A running Dask scheduler (tcp://HOST:PORT) instead of a local cluster; its workers need "
        "Steward's environment and S3 credentials.",
    )


class RetrainParams(Section):
    """What a retraining run adds to its snapshot (tasks/retrain/assemble.py)."""

    review_labels: bool = Field(
        default=True, description="Label resolved review cases without an outcome with the reviewer's decision."
    )


class RetentionParams(Section):
    """How long personal data in the prediction log is kept, in days, table by table (steward/erasure.py)."""

    decisions: int = Field(
        default=730,
        ge=1,
        description="A decision keeps its subject (pseudonym) this long; then it loses it with its inputs and "
        "groups, and only the anonymous decision stays under the ledger's seal.",
    )
    inputs: int = Field(default=365, ge=1, description="What the applicant sent (monitoring, retraining).")
    groups: int = Field(default=365, ge=1, description="The protected attributes kept for fairness monitoring.")
    outcomes: int = Field(default=730, ge=1, description="True outcomes reported through /feedback.")
    reviews: int = Field(default=730, ge=1, description="Contest texts and reviewers' notes.")

    @model_validator(mode="after")
    def _parts_within_decision(self) -> RetentionParams:
        for part in ("inputs", "groups", "outcomes", "reviews"):
            if getattr(self, part) > self.decisions:
                raise ValueError(
                    f"privacy.retention.{part} ({getattr(self, part)} days) must not exceed privacy.retention."
                    f"decisions ({self.decisions}): once a decision loses its subject, nothing about it can be found "
                    "to erase"
                )
        return self


class PrivacyParams(Section):
    """Personal data: retention periods, enforced by `steward retention apply` and the scheduled retention flow."""

    retention: RetentionParams = RetentionParams()


class Params(Section):
    """The whole of params.yaml."""

    usecase: UseCase = Field(description="The decision problem: usecases/<name>/usecase.yaml, named in params.yaml.")
    prepare: PrepareParams = PrepareParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    data_bias: DataBiasParams = DataBiasParams()
    fairness: FairnessParams = FairnessParams()
    explain: ExplainParams = ExplainParams()
    robustness: RobustnessParams = RobustnessParams()
    governance: GovernanceParams = GovernanceParams()
    serve: ServeParams = ServeParams()
    rollout: RolloutParams = RolloutParams()
    monitor: MonitorParams = MonitorParams()
    retrain: RetrainParams = RetrainParams()
    privacy: PrivacyParams = PrivacyParams()

    @model_validator(mode="after")
    def _mitigation_attribute_audited(self) -> Params:
        attribute = self.fairness.mitigation.attribute
        if attribute is not None and attribute not in self.usecase.sensitive:
            raise ValueError(
                f"fairness.mitigation.attribute {attribute!r} is not one of the use case's sensitive attributes "
                f"{self.usecase.sensitive}"
            )
        return self

    @model_validator(mode="after")
    def _decision_time_use_allowed(self) -> Params:
        """A mitigation that reads a protected attribute when deciding runs only where the policy allows it."""
        mitigation = self.fairness.mitigation
        if not mitigation.enabled or mitigation.method != "threshold_optimizer":
            return self
        attribute = self.mitigation_attribute
        if attribute not in self.governance.decision_time_attributes.get(self.usecase.name, {}):
            raise ValueError(
                f"fairness.mitigation.method threshold_optimizer reads {attribute!r} when deciding, which the policy "
                f"does not allow for {self.usecase.name}: set governance.decision_time_attributes."
                f"{self.usecase.name}.{attribute} to the reason it is allowed, or use exponentiated_gradient, which "
                "decides without it"
            )
        return self

    def decision_time_attribute(self) -> tuple[str, str] | None:
        """(attribute, the policy's reason) when the mitigation reads a protected attribute when deciding."""
        mitigation = self.fairness.mitigation
        if not mitigation.enabled or mitigation.method != "threshold_optimizer":
            return None
        attribute = self.mitigation_attribute
        return attribute, self.governance.decision_time_attributes[self.usecase.name][attribute]

    @property
    def mitigation_attribute(self) -> str:
        """The attribute the mitigation constrains: as configured, else the use case's first sensitive one."""
        return self.fairness.mitigation.attribute or self.usecase.sensitive[0]

    def digest(self) -> str:
        """sha256 of the canonical JSON of every value, defaults included: the params hash in lineage."""
        canonical = json.dumps(self.model_dump(by_alias=True, mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class ParamsError(StewardError, ValueError):
    """params.yaml is missing, not YAML, or names a key or value Steward does not accept."""


def _location(loc: tuple[str | int, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def parse_params(
    raw: object, *, source: str = "params.yaml", project_dir: Path | None = None, usecase: str | None = None
) -> Params:
    """Validate an already-loaded mapping; errors name each dotted key with what was wrong.

    `usecase` in the mapping is a use case's name, loaded from `project_dir` (default: the folder of
    `source`); `usecase=` chooses another one for this run (`steward train --usecase NAME`).
    """
    if not isinstance(raw, dict):
        raise ParamsError(PARAMS_NOT_MAPPING.format(path=source, kind=type(raw).__name__))
    raw = dict(raw)
    name = usecase if usecase is not None else raw.get("usecase")
    if isinstance(name, str):
        try:
            raw["usecase"] = load_usecase(project_dir or Path(source).resolve().parent, name)
        except UseCaseError as exc:
            raise ParamsError(PARAMS_INVALID.format(path=source, problems=f"  - usecase: {exc}")) from None
    elif name is not None and not isinstance(name, UseCase):
        raise ParamsError(PARAMS_INVALID.format(path=source, problems=f"  - usecase: a use case's name (got {name!r})"))
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = _location(err["loc"])
            got = "" if err["type"] == "missing" else f" (got {err['input']!r})"
            message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(f"  - {key}: {message}{got}")
        raise ParamsError(PARAMS_INVALID.format(path=source, problems="\n".join(problems))) from None


def load_params(path: Path, *, usecase: str | None = None) -> Params:
    """Read and validate params.yaml (with `usecase` in place of the one it names, if given)."""
    if not path.is_file():
        raise ParamsError(PARAMS_NOT_FOUND.format(path=path))
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(PARAMS_NOT_YAML.format(path=path, error=exc)) from None
    return parse_params(raw, source=str(path), project_dir=path.resolve().parent, usecase=usecase)

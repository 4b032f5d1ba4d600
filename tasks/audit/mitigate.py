"""Mitigate stage: when the gate fails on fairness and params allow it, try fairlearn's mitigation.

The model taken forward is written to models/candidate.joblib: the mitigated one only if it passes
the gate, otherwise the base model. Both audits are reported side by side in reports/mitigate.json.

Mitigated decisions are made deterministic: fairlearn's mitigators may randomise between two
thresholds; a decision about a person must be reproducible, so Steward grants the favourable outcome when its
probability under the mitigated rule is at least 0.5, and audits exactly that rule. The attribute constrained
is params.mitigation_attribute (fairness.mitigation.attribute, else the use case's first sensitive one).

ExponentiatedGradient (the default) decides without the protected attribute. ThresholdOptimizer reads it at
decision time, which params refuse unless governance.decision_time_attributes allows that attribute for the use
case with a reason (steward/params.py); the report then records both.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from steward.params import MitigationParams, Params
from tasks.audit.gate import Scope
from tasks.data.features import LABEL

# Mitigation runs before the robustness stage: it compares the models on the gate's AUC and fairness checks.
MITIGATION_CHECKS: tuple[Scope, ...] = ("auc", "fairness")
MISSING_ATTRIBUTE = "the mitigation attribute {attribute!r} is not a column of the feature frame"


class MitigatedModel:
    """A base pipeline under a fairlearn mitigator, with a pipeline's `predict_proba` and `feature_names_in_`.

    `predict_proba` gives the probability of the favourable outcome under the mitigated rule (not a calibrated
    risk).
    ThresholdOptimizer needs the sensitive attribute at decision time: it is then one of the input columns.
    """

    def __init__(self, *, base: Pipeline, mitigator: Any, method: str, attribute: str) -> None:
        self.base = base
        self.mitigator = mitigator
        self.method = method
        self.attribute = attribute
        base_columns = list(base.feature_names_in_)
        self.needs_attribute = method == "threshold_optimizer"
        extra = [attribute] if self.needs_attribute and attribute not in base_columns else []
        self.feature_names_in_ = np.array(base_columns + extra, dtype=object)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        columns = list(self.base.feature_names_in_)
        if self.needs_attribute:
            approve = self.mitigator._pmf_predict(frame[columns], sensitive_features=frame[self.attribute].to_numpy())[
                :, 1
            ]
        else:
            approve = self.mitigator._pmf_predict(self.base[:-1].transform(frame[columns]))[:, 1]
        return np.column_stack([1.0 - approve, approve])


def fit_mitigation(
    base: Pipeline, train: pd.DataFrame, *, mitigation: MitigationParams, attribute: str, seed: int
) -> MitigatedModel:
    """Fit the mitigator chosen in params on the training split, constraining `attribute`."""
    if attribute not in train.columns:
        raise KeyError(MISSING_ATTRIBUTE.format(attribute=attribute))
    columns = list(base.feature_names_in_)
    sensitive = train[attribute].to_numpy()  # an array: its name may clash with a model column
    method: Literal["threshold_optimizer", "exponentiated_gradient"] = mitigation.method
    if method == "threshold_optimizer":
        from fairlearn.postprocessing import ThresholdOptimizer

        mitigator: Any = ThresholdOptimizer(
            estimator=base, constraints=mitigation.constraint, prefit=True, predict_method="predict_proba"
        )
        mitigator.fit(train[columns], train[LABEL], sensitive_features=sensitive)
    else:
        from fairlearn.reductions import (
            DemographicParity,
            EqualizedOdds,
            ExponentiatedGradient,
            TruePositiveRateParity,
        )
        from sklearn.base import clone

        constraint = {
            "demographic_parity": DemographicParity,
            "equalized_odds": EqualizedOdds,
            "true_positive_rate_parity": TruePositiveRateParity,
        }[mitigation.constraint]()
        estimator = clone(base[-1])
        mitigator = ExponentiatedGradient(estimator, constraints=constraint)
        mitigator.fit(base[:-1].transform(train[columns]), train[LABEL], sensitive_features=sensitive)
    return MitigatedModel(base=base, mitigator=mitigator, method=method, attribute=attribute)


def fairness_audit(model: Any, test: pd.DataFrame, *, params: Params) -> dict[str, Any]:
    """The fairness stage's audit of any model with predict_proba on the held-out split."""
    from tasks.audit.fairness import audit
    from tasks.model.evaluate import positive_proba

    usecase, fairness = params.usecase, params.fairness
    return audit(
        test[LABEL].to_numpy(),
        positive_proba(model, test),
        test[usecase.sensitive],
        threshold=params.evaluate.threshold,
        n_boot=fairness.n_boot,
        ci_level=fairness.ci_level,
        min_group_size=fairness.min_group_size,
        seed=fairness.seed,
        attributes=usecase.sensitive,
        intersections=usecase.intersections,
    )


def main() -> None:
    import joblib

    from tasks.audit.bootstrap import attribute_name, audited
    from tasks.audit.gate import decide
    from tasks.model.evaluate import metrics, positive_proba
    from tasks.stage import read_report, stage_context, write_json

    ctx = stage_context()
    layout, params = ctx.layout, ctx.params
    base = joblib.load(layout.model_file)
    test = pd.read_parquet(layout.prepared_test)
    evaluation = read_report(layout.report("evaluate"))  # the base model's held-out figures, computed once
    base_fairness = read_report(layout.report("fairness"))
    attributes = [attribute_name(c) for c in audited(params.usecase.sensitive, params.usecase.intersections)]
    judge = partial(decide, governance=params.governance, attributes=attributes, checks=MITIGATION_CHECKS)
    base_verdict = judge(evaluation=evaluation, fairness=base_fairness)
    report: dict[str, Any] = {
        "base": {"verdict": base_verdict.to_dict()},
        "selected": "base",
        "applied": False,
    }
    chosen: Any = base
    fairness_failed = any(c.attribute is not None for c in base_verdict.failed)
    if not fairness_failed:
        report["reason"] = "the base model passes the gate's fairness checks: no mitigation needed"
    elif not params.fairness.mitigation.enabled:
        report["reason"] = "the base model fails the fairness checks and mitigation is disabled in params"
    else:
        mitigation = params.fairness.mitigation
        attribute = params.mitigation_attribute
        mitigated = fit_mitigation(
            base,
            pd.read_parquet(layout.prepared_train),
            mitigation=mitigation,
            attribute=attribute,
            seed=params.fairness.seed,
        )
        audit_after = fairness_audit(mitigated, test, params=params)
        after_eval = {"metrics": metrics(test[LABEL].to_numpy(), positive_proba(mitigated, test), threshold=0.5)}
        verdict_after = judge(evaluation=after_eval, fairness=audit_after)
        reads = params.decision_time_attribute()
        report.update(
            applied=True,
            method=mitigation.method,
            constraint=mitigation.constraint,
            attribute=attribute,
            decision_time_attribute={"attribute": reads[0], "allowed_because": reads[1]} if reads else None,
            mitigated={"verdict": verdict_after.to_dict(), "fairness": audit_after, "evaluation": after_eval},
        )
        if verdict_after.verdict == "pass":
            chosen, report["selected"] = mitigated, "mitigated"
            report["reason"] = "the mitigated model passes the gate: it goes forward"
        else:
            report["reason"] = "the mitigated model fails the gate too: the base model goes forward to be rejected"
    layout.project_dir.joinpath("models").mkdir(exist_ok=True)
    joblib.dump(chosen, layout.project_dir / "models/candidate.joblib")
    write_json(layout.report("mitigate"), report)
    print(f"mitigate: {report['reason']}")


if __name__ == "__main__":
    from tasks.stage import run_stage

    run_stage(main)

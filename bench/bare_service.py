"""The baseline of bench/serving.py: a bare BentoML service around the same model (BENCH_MODEL_TAG), with
the same request schema, and nothing else: no guards, routing, reasons, review band or prediction log."""

from __future__ import annotations

import os
from typing import Any

import bentoml

from steward.layout import Layout
from steward.params import load_params
from steward.settings import Settings
from tasks.data.features import AGE_GROUP, age_groups
from tasks.serving.schema import Application, to_frame

_params = load_params(Layout(Settings().project_dir).params_file)


@bentoml.service(name="bare", workers=1, threads=4, traffic={"timeout": 30})
class Bare:
    def __init__(self) -> None:
        self.model = bentoml.sklearn.load_model(os.environ["BENCH_MODEL_TAG"])

    @bentoml.api(input_spec=Application)
    def predict(self, **fields: Any) -> dict[str, Any]:
        frame = to_frame(Application(**fields))
        frame[AGE_GROUP] = age_groups(frame[_params.data.age_column], threshold=_params.data.age_threshold)
        probability = float(self.model.predict_proba(frame[list(self.model.feature_names_in_)])[0, 1])
        return {"probability": probability, "decision": "approve" if probability >= 0.5 else "decline"}

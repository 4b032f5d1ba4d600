"""The baseline of bench/serving.py: a bare BentoML service around the same model (BENCH_MODEL_TAG), with
the same request schema, and nothing else: no guards, routing, reasons, review band or prediction log."""

from __future__ import annotations

import os
from typing import Any

import bentoml

from steward.layout import Layout
from steward.params import load_params
from steward.settings import Settings
from tasks.serving.schema import to_frame, usecase_request_model

_settings = Settings()
_params = load_params(Layout(_settings.project_dir).params_file)
Application = usecase_request_model(_settings.project_dir, _params.usecase)


@bentoml.service(name="bare", workers=1, threads=4, traffic={"timeout": 30})
class Bare:
    def __init__(self) -> None:
        self.model = bentoml.sklearn.load_model(os.environ["BENCH_MODEL_TAG"])

    @bentoml.api(input_spec=Application)
    def predict(self, **fields: Any) -> dict[str, Any]:
        frame = to_frame(Application(**fields))
        for name, group in _params.usecase.groups.items():
            frame[name] = group.assign(frame[group.column])
        probability = float(self.model.predict_proba(frame[list(self.model.feature_names_in_)])[0, 1])
        return {"probability": probability, "decision": "approve" if probability >= 0.5 else "decline"}

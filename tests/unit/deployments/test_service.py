"""The service's request handling follows the use case params.yaml serves: its contract, its feedback values and the
frame the model reads (no model, no database: pure helpers)."""

from __future__ import annotations

import pytest

from tasks.data.features import read_snapshot
from tests.conftest import PROJECT_DIR


@pytest.fixture(scope="module")
def service():
    import deployments.service as service  # imports BentoML and reads params.yaml: only here

    return service


def test_the_service_serves_the_use_case_of_params_yaml_with_its_derived_contract(service):
    from tasks.serving.requests import label_values
    from tasks.serving.schema import usecase_request_model

    spec = service._usecase
    derived = usecase_request_model(PROJECT_DIR, spec)
    assert list(service.Application.model_fields) == list(derived.model_fields)
    assert service.Application.model_json_schema() == derived.model_json_schema()
    schema = service.Outcome.model_json_schema()
    assert schema["properties"]["outcome"]["enum"] == list(label_values(spec))
    assert set(service._spaces) == set(spec.actionable) and not set(service._spaces) & spec.never_changed


def test_the_frame_holds_the_request_and_its_groups(service):
    spec = service._usecase
    rows = read_snapshot(PROJECT_DIR / spec.dataset.file).drop(columns=[spec.label.column]).head(3)
    for record in rows.astype(object).where(rows.notna(), None).to_dict(orient="records"):
        frame = service._frame(record)
        assert list(frame.columns) == [*rows.columns, *spec.groups]
        for name in spec.groups:
            assert frame[name].iloc[0] == spec.logged_groups(record)[name]


def test_a_decision_is_the_rule_of_params_yaml(service):
    threshold = service._params.evaluate.threshold
    low, high = service._params.serve.review_band
    assert service._decision(min(low, threshold) - 0.01) == "decline"
    assert service._decision(max(high, threshold)) == "approve"
    assert service._decision(low) == "referred"

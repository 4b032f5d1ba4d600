import numpy as np
import pytest

from steward.params import MitigationParams
from tasks.audit.mitigate import MISSING_ATTRIBUTE, MitigatedModel, fit_mitigation
from tasks.data.features import to_feature_frame
from tasks.data.prepare import split
from tasks.model.evaluate import positive_proba
from tasks.model.train import fit
from tests.usecases import parse_for
from usecases.german_credit.generator import generate_applications

PARAMS = parse_for({"prepare": {"exclude_protected": False}, "train": {"gradient_boosting": {"n_estimators": 40}}})


@pytest.fixture(scope="module")
def biased():
    """A model that sees sex, trained on labels biased against women: its approvals differ by sex."""
    frame = to_feature_frame(generate_applications(4000, seed=2, bias=1.0), data=PARAMS.data)
    train, test = split(frame, params=PARAMS)
    return fit(train, params=PARAMS), train, test


def _selection_gap(decisions, sex):
    """Approval rate of men minus that of women, computed directly."""
    return decisions[sex == "male"].mean() - decisions[sex == "female"].mean()


@pytest.mark.parametrize("method", ["threshold_optimizer", "exponentiated_gradient"])
def test_demographic_parity_mitigation_narrows_the_approval_gap(biased, method):
    base, train, test = biased
    before = _selection_gap((positive_proba(base, test) >= 0.5).astype(float), test["sex"].to_numpy())
    mitigation = MitigationParams(method=method, constraint="demographic_parity", attribute="sex")
    mitigated = fit_mitigation(base, train, mitigation=mitigation, seed=0)
    after = _selection_gap((positive_proba(mitigated, test) >= 0.5).astype(float), test["sex"].to_numpy())
    assert before > 0.1
    assert abs(after) < before / 2
    proba = mitigated.predict_proba(test)
    assert proba.shape == (len(test), 2) and np.allclose(proba.sum(axis=1), 1.0)


def test_the_threshold_optimizer_needs_the_attribute_as_an_input(biased):
    base, train, _ = biased
    mitigated = fit_mitigation(base, train, mitigation=MitigationParams(attribute="sex"), seed=0)
    assert isinstance(mitigated, MitigatedModel)
    assert "sex" in mitigated.feature_names_in_
    assert set(base.feature_names_in_) <= set(mitigated.feature_names_in_)


def test_an_unknown_attribute_is_named(biased):
    base, train, _ = biased
    with pytest.raises(KeyError, match="religion"):
        fit_mitigation(base, train, mitigation=MitigationParams(attribute="religion"), seed=0)
    assert "religion" in MISSING_ATTRIBUTE.format(attribute="religion")

import numpy as np
import pytest

from steward.params import MitigationParams
from tasks.audit.mitigate import MISSING_ATTRIBUTE, MitigatedModel, fit_mitigation
from tasks.data.features import read_snapshot, to_feature_frame
from tasks.data.prepare import split
from tasks.model.evaluate import positive_proba
from tasks.model.train import fit
from tests.conftest import PROJECT_DIR
from tests.usecases import SHIPPED, params_for
from usecases.german_credit.generator import generate_applications


@pytest.fixture(scope="module", params=SHIPPED)
def biased(request):
    """A model that sees the protected attributes, trained on labels that differ by the mitigation attribute.

    German: 4,000 synthetic applications biased against women; Adult: 4,000 rows of the census, as they are.
    """
    params = params_for(
        request.param, prepare={"exclude_protected": False}, train={"gradient_boosting": {"n_estimators": 40}}
    )
    if request.param == "german_credit":
        raw = generate_applications(4000, seed=2, bias=1.0)
    else:
        raw = read_snapshot(PROJECT_DIR / params.usecase.dataset.file).sample(n=4000, random_state=0)
    train, test = split(to_feature_frame(raw, usecase=params.usecase), params=params)
    return params, fit(train, params=params), train, test


def _selection_gap(decisions, groups):
    """Largest minus smallest approval rate over the groups, computed directly."""
    rates = [decisions[groups == g].mean() for g in np.unique(groups)]
    return max(rates) - min(rates)


@pytest.mark.parametrize("method", ["threshold_optimizer", "exponentiated_gradient"])
def test_demographic_parity_mitigation_narrows_the_approval_gap(biased, method):
    params, base, train, test = biased
    attribute = params.mitigation_attribute
    assert attribute == params.usecase.sensitive[0]  # no attribute configured: the first sensitive one
    groups = test[attribute].to_numpy()
    before = _selection_gap((positive_proba(base, test) >= 0.5).astype(float), groups)
    mitigation = MitigationParams(method=method, constraint="demographic_parity")
    mitigated = fit_mitigation(base, train, mitigation=mitigation, attribute=attribute, seed=0)
    after = _selection_gap((positive_proba(mitigated, test) >= 0.5).astype(float), groups)
    assert before > 0.1
    # Steward's deterministic rule (approve when the mitigated P >= 0.5) is not the mitigator's randomised one:
    # on Adult the threshold optimizer's gap only narrows (0.13 to 0.08 on these rows), on German it halves.
    assert after < (before / 2 if params.usecase.name == "german_credit" else before)
    proba = mitigated.predict_proba(test)
    assert proba.shape == (len(test), 2) and np.allclose(proba.sum(axis=1), 1.0)


def test_the_threshold_optimizer_needs_the_attribute_as_an_input(biased):
    params, base, train, _ = biased
    attribute = params.mitigation_attribute
    mitigated = fit_mitigation(base, train, mitigation=MitigationParams(), attribute=attribute, seed=0)
    assert isinstance(mitigated, MitigatedModel) and mitigated.attribute == attribute
    assert attribute in mitigated.feature_names_in_
    assert set(base.feature_names_in_) <= set(mitigated.feature_names_in_)


def test_an_unknown_attribute_is_named(biased):
    _, base, train, _ = biased
    with pytest.raises(KeyError, match="religion"):
        fit_mitigation(base, train, mitigation=MitigationParams(), attribute="religion", seed=0)
    assert "religion" in MISSING_ATTRIBUTE.format(attribute="religion")

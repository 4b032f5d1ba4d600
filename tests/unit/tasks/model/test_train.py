import numpy as np
import pytest

from tasks.data.features import to_feature_frame
from tasks.data.prepare import split
from tasks.model.evaluate import positive_proba
from tasks.model.train import fit
from tests.usecases import parse_for
from usecases.german_credit.generator import generate_applications


@pytest.fixture(scope="module")
def frames():
    params = parse_for({})
    frame = to_feature_frame(generate_applications(3000, seed=1), usecase=params.usecase)
    return split(frame, params=params)


@pytest.mark.parametrize("model", ["gradient_boosting", "logistic_regression"])
def test_fit_is_seeded_and_never_sees_protected_attributes(frames, model):
    params = parse_for({"train": {"model": model, "gradient_boosting": {"n_estimators": 30}}})
    train, test = frames
    first = fit(train, params=params)
    second = fit(train, params=params)
    assert not {"sex", "age", "foreign_worker", "age_group", "label"} & set(first.feature_names_in_)
    np.testing.assert_array_equal(positive_proba(first, test), positive_proba(second, test))


def test_the_model_ignores_a_protected_attribute_it_was_not_given(frames):
    params = parse_for({"train": {"gradient_boosting": {"n_estimators": 30}}})
    train, test = frames
    model = fit(train, params=params)
    flipped = test.assign(sex=np.where(test["sex"] == "female", "male", "female"))
    np.testing.assert_array_equal(positive_proba(model, test), positive_proba(model, flipped))

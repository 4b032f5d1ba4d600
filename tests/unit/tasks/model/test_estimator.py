"""train.model → the classifier: built-in names, import paths, every refusal; LightGBM through the whole lifecycle."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMClassifier
from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

from steward.params import ParamsError
from tasks.data.features import to_feature_frame
from tasks.data.prepare import split
from tasks.data.suites import read_suite
from tasks.model.estimator import EstimatorError, build_estimator, estimator_kwargs, family
from tasks.model.reference import PROBABILITY, reference_of
from tasks.model.train import fit
from tasks.serving.attribution import aggregate, build_explainer, encoded_sources, explain_rows
from tasks.serving.counterfactual import actionable_spaces, counterfactual
from tasks.serving.reasons import never_cited, reason_codes
from tests.conftest import PROJECT_DIR
from tests.usecases import parse_for, usecase

GERMAN_CSV = Path(__file__).resolve().parents[4] / "data/german_credit.csv"
LIGHTGBM = "lightgbm:LGBMClassifier"


def _train(**train):
    return parse_for({"train": train}).train


# --- resolution -------------------------------------------------------------------------------------------


def test_the_built_in_names_build_their_scikit_learn_class_with_their_section_and_the_seed():
    gb = build_estimator(_train(gradient_boosting={"n_estimators": 7, "max_depth": 2}, seed=3))
    assert type(gb) is GradientBoostingClassifier
    assert (gb.n_estimators, gb.max_depth, gb.learning_rate, gb.random_state) == (7, 2, 0.05, 3)
    lr = build_estimator(_train(model="logistic_regression", logistic_regression={"C": 0.5}, seed=9))
    assert type(lr) is LogisticRegression
    assert (lr.C, lr.max_iter, lr.random_state) == (0.5, 2000, 9)


def test_an_import_path_builds_that_class_with_its_own_keyword_arguments():
    train = _train(
        model="sklearn.ensemble:RandomForestClassifier",
        estimator_kwargs={"sklearn.ensemble:RandomForestClassifier": {"n_estimators": 11, "max_depth": 4}},
        seed=5,
    )
    forest = build_estimator(train)
    assert type(forest) is RandomForestClassifier
    assert (forest.n_estimators, forest.max_depth, forest.random_state) == (11, 4, 5)
    assert estimator_kwargs(train) == {"n_estimators": 11, "max_depth": 4}  # what the model card lists


def test_random_state_is_the_seed_only_when_accepted_and_not_given():
    given = "sklearn.ensemble:RandomForestClassifier"
    assert build_estimator(_train(model=given, estimator_kwargs={given: {"random_state": 1}}, seed=5)).random_state == 1
    knn = build_estimator(_train(model="sklearn.neighbors:KNeighborsClassifier", seed=5))  # takes no random_state
    assert type(knn) is KNeighborsClassifier and "random_state" not in knn.get_params()


def test_the_shipped_lightgbm_entry_is_small_deterministic_and_single_threaded():
    lgbm = build_estimator(_train(model=LIGHTGBM, seed=42))
    assert type(lgbm) is LGBMClassifier
    got = lgbm.get_params()
    assert (got["random_state"], got["n_jobs"], got["deterministic"], got["verbose"]) == (42, 1, True, -1)
    assert got["num_leaves"] < 31 and got["n_estimators"] == 200  # smaller trees than LightGBM's defaults


@pytest.mark.parametrize(
    ("model", "kwargs", "message"),
    [
        (
            "no_such_package.models:Classifier",
            {},
            "train.model 'no_such_package.models:Classifier': no module 'no_such_package.models' can be imported",
        ),
        ("sklearn.ensemble:NoSuchForest", {}, "module 'sklearn.ensemble' has no attribute 'NoSuchForest'"),
        ("sklearn:__version__", {}, "'__version__' is a str, not a class"),
        (
            "sklearn.preprocessing:StandardScaler",
            {},
            "StandardScaler has no predict_proba; a classifier needs fit and predict_proba",
        ),
        ("sklearn.svm:SVC", {}, "SVC has no predict_proba"),  # only with probability=True
        (
            "sklearn.neighbors:KNeighborsClassifier",
            {"n_trees": 3},
            "KNeighborsClassifier rejects the keyword arguments {'n_trees': 3}",
        ),
    ],
)
def test_each_bad_model_is_refused_with_a_message_naming_train_model(model, kwargs, message):
    with pytest.raises(EstimatorError, match=r"^train\.model ") as refused:
        build_estimator(_train(model=model, estimator_kwargs={model: kwargs}))
    assert message in str(refused.value)


@pytest.mark.parametrize("model", ["xgboost", "lightgbm:", "lightgbm:LGBM Classifier", "1lightgbm:LGBMClassifier"])
def test_params_refuse_a_model_that_is_neither_built_in_nor_an_import_path(model):
    with pytest.raises(ParamsError, match=r"train\.model: .*gradient_boosting, logistic_regression or .* import path"):
        parse_for({"train": {"model": model}})
    with pytest.raises(ParamsError, match=r"train\.estimator_kwargs: .*keys must be import paths"):
        parse_for({"train": {"estimator_kwargs": {model: {}}}})


@pytest.mark.parametrize(
    ("estimator", "expected"),
    [
        (GradientBoostingClassifier(), "tree"),
        (GradientBoostingClassifier(loss="exponential"), "other"),  # its raw score is not the log-odds
        (HistGradientBoostingClassifier(), "tree"),
        (LGBMClassifier(), "tree"),
        (LGBMClassifier(objective="cross_entropy"), "other"),
        (LogisticRegression(), "linear"),
        (RandomForestClassifier(), "other"),  # SHAP's tree explainer gives probabilities for forests
        (KNeighborsClassifier(), "other"),
    ],
)
def test_the_family_decides_the_explainer(estimator, expected):
    assert family(estimator) == expected


@pytest.mark.parametrize(
    ("model", "scaled"),
    [
        ("gradient_boosting", False),
        (LIGHTGBM, False),
        ("logistic_regression", True),
        ("sklearn.neighbors:KNeighborsClassifier", True),
    ],
)
def test_numeric_inputs_are_standardised_for_every_family_but_trees(german, model, scaled):
    params = parse_for({"train": {"model": model, "gradient_boosting": {"n_estimators": 5}}})
    train, _ = split(german, params=params)
    scaler = fit(train, params=params)[0].named_transformers_["numeric"]
    assert isinstance(scaler, StandardScaler) == scaled


# --- LightGBM end to end on German credit ----------------------------------------------------------------


@pytest.fixture(scope="module")
def german() -> pd.DataFrame:
    return to_feature_frame(pd.read_csv(GERMAN_CSV), usecase=usecase())


@pytest.fixture(scope="module")
def lightgbm(german):
    params = parse_for({"train": {"model": LIGHTGBM}})
    train, test = split(german, params=params)
    return params, fit(train, params=params), train, test


def _encoded(model, frame: pd.DataFrame) -> np.ndarray:
    return model[0].transform(frame[list(model.feature_names_in_)])


def test_lightgbm_fits_reproducibly_and_ranks_better_than_chance(lightgbm):
    params, model, train, test = lightgbm
    assert type(model[-1]) is LGBMClassifier
    again = fit(train, params=params)
    np.testing.assert_array_equal(model.predict_proba(test)[:, 1], again.predict_proba(test)[:, 1])
    assert roc_auc_score(test["label"], model.predict_proba(test)[:, 1]) > 0.7


def test_lightgbm_shap_adds_up_to_the_boosters_raw_score_and_to_the_logit_of_its_probability(lightgbm):
    _, model, _, test = lightgbm
    attribution = explain_rows(model, test)  # the tree explainer needs no background
    assert attribution.explainer == "tree"
    total = attribution.base_value + attribution.values.sum(axis=1)
    encoded = _encoded(model, test)
    np.testing.assert_allclose(total, model[-1].booster_.predict(encoded, raw_score=True), atol=1e-9)
    p = model.predict_proba(test)[:, 1]
    np.testing.assert_allclose(total, np.log(p / (1 - p)), atol=1e-8)


def test_lightgbm_reason_codes_are_its_strongest_contributions_toward_the_decision(lightgbm):
    params, model, _, test = lightgbm
    rows = test.iloc[:40]
    summed = aggregate(explain_rows(model, rows).values, encoded_sources(model[0]))
    p = model.predict_proba(rows)[:, 1]
    top_k = params.explain.top_k_reasons
    for i in range(len(rows)):
        decision = "approve" if p[i] >= params.evaluate.threshold else "decline"
        contributions = summed.iloc[i].to_dict()
        hidden = never_cited(params.usecase)
        reasons = reason_codes(contributions, rows.iloc[i].to_dict(), decision=decision, top_k=top_k, protected=hidden)
        sign = 1 if decision == "approve" else -1
        toward = sorted((c for f, c in contributions.items() if sign * c > 0 and f not in hidden), key=abs)
        assert [r["contribution"] for r in reasons] == toward[::-1][:top_k]


def test_a_lightgbm_counterfactual_flips_the_decision_when_scored_again(lightgbm, german):
    params, model, _, test = lightgbm
    threshold = params.evaluate.threshold
    p = model.predict_proba(test)[:, 1]
    declined = test.iloc[[int(np.flatnonzero(p < threshold)[0])]]
    spaces = actionable_spaces(params.usecase, read_suite(PROJECT_DIR / params.usecase.raw_suite))
    found = counterfactual(
        model, declined, actionable=spaces, threshold=threshold, protected=params.usecase.never_changed
    )
    assert found is not None and found.original_decision == "decline" and found.decision == "approve"
    changed = declined.copy()
    for change in found.changes:
        changed[change["feature"]] = pd.array([change["to"]], dtype=declined[change["feature"]].dtype)
    assert model.predict_proba(changed)[0, 1] >= threshold > model.predict_proba(declined)[0, 1]


def test_the_lightgbm_monitoring_reference_holds_its_probabilities_and_group_rates(lightgbm):
    params, model, train, test = lightgbm
    built = reference_of(model, train, test, params=params, attributions={"checking_status": 3.0, "purpose": 1.0})
    p = model.predict_proba(test)[:, 1]
    deciles = np.unique(np.quantile(p, np.linspace(0.1, 0.9, 9)))
    np.testing.assert_allclose(built["prediction"]["edges"], deciles)
    assert built["prediction"]["n"] == len(test)
    low, high = params.serve.review_band
    approved = (p >= params.evaluate.threshold) & ~((p >= low) & (p < high))
    for value in ("female", "male"):
        member = (test["sex"] == value).to_numpy()
        assert built["groups"][f"sex={value}"]["selection_rate"] == pytest.approx(approved[member].mean())
    assert built["attributions"] == {"checking_status": 0.75, "purpose": 0.25}
    assert set(built["inputs"]) == set(model.feature_names_in_) and PROBABILITY not in built["inputs"]


def test_the_service_decides_a_lightgbm_request_with_its_probability_and_attributions(lightgbm):
    from deployments.service import Loaded  # BentoML: imported by this test only

    _, model, train, test = lightgbm
    loaded = Loaded("credit-risk:1", model, "md5", build_explainer(model, background=train))
    row = test.iloc[[3]]
    probability, contributions = loaded.decide(row)
    assert probability == pytest.approx(model.predict_proba(row)[0, 1], abs=1e-12)
    assert set(contributions) == set(model.feature_names_in_)
    raw = model[-1].booster_.predict(_encoded(model, row), raw_score=True)[0]
    base = float(np.ravel(loaded.explainer.shap.expected_value)[0])
    assert base + sum(contributions.values()) == pytest.approx(raw, abs=1e-9)

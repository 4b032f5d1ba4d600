import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from tasks.audit.explain import explain, importance, plot_all, probe_column, proxy_table, synthetic_examples
from tasks.data.features import read_snapshot, to_feature_frame
from tasks.data.prepare import split
from tasks.model.evaluate import positive_proba
from tasks.model.train import fit
from tasks.serving.attribution import PROBABILITY_CLIP, aggregate, build_explainer, encoded_sources, explain_rows
from tests.conftest import PROJECT_DIR
from tests.usecases import SHIPPED, params_for, parse_for, usecase

GERMAN_CSV = Path(__file__).resolve().parents[4] / "data/german_credit.csv"
PROTECTED = {"sex", "age", "age_group", "foreign_worker"}


@pytest.fixture(scope="module")
def german() -> pd.DataFrame:
    return to_feature_frame(pd.read_csv(GERMAN_CSV), usecase=usecase())


def _params(model: str):
    return parse_for(
        {"train": {"model": model, "gradient_boosting": {"n_estimators": 60}}, "explain": {"sample_size": 120}}
    )


EXPLAINER = {"gradient_boosting": "tree", "logistic_regression": "linear", "lightgbm:LGBMClassifier": "tree"}
KNN = "sklearn.neighbors:KNeighborsClassifier"  # neither a tree nor a linear model: the permutation explainer


@pytest.fixture(scope="module", params=list(EXPLAINER))
def fitted(request, german):
    params = _params(request.param)
    train, test = split(german, params=params)
    return params, fit(train, params=params), train, test


def test_additivity_on_the_real_pipeline(fitted):
    params, model, train, test = fitted
    background = train.sample(200, random_state=0)
    attribution = explain_rows(model, test, background=background)
    reused = build_explainer(model, background=background)  # built once, as serving does
    np.testing.assert_array_equal(explain_rows(model, test, explainer=reused).values, attribution.values)
    assert attribution.explainer == EXPLAINER[params.train.model]
    # independent of decision_function: the log-odds of the pipeline's own predict_proba
    p = positive_proba(model, test)
    logit = np.log(p) - np.log1p(-p)
    np.testing.assert_allclose(attribution.base_value + attribution.values.sum(axis=1), logit, atol=1e-8)
    assert attribution.additivity_error < 1e-6
    # summing one-hot columns back to their source column keeps each row's total
    aggregated = aggregate(attribution.values, encoded_sources(model[0]))
    assert sorted(aggregated.columns) == sorted(model.feature_names_in_)
    np.testing.assert_allclose(aggregated.sum(axis=1), attribution.values.sum(axis=1), atol=1e-12)


def test_linear_shap_equals_coefficient_times_distance_from_the_background_mean():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(50, 10, 400), "b": rng.normal(0, 3, 400)})
    y = (frame["a"] / 10 - frame["b"] / 3 + rng.normal(0, 1, 400) > 5).astype(int)
    pre = ColumnTransformer([("numeric", StandardScaler(), ["a", "b"])], verbose_feature_names_out=False)
    model = Pipeline([("preprocess", pre), ("model", LogisticRegression())]).fit(frame, y)
    background, rows = frame.iloc[:150], frame.iloc[150:]

    attribution = explain_rows(model, rows, background=background)

    z = (frame - frame.mean()) / frame.std(ddof=0)  # the scaler's transform, recomputed by hand
    coef, intercept = model[-1].coef_[0], model[-1].intercept_[0]
    expected = coef * (z.iloc[150:].to_numpy() - z.iloc[:150].to_numpy().mean(axis=0))
    np.testing.assert_allclose(attribution.values, expected, atol=1e-10)
    assert attribution.base_value == pytest.approx(intercept + coef @ z.iloc[:150].to_numpy().mean(axis=0))


def test_a_stump_gets_its_output_minus_the_training_mean_on_the_split_feature_and_zero_elsewhere():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"a": rng.uniform(0, 1, 300), "b": rng.uniform(0, 1, 300)})
    y = ((frame["a"] > 0.6) ^ (rng.uniform(0, 1, 300) < 0.1)).astype(int)  # only `a` carries signal
    pre = ColumnTransformer([("numeric", "passthrough", ["a", "b"])], verbose_feature_names_out=False)
    stump = GradientBoostingClassifier(n_estimators=1, max_depth=1, learning_rate=1.0, random_state=0)
    model = Pipeline([("preprocess", pre), ("model", stump)]).fit(frame, y)
    assert model[-1].estimators_[0, 0].tree_.feature[0] == 0  # the one split is on `a`

    attribution = explain_rows(model, frame.iloc[:50])

    # One tree, one split: the expected output is the cover-weighted mean of the two leaves, i.e. the mean
    # output over the training rows; the split feature takes all of the difference.
    f = model.decision_function(frame)
    np.testing.assert_allclose(attribution.values[:, 0], f[:50] - f.mean(), atol=1e-12)
    np.testing.assert_allclose(attribution.values[:, 1], 0.0, atol=1e-15)
    assert attribution.base_value == pytest.approx(f.mean(), abs=1e-12)


def test_one_hot_columns_sum_back_to_their_source_column():
    frame = pd.DataFrame(
        {"n": [1.0, 2.0, 3.0, 4.0], "c": ["x", "y", "z", "x"], "d": ["p", "q", "p", "q"], "skip": [0, 0, 0, 0]}
    )
    pre = ColumnTransformer(
        [
            ("num", StandardScaler(), ["n"]),
            ("cat", OneHotEncoder(sparse_output=False), ["c"]),
            ("cat_drop", OneHotEncoder(drop="first", sparse_output=False), ["d"]),
        ],
        verbose_feature_names_out=False,
    ).fit(frame)
    sources = encoded_sources(pre)
    assert sources == ["n", "c", "c", "c", "d"]  # c: x, y, z; d: q only (p dropped)
    values = np.arange(20, dtype=float).reshape(4, 5) - 7
    aggregated = aggregate(values, sources)
    for i in range(4):
        assert aggregated.loc[i, "n"] == values[i, 0]
        assert aggregated.loc[i, "c"] == values[i, 1] + values[i, 2] + values[i, 3]
        assert aggregated.loc[i, "d"] == values[i, 4]
    ranked = importance(aggregated)
    assert [r["feature"] for r in ranked] == ["c", "d", "n"]
    assert ranked[0]["mean_abs_shap"] == pytest.approx(np.abs(values[:, 1:4].sum(axis=1)).mean())


def test_personal_status_is_flagged_as_a_proxy_of_sex_and_a_shuffled_copy_is_not(german):
    params = parse_for({})
    frame = german.assign(shuffled_status=np.random.default_rng(7).permutation(german["personal_status"].to_numpy()))
    table = proxy_table(frame, features=["personal_status", "shuffled_status"], attributes=["sex"], params=params)
    by_feature = {row["feature"]: row for row in table}

    proxy = by_feature["personal_status"]
    share = german["sex"].value_counts(normalize=True).to_numpy()
    # personal_status determines sex (A92 only women, no A95), so MI = H(sex)
    assert proxy["mutual_information"] == pytest.approx(float(-(share * np.log(share)).sum()), abs=1e-6)
    assert proxy["probe_auc"] == pytest.approx(1.0)
    assert proxy["flagged"]

    independent = by_feature["shuffled_status"]
    assert independent["normalized_mutual_information"] < params.explain.proxy_nmi_threshold
    assert independent["probe_auc"] < params.explain.proxy_auc_threshold
    assert not independent["flagged"]


def _entropy(values: pd.Series) -> float:
    share = values.value_counts(normalize=True).to_numpy()
    return float(-(share * np.log(share)).sum())


@pytest.fixture(scope="module", params=SHIPPED)
def shipped(request):
    """A use case's params and up to 5,000 rows of its vendored data as a feature frame."""
    params = params_for(request.param)
    raw = read_snapshot(PROJECT_DIR / params.usecase.dataset.file)
    raw = raw.sample(n=min(5000, len(raw)), random_state=0).reset_index(drop=True)
    return params, to_feature_frame(raw, usecase=params.usecase)


def test_each_declared_proxy_is_flagged_with_its_probe_auc(shipped):
    params, frame = shipped
    for feature, attributes in params.usecase.proxies.items():
        for attribute in attributes:
            shuffled = np.random.default_rng(7).permutation(frame[feature].to_numpy())
            table = proxy_table(
                frame.assign(shuffled=shuffled), features=[feature, "shuffled"], attributes=[attribute], params=params
            )
            by_feature = {row["feature"]: row for row in table}
            proxy = by_feature[feature]
            # I(F; A) = H(A) + H(F) - H(F, A), by plain counting
            joint = frame[feature].astype(str) + "\x00" + frame[attribute].astype(str)
            mi = _entropy(frame[attribute]) + _entropy(frame[feature]) - _entropy(joint)
            assert proxy["mutual_information"] == pytest.approx(mi, abs=1e-6)
            assert proxy["normalized_mutual_information"] == pytest.approx(mi / _entropy(frame[attribute]), abs=1e-6)
            # the probe's out-of-fold AUC is close to the in-sample AUC of P(attribute | feature) by groupby
            positive = frame[attribute] == sorted(frame[attribute].unique())[-1]
            in_sample = roc_auc_score(positive, positive.groupby(frame[feature]).transform("mean"))
            assert proxy["probe_auc"] == pytest.approx(in_sample, abs=0.01)
            assert proxy["probe_auc"] > params.explain.proxy_auc_threshold and proxy["flagged"]
            assert not by_feature["shuffled"]["flagged"]


def test_a_group_s_source_column_is_probed_through_its_group(shipped):
    params, frame = shipped
    usecase = params.usecase
    for name, group in usecase.groups.items():
        assert probe_column(group.column, usecase=usecase, columns=frame.columns) == name
        # the probe of age predicts age_group: the same AUC as probing age_group itself
        features = [c for c in frame.columns if c not in {*usecase.not_features, *usecase.protected, "label"}][:3]
        by_source = proxy_table(frame, features=features, attributes=[group.column], params=params)
        by_group = proxy_table(frame, features=features, attributes=[name], params=params)
        auc = {r["feature"]: r["probe_auc"] for r in by_group}
        assert {r["feature"]: r["probe_auc"] for r in by_source} == auc
    for attribute in usecase.protected:
        if attribute not in {g.column for g in usecase.groups.values()}:
            assert probe_column(attribute, usecase=usecase, columns=frame.columns) == attribute


def test_unsupported_models_and_broken_additivity_are_clear_errors(german):
    params = _params("logistic_regression")
    train, test = split(german, params=params)
    model = fit(train, params=params)

    class Shifted(LogisticRegression):
        def decision_function(self, X):
            return super().decision_function(X) + 0.01

    shifted = copy.deepcopy(model)
    shifted[-1].__class__ = Shifted  # same coefficients, log-odds off by 0.01
    with pytest.raises(ValueError, match="SHAP additivity fails"):
        explain_rows(shifted, test, background=train)
    with pytest.raises(ValueError, match="needs background rows"):
        explain_rows(model, test)
    forest = Pipeline([("preprocess", model[0]), ("model", RandomForestClassifier(n_estimators=2))])
    forest.steps[-1][1].fit(model[0].transform(train[list(model.feature_names_in_)]), train["label"])
    with pytest.raises(ValueError, match="the permutation explainer needs background rows"):
        explain_rows(forest, test)


def test_the_report_follows_the_contract_and_is_strict_json(fitted, tmp_path):
    params, model, train, test = fitted
    report, aggregated, rows = explain(model, train, test, params=params)
    plots = plot_all(aggregated, rows, report, folder=tmp_path / "reports/explain", root=tmp_path, seed=0)
    body = json.loads(json.dumps({**report, "plots": plots}, allow_nan=False))

    assert body["plots"]["bar"] == "reports/explain/bar.png"
    for path in body["plots"].values():
        assert (tmp_path / path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert body["n_explained"] == 120 and body["additivity_max_error"] < 1e-6
    assert (body["explainer"], body["explainer_exact"]) == (EXPLAINER[params.train.model], True)
    assert "exact SHAP values" in body["explainer_note"]
    shares = [g["mean_abs_shap"] for g in body["global_importance"]]
    assert shares == sorted(shares, reverse=True)
    assert {g["feature"] for g in body["global_importance"]} == set(model.feature_names_in_)
    assert set(body["by_group"]) == set(params.usecase.sensitive)
    assert set(body["by_group"]["sex"]) == {"female", "male"}
    assert len(body["local"]) == params.explain.local_examples
    for local in body["local"]:
        assert local["decision"] == ("approve" if local["probability"] >= params.evaluate.threshold else "decline")
        assert 0 < len(local["reasons"]) <= params.explain.top_k_reasons
        assert not {r["feature"] for r in local["reasons"]} & params.usecase.never_changed
        assert set(local) == {"example", "probability", "decision", "reasons"}
    assert [local["example"] for local in body["local"]] == list(range(1, params.explain.local_examples + 1))
    ids = set(test["applicant_id"].astype(str))
    assert not any(i in json.dumps(body) for i in ids)  # no example names anyone
    assert body["local_note"].startswith("synthetic applicants")
    assert {p["attribute"] for p in body["proxies"]} == PROTECTED  # the protected attributes and age_group
    assert not {p["feature"] for p in body["proxies"]} & (PROTECTED | set(params.usecase.proxies))


def test_synthetic_examples_take_each_column_from_the_rows_but_are_none_of_them():
    rows = pd.DataFrame({"a": range(50), "b": [f"v{i}" for i in range(50)], "c": np.arange(50) * 1.5})
    made = synthetic_examples(rows, 5, seed=3)
    assert list(made.columns) == ["a", "b", "c"] and (made.dtypes == rows.dtypes).all() and len(made) == 5
    for column in rows:
        assert set(made[column]) <= set(rows[column]) and made[column].is_unique  # drawn without replacement
    assert not made.merge(rows).shape[0]  # no synthetic row is a real one (the columns were drawn apart)
    assert synthetic_examples(rows, 5, seed=3).equals(made) and len(synthetic_examples(rows, 99, seed=3)) == 50


@pytest.fixture(scope="module")
def knn(german):
    params = parse_for(
        {
            "train": {"model": KNN, "estimator_kwargs": {KNN: {"n_neighbors": 25}}},
            "explain": {"sample_size": 12, "local_examples": 3},
        }
    )
    train, test = split(german, params=params)
    return params, fit(train, params=params), train, test


def test_a_model_neither_tree_nor_linear_is_explained_by_permutation_on_a_background_sample(knn):
    _, model, train, test = knn
    rows = test.iloc[:12]
    explainer = build_explainer(model, background=train)
    attribution = explain_rows(model, rows, explainer=explainer)

    assert (attribution.explainer, explainer.exact, explainer.background_rows) == ("permutation", False, 50)
    # the explained function, recomputed: the log-odds of the pipeline's own P(good)
    p = positive_proba(model, rows)
    logit = np.log(p) - np.log1p(-p)
    np.testing.assert_allclose(attribution.base_value + attribution.values.sum(axis=1), logit, atol=1e-9)
    # the base value is the mean log-odds over the background sample the masker holds
    background = model[0].transform(train[list(model.feature_names_in_)])
    sample = explainer.shap.masker.data
    assert {tuple(r) for r in sample} <= {tuple(r) for r in background} and len(sample) == 50
    q = np.clip(
        model[-1].predict_proba(sample)[:, 1], PROBABILITY_CLIP, 1 - PROBABILITY_CLIP
    )  # as the service reads it
    assert attribution.base_value == pytest.approx(np.mean(np.log(q) - np.log1p(-q)), abs=1e-9)
    # seeded: the same rows get the same values, whatever numpy's global generator was doing
    np.random.seed(123)
    again = explain_rows(model, rows, explainer=explainer)
    np.testing.assert_array_equal(again.values, attribution.values)
    assert np.random.randint(10**9) == np.random.RandomState(123).randint(10**9)  # its state is left alone


def test_the_report_says_the_fallback_explainer_is_an_approximation_on_a_sample(knn):
    params, model, train, test = knn
    report, aggregated, rows = explain(model, train, test, params=params)
    assert (report["explainer"], report["explainer_exact"]) == ("permutation", False)
    assert "approximation" in report["explainer_note"] and "50 background rows" in report["explainer_note"]
    assert report["n_explained"] == 12 and report["additivity_max_error"] < 1e-6
    # a certain vote (every neighbour agrees: P 0 or 1) is read PROBABILITY_CLIP from it: its log-odds stay finite
    p = positive_proba(model, test)
    certain = test[(p == 0) | (p == 1)].head(2)
    assert len(certain)
    attribution = explain_rows(model, certain, explainer=build_explainer(model, background=train))
    clipped = np.clip(positive_proba(model, certain), PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)
    logit = np.log(clipped) - np.log1p(-clipped)
    np.testing.assert_allclose(attribution.base_value + attribution.values.sum(axis=1), logit, atol=1e-9)
    q = np.clip(positive_proba(model, rows), PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)
    np.testing.assert_allclose(report["base_value"] + aggregated.sum(axis=1), np.log(q) - np.log1p(-q), atol=1e-9)

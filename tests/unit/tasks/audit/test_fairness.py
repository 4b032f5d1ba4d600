import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from tasks.audit.bootstrap import MISSING_ATTRIBUTE, TOO_FEW_GROUPS, UNDEFINED_IN_GROUPS, UNDEFINED_RATE
from tasks.audit.fairness import LENGTH_MISMATCH, NO_PREDICT_PROBA, SMALL_GROUP, audit, plot_rates, scores
from tasks.data.features import read_snapshot, to_feature_frame
from tests.conftest import PROJECT_DIR
from tests.unit.tasks.audit.metricframe import fairness_by_group, summaries
from tests.usecases import SHIPPED, usecase

GERMAN_CSV = Path(__file__).resolve().parents[4] / "data/german_credit.csv"
NUMERIC = ["duration_months", "credit_amount", "installment_rate", "age", "existing_credits"]
ATTRIBUTES = ["sex", "age_group", "foreign_worker"]
INTERSECTIONS = [["sex", "age_group"]]
AUDITED = [("sex", ["sex"]), ("age_group", ["age_group"]), ("foreign_worker", ["foreign_worker"]),
           ("sex \u00d7 age_group", ["sex", "age_group"])]  # fmt: skip
RATES = ["selection_rate", "tpr", "fpr", "fnr", "precision", "brier"]


@pytest.fixture(scope="module")
def german() -> pd.DataFrame:
    """The vendored German data with a fixed scorer: a logistic regression on five numeric columns."""
    frame = to_feature_frame(pd.read_csv(GERMAN_CSV), usecase=usecase())
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(frame[NUMERIC], frame["label"])
    return frame.assign(proba=model.predict_proba(frame[NUMERIC])[:, 1])


def _audit(frame: pd.DataFrame, y=None, **overrides) -> dict:
    options = dict(
        threshold=0.7,
        n_boot=1000,
        ci_level=0.95,
        min_group_size=30,
        seed=0,
        attributes=ATTRIBUTES,
        intersections=INTERSECTIONS,
    )
    y = frame["label"] if y is None else y
    return audit(y, frame["proba"], frame[ATTRIBUTES], **{**options, **overrides})


@pytest.fixture(scope="module", params=[0.5, 0.7])
def audited(request, german):
    return request.param, _audit(german, threshold=request.param)


def _by_hand(frame: pd.DataFrame, columns: list[str], threshold: float) -> pd.DataFrame:
    """Every per-group figure with plain pandas, from the rows."""
    d = (frame["proba"] >= threshold).astype(int)
    y = frame["label"]
    rows = {}
    for key, part in frame.groupby(columns):
        dp, yp = d[part.index], y[part.index]
        rows[" | ".join(key)] = {
            "count": len(part),
            "positives": int(yp.sum()),
            "selection_rate": dp.mean(),
            "tpr": dp[yp == 1].mean(),
            "fpr": dp[yp == 0].mean(),
            "fnr": (1 - dp[yp == 1]).mean(),
            "precision": yp[dp == 1].mean(),
            "brier": ((part["proba"] - yp) ** 2).mean(),
        }
    return pd.DataFrame(rows).T


@pytest.mark.parametrize(("name", "columns"), AUDITED)
def test_every_figure_equals_a_plain_pandas_computation(audited, german, name, columns):
    threshold, report = audited
    expected = _by_hand(german, columns, threshold)
    body = report["attributes"][name]
    assert set(body["groups"]) == set(expected.index)
    for group, row in expected.iterrows():
        got = body["groups"][group]
        assert (got["count"], got["positives"]) == (row["count"], row["positives"])
        assert got["small"] == (row["count"] < 30)
        for rate in RATES:
            assert got[rate]["value"] == pytest.approx(row[rate], abs=1e-12), (group, rate)
    large = expected[expected["count"] >= 30]
    if len(large) < 2:
        assert all(m["value"] is None for m in body["summary"].values())
        return
    gap = {rate: large[rate].max() - large[rate].min() for rate in ("selection_rate", "tpr", "fpr", "precision")}
    summary = {k: v["value"] for k, v in body["summary"].items()}
    assert summary == pytest.approx(
        {
            "demographic_parity_difference": gap["selection_rate"],
            "demographic_parity_ratio": large["selection_rate"].min() / large["selection_rate"].max(),
            "equalized_odds_difference": max(gap["tpr"], gap["fpr"]),
            "equal_opportunity_difference": gap["tpr"],
            "predictive_parity_difference": gap["precision"],
        },
        abs=1e-12,
    )


def test_group_cis_contain_their_point_values(audited):
    _, report = audited
    for name, body in report["attributes"].items():
        for group, values in body["groups"].items():
            for rate in RATES:
                low, high = values[rate]["ci"]
                assert low <= values[rate]["value"] <= high, (name, group, rate)


def test_summary_cis_contain_a_clear_disparity(german):
    """A scorer that favours men: every sex summary is far from its bound, and its CI holds the point."""
    biased = german.assign(proba=np.clip(german["proba"] + np.where(german["sex"] == "male", 0.15, -0.15), 0, 1))
    report = _audit(biased, attributes=["sex"], intersections=[])
    for key, value in report["attributes"]["sex"]["summary"].items():
        low, high = value["ci"]
        assert low <= value["value"] <= high, key


def test_a_group_without_positive_labels_has_null_tpr_with_a_note(german):
    y = german["label"].where(german["foreign_worker"] == "yes", 0)  # 37 foreign_worker "no": all bad
    report = _audit(german, y=y, attributes=["foreign_worker"], intersections=[])
    text = json.dumps(report, allow_nan=False)  # strict JSON: no NaN anywhere
    assert "NaN" not in text
    no = report["attributes"]["foreign_worker"]["groups"]["no"]
    assert no["tpr"] == {"value": None, "ci": None, "note": UNDEFINED_RATE["tpr"]}
    assert no["fnr"]["value"] is None and no["fpr"]["value"] is not None
    summary = report["attributes"]["foreign_worker"]["summary"]
    note = UNDEFINED_IN_GROUPS.format(rate="tpr", groups="'no'")
    assert summary["equal_opportunity_difference"] == {"value": None, "ci": None, "note": note}
    assert summary["demographic_parity_ratio"]["value"] is not None
    assert any("tpr is undefined for group 'no'" in flag for flag in report["flags"])


def test_small_groups_are_flagged_and_summaries_need_two_large_groups(german):
    report = _audit(german, attributes=["foreign_worker"], intersections=[], min_group_size=40)
    body = report["attributes"]["foreign_worker"]
    assert body["groups"]["no"]["small"] and not body["groups"]["yes"]["small"]
    assert SMALL_GROUP.format(attribute="foreign_worker", group="no", count=37, min_group_size=40) in report["flags"]
    for value in body["summary"].values():
        assert value == {"value": None, "ci": None, "note": TOO_FEW_GROUPS.format(min_group_size=40)}


def test_missing_sensitive_attribute_is_a_clear_error(german):
    with pytest.raises(KeyError) as caught:
        _audit(german, attributes=["sex", "race"])
    assert MISSING_ATTRIBUTE.format(names="race") in str(caught.value)


def test_mismatched_lengths_are_refused(german):
    with pytest.raises(ValueError, match="same length"):
        audit(german["label"][:10], german["proba"], german[ATTRIBUTES], threshold=0.5, n_boot=50, ci_level=0.95,
              min_group_size=30, seed=0, attributes=["sex"], intersections=[])  # fmt: skip
    assert "same length" in LENGTH_MISMATCH


def test_a_model_without_predict_proba_is_a_clear_error(german):
    model = make_pipeline(StandardScaler(), LinearSVC()).fit(german[NUMERIC], german["label"])
    with pytest.raises(TypeError) as caught:
        scores(model, german)
    assert str(caught.value) == NO_PREDICT_PROBA.format(kind="Pipeline")


def _value(figure: dict) -> float:
    return np.nan if figure["value"] is None else figure["value"]


def _assert_equals_metricframe(report: dict, frame: pd.DataFrame, columns: list[str], threshold: float) -> None:
    """Every group's count, positives and rates, and every summary, equal fairlearn MetricFrame's to 1e-9."""
    y, p = frame["label"].to_numpy(), frame["proba"].to_numpy()
    d = (p >= threshold).astype(int)
    body = report["attributes"][" \u00d7 ".join(columns)]
    expected = fairness_by_group(y, d, p, frame[columns])
    assert list(body["groups"]) == list(expected.index)  # the same groups, in the same (sorted) order
    for group, row in expected.iterrows():
        got = body["groups"][group]
        assert (got["count"], got["positives"]) == (row["count"], row["positives"]), group
        np.testing.assert_allclose(
            [_value(got[rate]) for rate in RATES], row[RATES].to_numpy(float), rtol=1e-9, atol=1e-9, err_msg=group
        )
    reference = summaries(y, d, frame[columns], proba=p, min_group_size=report["min_group_size"])
    got = {name: _value(value) for name, value in body["summary"].items()}
    assert list(got) == list(reference)
    np.testing.assert_allclose(list(got.values()), list(reference.values()), rtol=1e-9, atol=1e-9)


@pytest.fixture(scope="module", params=SHIPPED)
def shipped_sample(request) -> tuple[str, pd.DataFrame]:
    """3,000 rows of a shipped use case's data, scored by a regression on its numeric columns."""
    uc = usecase(request.param)
    raw = read_snapshot(PROJECT_DIR / uc.dataset.file)
    frame = to_feature_frame(raw.sample(n=min(3000, len(raw)), random_state=1), usecase=uc).reset_index(drop=True)
    numeric = [c for c in frame.select_dtypes("number").columns if c not in {*uc.not_features, *uc.protected, "label"}]
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(frame[numeric], frame["label"])
    return request.param, frame.assign(proba=model.predict_proba(frame[numeric])[:, 1])


@pytest.mark.parametrize("threshold", [0.5, 0.7])
def test_on_each_shipped_use_case_every_figure_equals_metricframe(shipped_sample, threshold):
    """The use case's own attributes and intersections: group figures, differences and ratios."""
    name, frame = shipped_sample
    uc = usecase(name)
    options = {"n_boot": 50, "ci_level": 0.95, "min_group_size": 30, "seed": 0, "threshold": threshold}
    report = audit(
        frame["label"], frame["proba"], frame, attributes=uc.sensitive, intersections=uc.intersections, **options
    )
    for columns in [*([a] for a in uc.sensitive), *uc.intersections]:
        _assert_equals_metricframe(report, frame, list(columns), threshold)


def test_undefined_rates_equal_metricframe_and_are_null(german):
    """A large group without positive labels (TPR, FNR 0/0) and one nobody in is approved (precision 0/0)."""
    y = german["label"].where(german["foreign_worker"] == "yes", 0)  # 37 foreign_worker "no": all bad
    proba = german["proba"].where(german["sex"] == "male", 0.0)  # no woman approved
    frame = german.assign(label=y, proba=proba)
    report = _audit(frame, intersections=[])
    no, female = report["attributes"]["foreign_worker"]["groups"]["no"], report["attributes"]["sex"]["groups"]["female"]
    assert no["tpr"]["value"] is None and no["fnr"]["value"] is None and no["fpr"]["value"] is not None
    assert female["precision"] == {"value": None, "ci": None, "note": UNDEFINED_RATE["precision"]}
    assert female["selection_rate"]["value"] == 0.0
    for columns in (["sex"], ["age_group"], ["foreign_worker"]):
        _assert_equals_metricframe(report, frame, columns, 0.7)


def test_the_audits_do_not_import_fairlearn():
    """MetricFrame is the tests' reference only: the audits' point figures come from the counts."""
    code = "import sys, tasks.audit.fairness, tasks.data.data_bias; print('fairlearn' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_DIR, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_report_is_strict_json_and_plots_are_written(audited, tmp_path):
    _, report = audited
    json.dumps(report, allow_nan=False)
    assert report["n"] == 1000 and report["n_boot"] == 1000 and "multinomial" in report["method"]
    for name, rates in (("selection_rates", ["selection_rate"]), ("error_rates", ["tpr", "fpr"])):
        path = tmp_path / "fairness" / f"{name}.png"
        plot_rates(report, path, rates=rates, title=name)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name", SHIPPED)
def test_on_each_shipped_use_case_every_group_figure_equals_plain_pandas(name):
    """The use case's own sensitive attributes and intersections, scored by a regression on its numeric columns."""
    uc = usecase(name)
    raw = read_snapshot(PROJECT_DIR / uc.dataset.file)
    frame = to_feature_frame(raw.sample(n=min(3000, len(raw)), random_state=1), usecase=uc).reset_index(drop=True)
    numeric = [c for c in frame.select_dtypes("number").columns if c not in {*uc.not_features, *uc.protected, "label"}]
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(frame[numeric], frame["label"])
    frame = frame.assign(proba=model.predict_proba(frame[numeric])[:, 1])
    options = {"n_boot": 100, "ci_level": 0.95, "min_group_size": 30, "seed": 0, "threshold": 0.7}
    report = audit(
        frame["label"], frame["proba"], frame, attributes=uc.sensitive, intersections=uc.intersections, **options
    )
    audited = [*([a] for a in uc.sensitive), *uc.intersections]
    assert list(report["attributes"]) == [" \u00d7 ".join(columns) for columns in audited]
    for columns in audited:
        expected = _by_hand(frame, list(columns), 0.7)
        body = report["attributes"][" \u00d7 ".join(columns)]
        assert set(body["groups"]) == set(expected.index)
        for group, row in expected.iterrows():
            got = body["groups"][group]
            assert got["count"] == row["count"]
            for rate in ("selection_rate", "tpr", "fpr"):
                if np.isfinite(row[rate]):
                    assert got[rate]["value"] == pytest.approx(row[rate], abs=1e-12), (group, rate)

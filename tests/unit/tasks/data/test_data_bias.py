import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.audit.bootstrap import MISSING_ATTRIBUTE, TOO_FEW_GROUPS
from tasks.data.data_bias import FAILS_FOUR_FIFTHS, SMALL_GROUP, data_bias, plot_base_rates
from tasks.data.features import read_snapshot, to_feature_frame
from tests.conftest import PROJECT_DIR
from tests.unit.tasks.audit.metricframe import base_rates_by_group, summaries
from tests.usecases import SHIPPED, usecase

GERMAN_CSV = Path(__file__).resolve().parents[4] / "data/german_credit.csv"
ATTRIBUTES = ["sex", "age_group", "foreign_worker"]
INTERSECTIONS = [["sex", "age_group"]]


@pytest.fixture(scope="module")
def german() -> pd.DataFrame:
    return to_feature_frame(pd.read_csv(GERMAN_CSV), usecase=usecase())


def _audit(frame: pd.DataFrame, **overrides) -> dict:
    options = dict(
        attributes=ATTRIBUTES,
        intersections=INTERSECTIONS,
        favourable="good",
        n_boot=1000,
        ci_level=0.95,
        min_group_size=30,
        seed=0,
    )
    return data_bias(frame, **{**options, **overrides})


@pytest.fixture(scope="module")
def report(german) -> dict:
    return _audit(german)


def _by_hand(raw: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Counts, shares and good-rates straight from the raw credit_risk text column."""
    key = raw[columns].astype(str).agg(" | ".join, axis=1)
    good = raw["credit_risk"].eq("good")
    return pd.DataFrame(
        {"count": key.value_counts(), "share": key.value_counts(normalize=True), "base_rate": good.groupby(key).mean()}
    )


@pytest.mark.parametrize(
    ("name", "columns"),
    [("sex", ["sex"]), ("age_group", ["age_group"]), ("foreign_worker", ["foreign_worker"]),
     ("sex \u00d7 age_group", ["sex", "age_group"])],
)  # fmt: skip
def test_groups_and_summaries_equal_a_plain_computation(report, german, name, columns):
    raw = pd.read_csv(GERMAN_CSV).assign(age_group=german["age_group"])
    expected = _by_hand(raw, columns)
    body = report["attributes"][name]
    assert set(body["groups"]) == set(expected.index)
    for group, row in expected.iterrows():
        got = body["groups"][group]
        assert got["count"] == row["count"]
        assert got["share"] == pytest.approx(row["share"], abs=1e-12)
        assert got["base_rate"]["value"] == pytest.approx(row["base_rate"], abs=1e-12)
        low, high = got["base_rate"]["ci"]
        assert low <= row["base_rate"] <= high
    large = expected[expected["count"] >= 30]["base_rate"]
    summary = body["summary"]
    assert summary["base_rate_difference"]["value"] == pytest.approx(large.max() - large.min(), abs=1e-12)
    assert summary["base_rate_ratio"]["value"] == pytest.approx(large.min() / large.max(), abs=1e-12)
    assert summary["four_fifths"] == {"passes": summary["base_rate_ratio"]["ci"][0] >= 0.8, "on": "ci_low"}
    assert body["reference"] == large.idxmax()


def test_the_vendored_german_groups(report):
    assert report["n_rows"] == 1000 and report["favourable"] == "good"
    sex = report["attributes"]["sex"]["groups"]
    assert (sex["female"]["count"], sex["male"]["count"]) == (310, 690)
    no = report["attributes"]["foreign_worker"]["groups"]["no"]
    assert no["count"] == 37 and no["small"] is False  # 37 >= min_group_size 30: reported, not flagged
    low = report["attributes"]["age_group"]["summary"]["base_rate_ratio"]["ci"][0]
    assert FAILS_FOUR_FIFTHS.format(attribute="age_group", low=low) in report["flags"]


@pytest.mark.parametrize(("min_group_size", "small"), [(30, []), (38, ["no"]), (200, ["no"])])
def test_small_groups_are_flagged_and_left_out(german, min_group_size, small):
    got = _audit(german, attributes=["foreign_worker"], intersections=[], min_group_size=min_group_size)
    body = got["attributes"]["foreign_worker"]
    assert [g for g, v in body["groups"].items() if v["small"]] == small
    for group in small:
        count = body["groups"][group]["count"]
        flag = SMALL_GROUP.format(attribute="foreign_worker", group=group, count=count, min_group_size=min_group_size)
        assert flag in got["flags"]
    if small:  # one large group left: no difference or ratio, a note instead of a number
        ratio = body["summary"]["base_rate_ratio"]
        assert ratio == {"value": None, "ci": None, "note": TOO_FEW_GROUPS.format(min_group_size=min_group_size)}
        assert body["summary"]["four_fifths"]["passes"] is False
        assert body["reference"] == "yes"


def test_missing_sensitive_attribute_is_a_clear_error(german):
    with pytest.raises(KeyError) as caught:
        _audit(german.drop(columns=["age_group"]))
    assert MISSING_ATTRIBUTE.format(names="age_group") in str(caught.value)


def test_report_is_strict_json_and_the_plot_is_written(report, tmp_path):
    json.dumps(report, allow_nan=False)
    path = tmp_path / "data_bias" / "base_rates.png"
    plot_base_rates(report, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_seed_same_report(german):
    first = _audit(german, attributes=["sex"], intersections=[], n_boot=200)
    assert first == _audit(german, attributes=["sex"], intersections=[], n_boot=200)
    assert first != _audit(german, attributes=["sex"], intersections=[], n_boot=200, seed=1)
    assert np.isclose(first["attributes"]["sex"]["groups"]["female"]["share"], 0.31)


@pytest.mark.parametrize("name", SHIPPED)
def test_on_each_shipped_use_case_groups_and_base_rates_equal_the_raw_labels(name):
    uc = usecase(name)
    raw = read_snapshot(PROJECT_DIR / uc.dataset.file)
    frame = to_feature_frame(raw, usecase=uc)
    favourable = str(uc.label.favourable)
    got = _audit(frame, attributes=uc.sensitive, intersections=uc.intersections, favourable=favourable, n_boot=100)
    assert got["n_rows"] == len(raw) and got["favourable"] == favourable
    groups = raw.assign(**{g: frame[g] for g in uc.groups})
    for columns in [*([a] for a in uc.sensitive), *uc.intersections]:
        key = groups[columns[0]].astype(str)
        for column in columns[1:]:
            key = key + " | " + groups[column].astype(str)
        rate = raw[uc.label.column].eq(uc.label.favourable).groupby(key).mean()
        body = got["attributes"][" \u00d7 ".join(columns)]
        assert set(body["groups"]) == set(key.unique())
        for group, value in rate.items():
            assert body["groups"][group]["count"] == int((key == group).sum())
            assert body["groups"][group]["base_rate"]["value"] == pytest.approx(value, abs=1e-12)


@pytest.mark.parametrize("name", SHIPPED)
def test_on_each_shipped_use_case_every_figure_equals_metricframe(name):
    """Counts, base rates, and the difference and ratio over large groups, against fairlearn MetricFrame's."""
    uc = usecase(name)
    frame = to_feature_frame(read_snapshot(PROJECT_DIR / uc.dataset.file), usecase=uc)
    got = _audit(frame, attributes=uc.sensitive, intersections=uc.intersections, n_boot=50)
    y = frame["label"].to_numpy()
    for columns in [*([a] for a in uc.sensitive), *uc.intersections]:
        body = got["attributes"][" \u00d7 ".join(columns)]
        expected = base_rates_by_group(y, frame[list(columns)])
        assert list(body["groups"]) == list(expected.index)
        for group, row in expected.iterrows():
            assert body["groups"][group]["count"] == row["count"]
            assert body["groups"][group]["share"] == pytest.approx(row["count"] / len(frame), rel=1e-9, abs=1e-9)
            assert body["groups"][group]["base_rate"]["value"] == pytest.approx(row["base_rate"], rel=1e-9, abs=1e-9)
        reference = summaries(y, y, frame[list(columns)], min_group_size=30)
        for key, value in reference.items():
            expected_value = None if np.isnan(value) else pytest.approx(value, rel=1e-9, abs=1e-9)
            assert body["summary"][key]["value"] == expected_value, key

"""The generic resampler, on both shipped use cases: real rows, and each shift doing exactly what it says."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from steward.usecase import load_usecase
from tasks.data.features import read_snapshot
from tasks.data.validate import validate_frame
from tasks.demo.resample import Pattern, Scenario, resample

PROJECT = Path(__file__).resolve().parents[4]
# per use case: a categorical column and one of its values, a numeric column, a sensitive group
SHAPES = {
    "german_credit": ("purpose", "education", "credit_amount", {"sex": "female"}),
    "adult_income": ("occupation", "Tech-support", "hours_per_week", {"sex": "Female"}),
}
N = 20_000


@pytest.fixture(scope="module", params=sorted(SHAPES))
def case(request):
    usecase = load_usecase(PROJECT, request.param)
    snapshot = read_snapshot(PROJECT / usecase.dataset.file)
    suite = json.loads((PROJECT / usecase.raw_suite).read_text())
    return usecase, snapshot, suite, SHAPES[request.param]


def _fav(frame, usecase) -> np.ndarray:
    return (frame[usecase.label.column] == usecase.label.favourable).to_numpy()


def test_rows_are_real_rows_with_fresh_ids_and_pass_the_raw_suite(case, tmp_path):
    usecase, snapshot, suite, _ = case
    frame = resample(snapshot, usecase, suite=suite, n=3000, seed=7)
    assert list(frame.columns) == list(snapshot.columns) and frame.dtypes.equals(snapshot.dtypes)
    assert frame[usecase.id_column].is_unique and frame[usecase.id_column].iloc[0] == "S0070000001"
    rest = [c for c in snapshot.columns if c != usecase.id_column]
    assert (
        len(frame[rest].merge(snapshot[rest].drop_duplicates(), how="left", indicator=True).query("_merge != 'both'"))
        == 0
    )
    suite_file = tmp_path / "suite.json"
    suite_file.write_text(json.dumps(suite))
    assert validate_frame(frame, suite=suite_file).success
    pd.testing.assert_frame_equal(frame, resample(snapshot, usecase, suite=suite, n=3000, seed=7))


def test_bias_flips_favourable_labels_in_the_group_only(case):
    usecase, snapshot, suite, (_, _, _, group) = case
    plain = resample(snapshot, usecase, suite=suite, n=N, seed=1)
    biased = resample(snapshot, usecase, suite=suite, n=N, seed=1, scenario=Scenario(bias=0.5, bias_group=group))
    ((column, value),) = group.items()
    inside = (plain[column] == value).to_numpy()
    pd.testing.assert_frame_equal(plain[~inside], biased[~inside])
    before, after = _fav(plain, usecase)[inside].mean(), _fav(biased, usecase)[inside].mean()
    assert after == pytest.approx(before * 0.5, abs=4 * np.sqrt(before * 0.25 / inside.sum()))


def test_a_tilt_moves_the_mix_toward_its_target_by_the_drift(case):
    usecase, snapshot, suite, (column, value, _, _) = case
    observed = (snapshot[column] == value).mean()
    frame = resample(
        snapshot, usecase, suite=suite, n=N, seed=2, scenario=Scenario(drift=0.5, tilt={column: {value: 1.0}})
    )
    expected = 0.5 * observed + 0.5  # rows of the value weigh 0.5 + 0.5 / observed, the others 0.5
    assert (frame[column] == value).mean() == pytest.approx(expected, abs=4 * np.sqrt(expected * (1 - expected) / N))
    full = resample(
        snapshot, usecase, suite=suite, n=500, seed=2, scenario=Scenario(drift=1.0, tilt={column: {value: 1}})
    )
    assert (full[column] == value).all()


def test_scaling_multiplies_numbers_within_the_suite_range(case):
    usecase, snapshot, suite, (_, _, number, _) = case
    plain = resample(snapshot, usecase, suite=suite, n=2000, seed=3)
    scaled = resample(snapshot, usecase, suite=suite, n=2000, seed=3, scenario=Scenario(drift=0.5, scale={number: 3.0}))
    bounds = next(
        e["kwargs"] for e in suite["expectations"] if e["kwargs"].get("column") == number and "max_value" in e["kwargs"]
    )
    expected = np.clip(plain[number].to_numpy() * 2.0, bounds["min_value"], bounds["max_value"]).round()
    assert scaled[number].dtype == plain[number].dtype
    np.testing.assert_array_equal(scaled[number].to_numpy(), expected)


def test_a_shortcut_spreads_a_value_evenly_and_ties_it_to_the_unfavourable_label(case):
    usecase, snapshot, suite, (column, value, _, group) = case
    pattern = Pattern(column=column, value=value, share=0.2, strength=0.8)
    plain = resample(snapshot, usecase, suite=suite, n=N, seed=4)
    cut = resample(snapshot, usecase, suite=suite, n=N, seed=4, scenario=Scenario(shortcut=pattern))
    changed = (cut[column] != plain[column]).to_numpy() | ((plain[column] == value) & (cut[column] == value)).to_numpy()
    ((g, v),) = group.items()
    for inside in ((plain[g] == v).to_numpy(), (plain[g] != v).to_numpy()):  # the same share in and out of the group
        share = (cut[column] == value).to_numpy()[inside].mean()
        base = (plain[column] == value).to_numpy()[inside].mean()
        assert share == pytest.approx(base + 0.2 * (1 - base), abs=0.03)
    chosen = changed & (cut[column] == value).to_numpy()
    assert _fav(cut, usecase)[chosen].mean() < 0.35 * _fav(plain, usecase)[chosen].mean()
    assert (_fav(cut, usecase) <= _fav(plain, usecase)).all()  # a shortcut only ever takes approvals away


def test_a_campaign_changes_the_group_only_and_never_a_label(case):
    usecase, snapshot, suite, (column, value, _, _) = case
    young = {"age_group": "under 25"}
    campaign = Pattern(column=column, value=value, share=1.0, group=young)
    plain = resample(snapshot, usecase, suite=suite, n=5000, seed=5)
    live = resample(snapshot, usecase, suite=suite, n=5000, seed=5, scenario=Scenario(campaign=campaign))
    inside = (plain["age"] < 25).to_numpy()
    assert (live.loc[inside, column] == value).all()
    pd.testing.assert_frame_equal(plain[~inside], live[~inside])
    pd.testing.assert_series_equal(plain[usecase.label.column], live[usecase.label.column])


@pytest.mark.parametrize(
    ("scenario", "message"),
    [
        (Scenario(tilt={"nope": {"a": 1}}), "tilt: 'nope' is not a column of the snapshot"),
        (Scenario(drift=1.5), r"drift must be within \[0, 1\], got 1.5"),
        (Scenario(bias=0.2, bias_group={"planet": "mars"}), "bias_group: 'planet' is not a column"),
        (Scenario(shortcut=Pattern(column="sex", value="x", share=2.0)), r"shortcut.share must be within \[0, 1\]"),
        (Scenario(drift=0.5, tilt={"sex": {"unicorn": 1}}), "tilt: 'unicorn' is not a value of 'sex'"),
    ],
)
def test_a_scenario_that_cannot_be_applied_is_refused_by_name(case, scenario, message):
    usecase, snapshot, suite, _ = case
    with pytest.raises(ValueError, match=message):
        resample(snapshot, usecase, suite=suite, n=10, seed=0, scenario=scenario)


def test_independent_columns_come_apart_and_only_their_mix_is_tilted():
    spec = load_usecase(PROJECT, "adult_income")
    snapshot = read_snapshot(PROJECT / spec.dataset.file)
    suite = json.loads((PROJECT / spec.raw_suite).read_text())
    even = {"Female": 0.5, "Male": 0.5}
    old = {"under 25": 0.1, "25 to under 65": 0.4, "65 and over": 0.5}
    scenario = Scenario(independent=("sex", "age"), tilt={"sex": even, "age_group": old}, drift=1.0)
    frame = resample(snapshot, spec, suite=suite, n=N, seed=3, scenario=scenario)
    favourable = frame["income"] == ">50K"
    rates = favourable.groupby(frame["sex"]).mean()
    assert abs(rates["Female"] - rates["Male"]) < 0.03  # 0.11 vs 0.30 in the census
    groups = spec.groups["age_group"].assign(frame["age"]).value_counts(normalize=True)
    assert groups["65 and over"] > 0.3  # 2% in the census: the tilt moved the age draw
    # the other columns keep the census's mix: the tilt of independent columns does not drag them along
    census = (snapshot["income"] == ">50K").mean()
    assert abs(favourable.mean() - census) < 0.015
    assert abs((frame["hours_per_week"] >= 40).mean() - (snapshot["hours_per_week"] >= 40).mean()) < 0.015

"""Synthetic rows per use case: the German plug-in, the resampler for the others, and the demo's populations."""

import numpy as np
import pandas as pd
import pytest

from tasks.data.features import read_snapshot
from tasks.data.suites import read_suite
from tasks.data.validate import validate_frame
from tasks.demo.resample import Pattern, Scenario
from tasks.demo.synthesize import NO_DEMO, demo_scenarios, synthesize, write_snapshot
from tests.conftest import PROJECT_DIR
from tests.usecases import SHIPPED, usecase
from usecases.german_credit.generator import generate_applications

N = 20_000


def _favourable(frame: pd.DataFrame, name: str) -> pd.Series:
    label = usecase(name).label
    return frame[label.column] == label.favourable


@pytest.fixture(scope="module", params=SHIPPED)
def plain(request):
    name = request.param
    return name, synthesize(usecase(name), PROJECT_DIR, n=N, seed=3, scenario=demo_scenarios(usecase(name))["plain"])


def test_plain_rows_pass_the_raw_suite_and_repeat_with_the_seed(plain):
    name, frame = plain
    assert validate_frame(frame, suite=read_suite(PROJECT_DIR / usecase(name).raw_suite)).success
    again = synthesize(usecase(name), PROJECT_DIR, n=N, seed=3, scenario=demo_scenarios(usecase(name))["plain"])
    pd.testing.assert_frame_equal(frame, again)


def test_in_the_demo_population_no_protected_group_differs(plain):
    name, frame = plain
    favourable = _favourable(frame, name)
    for attribute in ("sex", "age"):
        groups = frame[attribute] if attribute == "sex" else frame[attribute] < 25
        rates = favourable.groupby(groups.to_numpy()).mean()
        # 20,000 rows: a rate's standard error is at most 0.011 for a group of 2,000+; 0.05 is > 4 of them
        assert rates.max() - rates.min() < 0.05, (attribute, rates.to_dict())


def test_the_real_adult_data_does_differ_which_is_why_the_demo_draws_independently():
    real = read_snapshot(PROJECT_DIR / usecase("adult_income").dataset.file)
    rates = _favourable(real, "adult_income").groupby(real["sex"]).mean()
    assert rates["Male"] - rates["Female"] > 0.15


def test_german_credit_draws_through_its_plug_in():
    frame = synthesize(usecase("german_credit"), PROJECT_DIR, n=500, seed=4, scenario=Scenario(drift=0.5))
    pd.testing.assert_frame_equal(frame, generate_applications(500, seed=4, drift=0.5))


@pytest.mark.parametrize("name", SHIPPED)
def test_the_shortcut_marks_its_rows_unfavourable_and_the_campaign_hands_its_group_the_pattern(name):
    spec = usecase(name)
    scenarios = demo_scenarios(spec)
    shortcut, campaign = spec.demo.shortcut, spec.demo.campaign
    snapshot = synthesize(spec, PROJECT_DIR, n=N, seed=5, scenario=scenarios["shortcut"])
    marked = snapshot[shortcut.column] == shortcut.value
    favourable = _favourable(snapshot, name)
    assert favourable[marked].mean() < 0.5 * favourable[~marked].mean()
    live = synthesize(spec, PROJECT_DIR, n=N, seed=6, scenario=scenarios["campaign"])
    ((group, value),) = campaign.group.items()
    members = spec.groups[group].assign(live[spec.groups[group].column]) == value
    share = (live.loc[members, campaign.column] == campaign.value).mean()
    assert share >= campaign.share  # the campaign's share, plus those who had the value anyway
    assert (live.loc[~members, campaign.column] == campaign.value).mean() < 0.5 * share


def test_a_use_case_without_a_demo_section_has_no_demo():
    bare = usecase("adult_income").model_copy(update={"demo": None})
    with pytest.raises(ValueError, match=NO_DEMO.format(name="adult_income")):
        demo_scenarios(bare)


def test_the_german_plug_in_refuses_a_pattern_it_cannot_plant():
    odd = Scenario(shortcut=Pattern(column="housing", value="rent", share=0.1, strength=1.0))
    with pytest.raises(ValueError, match="purpose = 'education' only, got housing = 'rent'"):
        synthesize(usecase("german_credit"), PROJECT_DIR, n=10, seed=0, scenario=odd)


def test_a_snapshot_is_written_once_with_the_same_bytes(tmp_path):
    spec = usecase("adult_income")
    path = write_snapshot(tmp_path / "a.csv", spec, PROJECT_DIR, n=300, seed=1)
    first = path.read_bytes()
    assert read_snapshot(path).shape == (300, 16)
    path.unlink()
    assert write_snapshot(tmp_path / "a.csv", spec, PROJECT_DIR, n=300, seed=1).read_bytes() == first
    assert not list(tmp_path.glob(".*.part"))
    np.testing.assert_array_equal(read_snapshot(path)["person_id"].str[:4].unique(), ["S001"])

"""The use-case specification: what loads, what is refused (naming the dotted key), what must match the data."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from steward.usecase import Group, UseCaseError, load_usecase, shipped
from steward.usecase_check import suite_columns
from tasks.data.features import read_snapshot
from tests.usecases import SHIPPED, usecase

PROJECT = Path(__file__).resolve().parents[3]
MINIMAL = {
    "name": "loans",
    "title": "t",
    "model_name": "loans",
    "dataset": {"file": "d.csv"},
    "id_column": "id",
    "label": {"column": "y", "favourable": "yes", "unfavourable": "no"},
    "protected": ["sex"],
    "sensitive": ["sex"],
}
SUITE = {
    "expectations": [
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "y", "value_set": ["yes", "no"]}},
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "grade", "value_set": ["a", "b", "c"]}},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "amount", "min_value": 0, "max_value": 9}},
        {"type": "expect_column_values_to_be_of_type", "kwargs": {"column": "sex", "type_": "str"}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "grade", "mostly": 0.9}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "amount"}},
    ]
}
DATA = pd.DataFrame(
    {
        "id": ["1", "2", "3"],
        "y": ["yes", "no", "yes"],
        "sex": ["f", "m", "f"],
        "grade": ["a", "b", None],
        "amount": [1, 5, 9],
    }
)


def _write(tmp_path: Path, spec: dict, name: str = "loans") -> Path:
    folder = tmp_path / "usecases" / name
    folder.mkdir(parents=True)
    (folder / "usecase.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return tmp_path


def _load(tmp_path: Path, **changes):
    return load_usecase(_write(tmp_path, MINIMAL | changes), "loans")


@pytest.mark.parametrize("name", ["german_credit", "adult_income"])
def test_each_shipped_use_case_loads_and_matches_its_data_and_suite(name):
    usecase = load_usecase(PROJECT, name)
    suite_file = PROJECT / usecase.raw_suite
    data = read_snapshot(PROJECT / usecase.dataset.file)
    problems = usecase.check_against(columns=list(data.columns), suite=json.loads(suite_file.read_text()), data=data)
    assert problems == []
    assert usecase.label.favourable in set(data[usecase.label.column])


def test_the_shipped_use_cases_are_listed():
    assert {"german_credit", "adult_income"} <= set(shipped(PROJECT))


def test_an_unknown_use_case_names_the_missing_file_and_the_shipped_ones(tmp_path):
    _write(tmp_path, MINIMAL)
    with pytest.raises(
        UseCaseError, match=r"use case 'nope' not found: no .*usecases/nope/usecase.yaml \(shipped: loans\)"
    ):
        load_usecase(tmp_path, "nope")


def test_an_unknown_key_is_refused_by_its_dotted_name(tmp_path):
    with pytest.raises(UseCaseError) as caught:
        _load(tmp_path, label={"column": "y", "favourable": "yes", "unfavourable": "no", "colour": "red"})
    assert "label.colour: Extra inputs are not permitted" in str(caught.value)


def test_every_bad_value_is_named_at_once(tmp_path):
    with pytest.raises(UseCaseError) as caught:
        _load(tmp_path, groups={"g": {"column": "age", "cuts": [30, 20]}}, model_name="Bad Name")
    message = str(caught.value)
    assert "groups.g: Value error, cuts must increase, got [30.0, 20.0]" in message
    assert "model_name: String should match pattern" in message


def test_the_folder_and_the_name_must_agree(tmp_path):
    with pytest.raises(UseCaseError, match="name: 'other' is not its folder 'loans'"):
        _load(tmp_path, name="other")


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"actionable": {"sex": {}}}, "actionable: ['sex'] protected, derived, a proxy or immutable"),
        ({"proxies": {"zip": ["sex"]}, "actionable": {"zip": {}}}, "actionable: ['zip'] protected"),
        ({"drop": ["grade"], "actionable": {"grade": {}}}, "actionable: ['grade'] are not features of the model"),
        ({"intersections": [["sex", "grade"]]}, "intersections: ['sex', 'grade'] needs 2+ attributes from sensitive"),
        ({"reasons": {"grade": "grade"}}, "reasons.grade: the phrase must contain {value}"),
        ({"groups": {"sex": {"column": "age", "cuts": [1]}}}, "groups: ['sex'] would overwrite a raw column"),
        ({"drop": ["y"]}, "label.column: the label cannot also be the id, protected or dropped"),
        ({"label": {"column": "y", "favourable": 1, "unfavourable": 1}}, "favourable and unfavourable must differ"),
        ({"slices": [{"name": "s", "column": "amount", "op": ">", "value": 1, "quantile": 0.5}]}, "exactly one of"),
        ({"actionable": {"grade": {"order": ["a", "b"], "step": 1}}}, "an ordered category takes no step"),
    ],
)
def test_an_incoherent_specification_is_refused(tmp_path, changes, problem):
    with pytest.raises(UseCaseError) as caught:
        _load(tmp_path, **changes)
    assert problem in str(caught.value)


def test_bins_are_labelled_by_their_edges():
    assert Group(column="age", cuts=[25]).bin_labels() == ["under 25", "25 and over"]
    assert Group(column="age", cuts=[25, 64.5]).bin_labels() == ["under 25", "25 to under 64.5", "64.5 and over"]
    assert Group(column="age").bin_labels() == ["all"]
    with pytest.raises(ValueError, match="2 cut\\(s\\) make 3 bins"):
        Group(column="age", cuts=[1, 2], labels=["a", "b"])


def test_the_suite_is_read_per_column():
    found = suite_columns(SUITE)
    assert found["y"] == {"nullable": True, "values": ["yes", "no"]}
    assert found["amount"] == {"nullable": False, "min": 0, "max": 9}
    assert found["grade"]["nullable"] is True  # mostly 0.9 tolerates gaps
    assert found["sex"]["type"] == "str"


def test_every_mismatch_with_data_and_suite_is_named(tmp_path):
    usecase = _load(
        tmp_path,
        label={"column": "y", "favourable": "approved", "unfavourable": "no"},
        protected=["sex", "religion"],
        groups={"sex_group": {"column": "sex", "cuts": [1]}},
        actionable={"grade": {"order": ["a", "b"], "direction": "up"}, "amount": {"step": 1}, "color": {}},
    )
    data = DATA.assign(id=["1", "1", "2"])
    problems = usecase.check_against(columns=list(DATA.columns), suite=SUITE, data=data)
    assert problems == [
        "actionable.color: column 'color' is not in the data's columns",
        "protected: column 'religion' is not in the data's columns",
        "label.favourable: 'approved' is not in the suite's set ['yes', 'no']",
        "groups.sex_group.column: 'sex' is str, not numeric: it cannot be binned",
        "actionable.grade.order: ['a', 'b'] is not the suite's set ['a', 'b', 'c']",
        "actionable.color: no step and no value set in the suite: nothing to search",
        "label.favourable: 'approved' never occurs in the data (['no', 'yes'])",
        "label.column: values ['yes'] are neither favourable nor unfavourable",
        "id_column: 'id' is not unique in the data",
        "groups.sex_group.column: 'sex' holds non-numbers in the data",
    ]


def test_a_numeric_actionable_feature_needs_a_range(tmp_path):
    usecase = _load(tmp_path, actionable={"amount": {"step": 1}})
    no_range = {"expectations": [e for e in SUITE["expectations"] if e["type"] != "expect_column_values_to_be_between"]}
    assert usecase.check_against(columns=list(DATA.columns), suite=SUITE) == []
    assert usecase.check_against(columns=list(DATA.columns), suite=no_range) == [
        "actionable.amount: numeric, but the suite gives no range and low/high are unset"
    ]


def test_values_fall_into_the_bin_their_cuts_define():
    group = Group(column="age", cuts=[25, 65])
    assigned = group.assign(pd.Series([18, 24.99, 25, 64, 65, 90, None]))
    assert assigned.tolist()[:6] == [
        "under 25",
        "under 25",
        "25 to under 65",
        "25 to under 65",
        "65 and over",
        "65 and over",
    ]
    assert pd.isna(assigned.iloc[6])
    assert Group(column="age").assign(pd.Series([1, 2])).tolist() == ["all", "all"]


def test_a_use_case_its_suite_contradicts_is_refused_naming_every_mismatch():
    spec = load_usecase(PROJECT, "adult_income")
    suite = json.loads((PROJECT / spec.raw_suite).read_text())
    broken = spec.model_copy(
        update={
            "label": spec.label.model_copy(update={"favourable": ">100K"}),
            "id_column": "ssn",
            "actionable": {**spec.actionable, "hours_worked": spec.actionable["hours_per_week"]},
        }
    )
    with pytest.raises(UseCaseError) as caught:
        broken.require_suite(suite)
    message = str(caught.value)
    assert "label.favourable: '>100K' is not in the suite's set" in message
    assert "id_column: column 'ssn' is not in the data's columns" in message
    assert "actionable.hours_worked: column 'hours_worked'" in message
    spec.require_suite(suite)  # the shipped one passes


@pytest.mark.parametrize("name", SHIPPED)
def test_the_logged_groups_keep_every_protected_sensitive_and_proxy_column_as_sent_and_each_derived_bin(name):
    spec = usecase(name)
    rows = read_snapshot(PROJECT / spec.dataset.file).drop(columns=[spec.label.column]).head(40)
    raw = {*spec.protected, *spec.sensitive, *spec.proxies} - set(spec.groups)  # kept apart from the inputs
    for record in rows.astype(object).where(rows.notna(), None).to_dict(orient="records"):
        groups = spec.logged_groups(record)
        assert set(groups) == raw | set(spec.groups)
        for group_name, group in spec.groups.items():  # the bin, worked out here from the cuts
            value = record[group.column]
            assert groups[group_name] == group.bin_labels()[sum(value >= c for c in group.cuts)]
        for column in raw:
            assert groups[column] == record[column]

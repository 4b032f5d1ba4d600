"""`steward usecase draft`: a proposal that loads, matches its data, and names what it cannot draft."""

import json
from pathlib import Path

import pandas as pd
import pytest

from steward.usecase import load_usecase
from tasks.data.draft import DraftError, draft, write

PROJECT = Path(__file__).resolve().parents[4]
GERMAN = pd.read_csv(PROJECT / "data/german_credit.csv")


@pytest.fixture(scope="module")
def adult() -> pd.DataFrame:
    return pd.read_csv(PROJECT / "data/adult_income.csv.gz")


def _rules(suite: dict, kind: str) -> dict:
    return {e["kwargs"]["column"]: e["kwargs"] for e in suite["expectations"] if e["type"] == kind}


def test_a_drafted_use_case_loads_and_matches_the_data_it_came_from(tmp_path, adult):
    proposed = draft(adult, name="census", data_file="data/adult.csv.gz", label="income", favourable=">50K")
    write(proposed, tmp_path, source="adult")
    usecase = load_usecase(tmp_path, "census")
    assert usecase.check_against(columns=list(adult.columns), suite=proposed.suite, data=adult) == []
    assert (usecase.id_column, usecase.label.favourable, usecase.label.unfavourable) == ("person_id", ">50K", "<=50K")
    assert usecase.protected == ["age", "marital_status", "race", "sex", "native_country"]  # guessed from names
    assert usecase.groups["age_group"].column == "age" and usecase.actionable == {}


def test_the_drafted_suite_states_what_the_data_shows(adult):
    suite = draft(adult, name="census", data_file="x", label="income", favourable=">50K").suite
    sets = _rules(suite, "expect_column_values_to_be_in_set")
    assert set(sets["race"]["value_set"]) == set(adult["race"].dropna())
    assert "person_id" not in sets and "fnlwgt" not in sets  # an id and a number get no value set
    nulls = _rules(suite, "expect_column_values_to_not_be_null")
    share = adult["workclass"].isna().mean()  # 0.0573
    assert nulls["workclass"]["mostly"] == pytest.approx(1 - 2 * share - 0.01, abs=0.001)
    assert nulls["age"]["mostly"] == 1.0
    ranges = _rules(suite, "expect_column_values_to_be_between")
    span = adult["hours_per_week"].max() - adult["hours_per_week"].min()  # 1..99
    assert ranges["hours_per_week"] == {"column": "hours_per_week", "min_value": 0, "max_value": 99 + round(0.1 * span)}
    types = _rules(suite, "expect_column_values_to_be_of_type")
    assert types["age"]["type_"] == "int" and types["education"]["type_"] == "str"
    assert _rules(suite, "expect_column_values_to_be_unique").keys() == {"person_id"}


def test_drafting_german_credit_recovers_its_hand_written_value_sets():
    suite = draft(GERMAN, name="g", data_file="x", label="credit_risk", favourable="good").suite
    hand = json.loads((PROJECT / "expectations/german_credit.json").read_text())
    drafted, written = (
        _rules(suite, "expect_column_values_to_be_in_set"),
        _rules(hand, "expect_column_values_to_be_in_set"),
    )
    for column, rule in written.items():  # the codebook's sets, except values absent from the 1,000 rows
        assert set(drafted[column]["value_set"]) <= set(rule["value_set"]), column


def test_a_favourable_value_that_is_numeric_in_the_data_is_matched_by_its_text():
    frame = pd.DataFrame({"id": ["a", "b", "c"], "y": [1, 0, 1], "x": [1.5, 2.5, None]})
    proposed = draft(frame, name="n", data_file="x", label="y", favourable="1")
    # 2 of 3 favourable: the base-rate bounds are that share, BASE_RATE_MARGIN either way
    assert proposed.usecase["label"] == {"column": "y", "favourable": 1, "unfavourable": 0, "base_rate": [0.52, 0.82]}
    assert _rules(proposed.suite, "expect_column_values_to_be_between")["x"]["min_value"] == pytest.approx(1.4)


@pytest.mark.parametrize(
    ("frame", "kwargs", "message"),
    [
        (GERMAN, {"label": "nope", "favourable": "good"}, "--label 'nope' is not a column of"),
        (GERMAN, {"label": "purpose", "favourable": "car"}, "label 'purpose' must take exactly two values"),
        (
            GERMAN,
            {"label": "credit_risk", "favourable": "great"},
            "--favourable 'great' is not a value of 'credit_risk'",
        ),
        (
            GERMAN.drop(columns="applicant_id"),
            {"label": "credit_risk", "favourable": "good"},
            "has no column that identifies",
        ),
        (
            GERMAN,
            {"label": "credit_risk", "favourable": "good", "id_column": "sex"},
            "--id 'sex' is not a unique column",
        ),
        (
            GERMAN,
            {"label": "credit_risk", "favourable": "good", "name": "Bad-Name"},
            "use case name 'Bad-Name' must match",
        ),
    ],
)
def test_what_cannot_be_drafted_is_named(frame, kwargs, message):
    with pytest.raises(DraftError, match=message.replace("(", r"\(")):
        draft(frame, **{"name": "n", "data_file": "x", **kwargs})


def test_a_draft_never_overwrites_a_use_case(tmp_path):
    proposed = draft(GERMAN, name="g", data_file="x", label="credit_risk", favourable="good")
    write(proposed, tmp_path, source="german")
    with pytest.raises(DraftError, match="exists"):
        write(proposed, tmp_path, source="german")

"""Decoding of the vendored German credit file and loading of Adult, checked against plain parsing."""

from __future__ import annotations

import gzip
import hashlib
import re
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from usecases.adult_income.dataset import ERR_ADULT_LABEL, load_adult
from usecases.german_credit.dataset import ERR_FIELD_COUNT, ERR_UNKNOWN_CODE, decode_german

ROOT = Path(__file__).resolve().parents[3]
GERMAN_DATA = ROOT / "data/german/german.data"
GERMAN_CSV = ROOT / "data/german_credit.csv"

# The published schema (spec), written out independently of the module's constants.
SCHEMA = [
    "applicant_id", "checking_status", "duration_months", "credit_history", "purpose", "credit_amount",
    "savings", "employment_since", "installment_rate", "personal_status", "sex", "other_debtors",
    "residence_since", "property", "age", "other_installment_plans", "housing", "existing_credits", "job",
    "people_liable", "telephone", "foreign_worker", "credit_risk",
]  # fmt: skip
INT_COLUMNS = {
    "duration_months", "credit_amount", "installment_rate", "residence_since", "age", "existing_credits",
    "people_liable",
}  # fmt: skip

# Two raw rows (the first two lines of german.data) and their decoding, written by hand from codes.json.
RAW_SAMPLE = (
    "A11 6 A34 A43 1169 A65 A75 4 A93 A101 4 A121 67 A143 A152 2 A173 1 A192 A201 1\n"
    "A12 48 A32 A43 5951 A61 A73 2 A92 A101 2 A121 22 A143 A152 1 A173 1 A191 A201 2\n"
)
DECODED_SAMPLE = [
    ["G0001", "< 0 DM", 6, "critical account", "radio/television", 1169, "unknown or none", ">= 7 years", 4,
     "single", "male", "none", 4, "real estate", 67, "none", "own", 2, "skilled", 1, "yes", "yes", "good"],
    ["G0002", "0-200 DM", 48, "existing paid duly", "radio/television", 5951, "< 100 DM", "1-4 years", 2,
     "divorced/separated/married", "female", "none", 2, "real estate", 22, "none", "own", 1, "skilled", 1,
     "no", "yes", "bad"],
]  # fmt: skip

SHA256 = {
    "data/german/german.data": "b21f3d81db8071257d5ff1deaeba1fd4303b62712e6fcc9715c7a86202cb5871",
    "data/german/codes.json": "73a48f120cdb8019fb9f0ad84078ef1ba109f1100bbcc6cbcf925d60e6adcd4e",
    "data/adult/adult.data.gz": "c14562853d63e96b2d848adeb5d2bdcaf6171bb024402a934bb1a2c9157e6c32",
    "data/adult/adult.test.gz": "64a4ac2e4a4385257e36308e69df892c3b70db3faa77c37d9c042ce0dbc10cf5",
    "data/adult/adult.names": "c248284c0b5de30c9e1958d6cdd168a34a654758b620e68f46aefa83fc0a576a",
}


@pytest.fixture(scope="module")
def raw_rows() -> list[list[str]]:
    return [line.split(" ") for line in GERMAN_DATA.read_text().splitlines()]


@pytest.fixture(scope="module")
def german() -> pd.DataFrame:
    return decode_german(GERMAN_DATA.read_text())


@pytest.mark.parametrize(("relative", "digest"), sorted(SHA256.items()))
def test_vendored_file_has_recorded_sha256(relative: str, digest: str) -> None:
    assert hashlib.sha256((ROOT / relative).read_bytes()).hexdigest() == digest


def test_datasheets_record_the_hashes() -> None:
    names = ["usecases/german_credit/datasheet.md", "usecases/adult_income/datasheet.md"]
    sheets = "".join((ROOT / name).read_text() for name in names)
    assert all(digest in sheets for digest in SHA256.values())


def test_decode_sample_matches_hand_decoding() -> None:
    expected = pd.DataFrame(DECODED_SAMPLE, columns=SCHEMA)
    pd.testing.assert_frame_equal(decode_german(RAW_SAMPLE), expected)


def test_decoded_schema_and_dtypes(german: pd.DataFrame) -> None:
    assert list(german.columns) == SCHEMA
    assert german.shape == (1000, 23)
    for column in SCHEMA:
        assert (german[column].dtype == "int64") == (column in INT_COLUMNS), column
    assert german["applicant_id"].tolist() == [f"G{i:04d}" for i in range(1, 1001)]
    assert german.notna().all().all()


def test_label_counts_match_raw_file(german: pd.DataFrame, raw_rows: list[list[str]]) -> None:
    raw_labels = Counter(row[-1] for row in raw_rows)
    assert raw_labels == {"1": 700, "2": 300}
    assert german["credit_risk"].value_counts().to_dict() == {"good": 700, "bad": 300}


def test_sex_follows_status_sex_codes(german: pd.DataFrame, raw_rows: list[list[str]]) -> None:
    female_raw = [row[8] in {"A92", "A95"} for row in raw_rows]
    assert sum(female_raw) == (german["sex"] == "female").sum() == 310
    assert (german["sex"] == "female").tolist() == female_raw
    women = german.loc[german["sex"] == "female", "personal_status"]
    assert set(women) == {"divorced/separated/married"}  # A95 never occurs


def test_foreign_worker_and_age_counts(german: pd.DataFrame, raw_rows: list[list[str]]) -> None:
    assert sum(row[19] == "A202" for row in raw_rows) == (german["foreign_worker"] == "no").sum() == 37
    assert sum(int(row[12]) < 25 for row in raw_rows) == (german["age"] < 25).sum() == 149


def test_integer_columns_equal_raw_fields(german: pd.DataFrame, raw_rows: list[list[str]]) -> None:
    raw_positions = {"duration_months": 1, "credit_amount": 4, "age": 12, "people_liable": 17}
    for column, position in raw_positions.items():
        assert german[column].tolist() == [int(row[position]) for row in raw_rows], column


def test_vendored_csv_is_the_decoding(german: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(pd.read_csv(GERMAN_CSV), german)
    assert GERMAN_CSV.read_text() == german.to_csv(index=False, lineterminator="\n")


def test_wrong_field_count_is_refused() -> None:
    message = ERR_FIELD_COUNT.format(line=2, expected=21, got=20)
    broken = RAW_SAMPLE.replace(" A201 2", " 2")
    with pytest.raises(ValueError, match=re.escape(message)):
        decode_german(broken)


def test_unknown_code_is_refused() -> None:
    message = ERR_UNKNOWN_CODE.format(column="purpose", codes=["A499"])
    with pytest.raises(ValueError, match=re.escape(message)):
        decode_german(RAW_SAMPLE.replace("A43", "A499", 1))


@pytest.mark.parametrize(("name", "rows", "comment_lines"), [("adult.data.gz", 32561, 0), ("adult.test.gz", 16281, 1)])
def test_load_adult_counts(name: str, rows: int, comment_lines: int) -> None:
    path = ROOT / "data/adult" / name
    with gzip.open(path, "rt") as handle:
        lines = [line for line in handle.read().splitlines() if line.strip()]
    records = [line.split(", ") for line in lines[comment_lines:]]
    adult = load_adult(path)

    assert adult.shape == (rows, 15) == (len(records), 15)
    assert set(adult["income"]) == {">50K", "<=50K"}
    assert (adult["income"] == ">50K").sum() == sum(r[-1].startswith(">50K") for r in records)
    for position, column in [(1, "workclass"), (6, "occupation"), (13, "native_country")]:
        assert adult[column].isna().sum() == sum(r[position] == "?" for r in records), column
    assert adult["sex"].value_counts().to_dict() == Counter(r[9] for r in records)
    assert adult["age"].tolist() == [int(r[0]) for r in records]


def test_load_adult_small_file(tmp_path: Path) -> None:
    text = (
        "|1x3 Cross validator\n25, ?, 226802, 11th, 7, Never-married, ?, Own-child, Black, Male, 0, 0, 40, ?, <=50K.\n"
    )
    path = tmp_path / "tiny.test.gz"
    path.write_bytes(gzip.compress(text.encode()))
    adult = load_adult(path)
    assert list(adult.columns) == [
        "age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation",
        "relationship", "race", "sex", "capital_gain", "capital_loss", "hours_per_week", "native_country",
        "income",
    ]  # fmt: skip
    first = adult.iloc[0][["age", "fnlwgt", "income", "relationship"]].tolist()
    assert first == [25, 226802, "<=50K", "Own-child"]
    assert adult[["workclass", "occupation", "native_country"]].isna().all().all()


def test_load_adult_refuses_unknown_label(tmp_path: Path) -> None:
    path = tmp_path / "bad.gz"
    row = "25, Private, 1, 11th, 7, Never-married, Sales, Own-child, Black, Male, 0, 0, 40, Peru, maybe\n"
    path.write_bytes(gzip.compress(row.encode()))
    with pytest.raises(ValueError, match=re.escape(ERR_ADULT_LABEL.format(path=path, labels=["maybe"]))):
        load_adult(path)

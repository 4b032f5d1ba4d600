"""Live traffic's request bodies: what JSON can carry, gaps as null (Adult has them)."""

import json

import numpy as np
import pandas as pd

from tasks.data.features import read_snapshot
from tasks.demo.traffic import requests_of
from tests.conftest import PROJECT_DIR
from tests.usecases import usecase


def test_gaps_become_null_and_numbers_plain_python():
    frame = pd.DataFrame(
        {"id": ["a", "b"], "job": ["x", np.nan], "n": np.array([1, 2], dtype="int64"), "y": ["yes", "no"]}
    )
    assert requests_of(frame, label="y") == [
        ({"id": "a", "job": "x", "n": 1}, "yes"),
        ({"id": "b", "job": None, "n": 2}, "no"),
    ]


def test_every_adult_row_with_a_gap_is_a_body_json_can_carry():
    spec = usecase("adult_income")
    frame = read_snapshot(PROJECT_DIR / spec.dataset.file)
    gaps = frame[frame.isna().any(axis=1)].head(50)
    assert len(gaps) == 50
    for body, outcome in requests_of(gaps, label=spec.label.column):
        json.dumps(body, allow_nan=False)
        assert outcome in {">50K", "<=50K"} and None in body.values()

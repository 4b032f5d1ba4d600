import numpy as np
import pandas as pd
import pytest

from tasks.data.features import to_feature_frame
from tasks.data.prepare import split
from tests.usecases import parse_for, usecase
from usecases.german_credit.generator import generate_applications


@pytest.fixture(scope="module")
def frame():
    return to_feature_frame(generate_applications(3000, seed=1), usecase=usecase())


def test_split_sizes_and_label_shares_follow_the_params(frame):
    params = parse_for({"prepare": {"test_size": 0.25}})
    train, test = split(frame, params=params)
    assert len(test) == 750 and len(train) == 2250
    # stratified: each part has the whole frame's good rate, to within one row
    rate = frame["label"].mean()
    assert abs(train["label"].mean() - rate) <= 1 / len(train)
    assert abs(test["label"].mean() - rate) <= 1 / len(test)
    assert set(train["applicant_id"]).isdisjoint(test["applicant_id"])
    assert set(train["applicant_id"]) | set(test["applicant_id"]) == set(frame["applicant_id"])


def test_split_is_reproducible_by_seed(frame):
    first, _ = split(frame, params=parse_for({"prepare": {"seed": 3}}))
    again, _ = split(frame, params=parse_for({"prepare": {"seed": 3}}))
    other, _ = split(frame, params=parse_for({"prepare": {"seed": 4}}))
    pd.testing.assert_frame_equal(first, again)
    assert not np.array_equal(first["applicant_id"], other["applicant_id"])

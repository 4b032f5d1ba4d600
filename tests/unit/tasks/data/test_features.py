import pandas as pd
import pytest

from steward.params import Params, parse_params
from tasks.data.features import AGE_GROUP, LABEL, model_features, to_feature_frame


def _raw():
    return pd.DataFrame(
        {
            "applicant_id": ["a", "b", "c"],
            "age": [19, 25, 40],
            "sex": ["female", "male", "female"],
            "foreign_worker": ["yes", "no", "yes"],
            "credit_amount": [1000, 2000, 3000],
            "purpose": ["repairs", "business", "education"],
            "credit_risk": ["good", "bad", "good"],
        }
    )


def test_feature_frame_adds_age_group_and_a_01_label():
    frame = to_feature_frame(_raw(), data=Params().data)
    assert frame[AGE_GROUP].tolist() == ["under 25", "25 and over", "25 and over"]
    assert frame[LABEL].tolist() == [1, 0, 1]
    assert "credit_risk" not in frame.columns


def test_missing_sensitive_column_is_named():
    with pytest.raises(KeyError, match="foreign_worker"):
        to_feature_frame(_raw().drop(columns=["foreign_worker"]), data=Params().data)


def test_protected_attributes_are_kept_out_of_the_model_by_default():
    frame = to_feature_frame(_raw(), data=Params().data)
    assert model_features(frame.columns, params=Params()) == ["credit_amount", "purpose"]
    everything = parse_params({"prepare": {"exclude_protected": False}})
    assert set(model_features(frame.columns, params=everything)) == {
        "age",
        "sex",
        "foreign_worker",
        "credit_amount",
        "purpose",
        AGE_GROUP,
    }


def test_drop_features_keeps_a_named_proxy_out_of_the_model():
    frame = to_feature_frame(_raw(), data=Params().data)
    params = parse_params({"prepare": {"drop_features": ["purpose"]}})
    assert model_features(frame.columns, params=params) == ["credit_amount"]

import pandas as pd
import pytest

from steward.params import PrepareParams
from tasks.data.features import LABEL, model_features, read_snapshot, to_feature_frame
from tests.conftest import PROJECT_DIR
from tests.usecases import SHIPPED, params_for, usecase


def _german():
    return pd.DataFrame(
        {
            "applicant_id": ["a", "b", "c"],
            "age": [19, 25, 40],
            "sex": ["female", "male", "female"],
            "foreign_worker": ["yes", "no", "yes"],
            "personal_status": ["x", "y", "x"],
            "credit_amount": [1000, 2000, 3000],
            "purpose": ["repairs", "business", "education"],
            "credit_risk": ["good", "bad", "good"],
        }
    )


def test_the_feature_frame_adds_each_group_and_a_01_label():
    frame = to_feature_frame(_german(), usecase=usecase("german_credit"))
    assert frame["age_group"].tolist() == ["under 25", "25 and over", "25 and over"]
    assert frame[LABEL].tolist() == [1, 0, 1]
    assert "credit_risk" not in frame.columns


def test_three_age_bins_and_a_favourable_class_written_as_text_for_adult():
    raw = pd.DataFrame({"person_id": ["p1", "p2", "p3", "p4"], "age": [17, 25, 64, 65], "sex": ["F"] * 4})
    raw = raw.assign(race="r", native_country=None, income=[">50K", "<=50K", ">50K", "<=50K"])
    frame = to_feature_frame(raw, usecase=usecase("adult_income"))
    assert frame["age_group"].tolist() == ["under 25", "25 to under 65", "25 to under 65", "65 and over"]
    assert frame[LABEL].tolist() == [1, 0, 1, 0]


def test_a_favourable_value_that_is_the_smaller_class_still_maps_to_1():
    spec = usecase("german_credit").model_copy(
        update={
            "label": usecase("german_credit").label.model_copy(update={"favourable": "bad", "unfavourable": "good"})
        }
    )
    assert to_feature_frame(_german(), usecase=spec)[LABEL].tolist() == [0, 1, 0]


def test_a_missing_protected_column_is_named():
    with pytest.raises(KeyError, match="foreign_worker"):
        to_feature_frame(_german().drop(columns=["foreign_worker"]), usecase=usecase("german_credit"))


def test_protected_attributes_groups_and_proxies_stay_out_of_the_model():
    frame = to_feature_frame(_german(), usecase=usecase("german_credit"))
    assert model_features(frame.columns, params=params_for()) == ["credit_amount", "purpose"]
    everything = params_for(prepare=PrepareParams(exclude_protected=False))
    # protected attributes come in when asked; the derived group, the proxy and the id never do
    assert model_features(frame.columns, params=everything) == [
        "age",
        "sex",
        "foreign_worker",
        "credit_amount",
        "purpose",
    ]


@pytest.mark.parametrize("name", SHIPPED)
def test_the_model_sees_exactly_the_columns_the_use_case_leaves_it(name):
    spec = usecase(name)
    raw = read_snapshot(PROJECT_DIR / spec.dataset.file).head(200)
    features = model_features(to_feature_frame(raw, usecase=spec).columns, params=params_for(name))
    expected = [c for c in raw.columns if c not in spec.not_features | set(spec.protected)]
    assert features == expected
    assert not set(features) & {*spec.proxies, *spec.drop, *spec.protected, spec.id_column}


def test_read_snapshot_keeps_na_like_words_as_values(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("id,kind,n\na,None,1\nb,,2\nc,NA,\n")
    frame = read_snapshot(path)
    assert frame["kind"].tolist()[0] == "None" and frame["kind"].tolist()[2] == "NA"
    assert frame["kind"].isna().tolist() == [False, True, False]
    assert frame["n"].isna().tolist() == [False, False, True]

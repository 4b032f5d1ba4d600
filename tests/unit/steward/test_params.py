from pathlib import Path

import pytest
import yaml

from steward.params import Params, ParamsError, load_params, parse_params

PROJECT = Path(__file__).resolve().parents[3]


def test_the_project_params_file_parses_and_matches_the_defaults_it_documents():
    params = load_params(PROJECT / "params.yaml")
    assert params.train.model in {"gradient_boosting", "logistic_regression"}
    assert params.validate_.raw_suite == "expectations/raw_credit.json"
    assert "sex" in params.data.protected


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"train": {"model": "xgboost"}}, "train.model"),
        ({"train": {"gradient_boosting": {"n_estimators": 0}}}, "train.gradient_boosting.n_estimators"),
        ({"prepare": {"test_size": 1.5}}, "prepare.test_size"),
        ({"prepare": {"tset_size": 0.2}}, "prepare.tset_size: unknown key"),
        ({"monitr": {}}, "monitr: unknown key"),
        ({"validate": {"raw_suite": ["a"]}}, "validate.raw_suite"),
    ],
)
def test_a_bad_key_or_value_is_named(raw, named):
    with pytest.raises(ParamsError) as caught:
        parse_params(raw)
    assert named in str(caught.value)


def test_label_may_not_be_protected():
    with pytest.raises(ParamsError, match="cannot also be a protected attribute"):
        parse_params({"data": {"label": "sex"}})


def test_malformed_yaml_and_non_mapping_are_refused(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ParamsError, match="must hold a mapping"):
        load_params(bad)
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "missing.yaml")


def test_digest_changes_with_any_value_and_not_with_key_order(tmp_path):
    base = Params()
    other = parse_params({"train": {"seed": 7}})
    assert base.digest() != other.digest()
    a = tmp_path / "a.yaml"
    b = tmp_path / "b.yaml"
    a.write_text(yaml.safe_dump({"prepare": {"seed": 1, "test_size": 0.2}}))
    b.write_text(yaml.safe_dump({"prepare": {"test_size": 0.2, "seed": 1}}, sort_keys=False))
    assert load_params(a).digest() == load_params(b).digest()

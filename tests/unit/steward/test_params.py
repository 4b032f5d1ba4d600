from pathlib import Path

import pytest
import yaml

from steward.params import ParamsError, load_params, parse_params

PROJECT = Path(__file__).resolve().parents[3]


def test_the_project_params_file_parses_and_matches_the_defaults_it_documents():
    params = load_params(PROJECT / "params.yaml")
    assert params.train.model in {"gradient_boosting", "logistic_regression"}
    assert params.usecase.name == "german_credit" and "sex" in params.usecase.protected
    assert params.mitigation_attribute == params.usecase.sensitive[0]


def test_usecase_chooses_another_shipped_use_case_for_one_run():
    params = load_params(PROJECT / "params.yaml", usecase="adult_income")
    assert (params.usecase.name, params.usecase.label.favourable) == ("adult_income", ">50K")


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"train": {"model": "xgboost"}}, "train.model"),
        ({"train": {"gradient_boosting": {"n_estimators": 0}}}, "train.gradient_boosting.n_estimators"),
        ({"prepare": {"test_size": 1.5}}, "prepare.test_size"),
        ({"prepare": {"tset_size": 0.2}}, "prepare.tset_size: unknown key"),
        ({"monitr": {}}, "monitr: unknown key"),
        ({"validate": {"raw_suite": "a.json"}}, "validate: unknown key"),
        ({"usecase": "no_such_case"}, "usecase: use case 'no_such_case' not found"),
        ({"usecase": ["german_credit"]}, "usecase: a use case's name"),
        ({"fairness": {"mitigation": {"attribute": "planet"}}}, "fairness.mitigation.attribute 'planet'"),
    ],
)
def test_a_bad_key_or_value_is_named(raw, named):
    with pytest.raises(ParamsError) as caught:
        parse_params({"usecase": "german_credit", **raw}, project_dir=PROJECT)
    assert named in str(caught.value)


def test_a_params_file_without_a_use_case_is_refused():
    with pytest.raises(ParamsError, match="usecase: Field required"):
        parse_params({}, project_dir=PROJECT)


def test_a_broken_use_case_is_refused_naming_its_dotted_key(tmp_path):
    folder = tmp_path / "usecases" / "broken"
    folder.mkdir(parents=True)
    spec = yaml.safe_load((PROJECT / "usecases/german_credit/usecase.yaml").read_text())
    spec["name"] = "broken"
    spec["actionable"]["credit_amount"]["step"] = -1
    (folder / "usecase.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(ParamsError, match=r"(?s)usecase: .*actionable\.credit_amount\.step"):
        parse_params({"usecase": "broken"}, project_dir=tmp_path)


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
    base = parse_params({"usecase": "german_credit"}, project_dir=PROJECT)
    other = parse_params({"usecase": "german_credit", "train": {"seed": 7}}, project_dir=PROJECT)
    assert base.digest() != parse_params({"usecase": "adult_income"}, project_dir=PROJECT).digest()
    assert base.digest() != other.digest()
    a = tmp_path / "a.yaml"
    b = tmp_path / "b.yaml"
    (tmp_path / "usecases").symlink_to(PROJECT / "usecases")
    a.write_text(yaml.safe_dump({"usecase": "german_credit", "prepare": {"seed": 1, "test_size": 0.2}}))
    b.write_text(
        yaml.safe_dump({"prepare": {"test_size": 0.2, "seed": 1}, "usecase": "german_credit"}, sort_keys=False)
    )
    assert load_params(a).digest() == load_params(b).digest()

from pathlib import Path

import pytest
from pydantic import ValidationError

from steward.settings import Settings, find_project_dir


def test_defaults_put_state_under_the_project(monkeypatch, tmp_path):
    monkeypatch.delenv("STEWARD_HOME", raising=False)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    settings = Settings(project_dir=tmp_path)
    assert settings.state_dir == tmp_path / ".steward"
    assert settings.db_url == f"sqlite:///{tmp_path / '.steward' / 'steward.db'}"
    assert settings.prefect_api_url is None
    env = settings.tool_env()
    assert env["PREFECT_HOME"] == str(tmp_path / ".steward" / "prefect")
    assert env["BENTOML_HOME"] == str(tmp_path / ".steward" / "bentoml")
    assert "PREFECT_API_URL" not in env


def test_environment_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("STEWARD_HOME", "elsewhere")
    monkeypatch.setenv("STEWARD_DATABASE_URL", "postgresql+psycopg://db/steward")
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4999/api")
    settings = Settings(project_dir=tmp_path)
    assert settings.state_dir == tmp_path / "elsewhere"
    assert settings.db_url == "postgresql+psycopg://db/steward"
    assert settings.tool_env()["PREFECT_API_URL"] == "http://127.0.0.1:4999/api"


def test_project_dir_is_found_from_a_subfolder(tmp_path):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    assert find_project_dir(nested) == tmp_path.resolve()
    assert find_project_dir(Path("/")) == Path("/")


@pytest.mark.parametrize(
    ("value", "networks"),
    [
        ("", []),
        ("127.0.0.1", ["127.0.0.1/32"]),
        (" 10.0.0.0/8 , 192.168.1.7,fd00::/8 ", ["10.0.0.0/8", "192.168.1.7/32", "fd00::/8"]),
        ("10.0.0.1,", ["10.0.0.1/32"]),
    ],
)
def test_trusted_proxies_are_comma_separated_addresses_or_networks(monkeypatch, tmp_path, value, networks):
    monkeypatch.setenv("STEWARD_TRUSTED_PROXIES", value)
    assert [str(n) for n in Settings(project_dir=tmp_path).trusted_proxies] == networks


def test_no_proxy_is_trusted_unless_configured(monkeypatch, tmp_path):
    monkeypatch.delenv("STEWARD_TRUSTED_PROXIES", raising=False)
    assert Settings(project_dir=tmp_path).trusted_proxies == ()


@pytest.mark.parametrize("value", ["localhost", "10.0.0.1/8", "10.0.0.0/33", "127.0.0.1;10.0.0.1"])
def test_a_trusted_proxy_that_is_no_address_or_network_is_refused_naming_it(monkeypatch, tmp_path, value):
    monkeypatch.setenv("STEWARD_TRUSTED_PROXIES", value)
    with pytest.raises(ValidationError, match="trusted_proxies") as refused:
        Settings(project_dir=tmp_path)
    assert value in str(refused.value)

from pathlib import Path

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

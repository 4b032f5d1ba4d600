"""The local Prefect server's auth string: made once, private to its owner, and refused by name when unusable."""

import re
import stat
from pathlib import Path

import pytest

from deployments.local.prefect_server import (
    AUTH_EXPOSED,
    AUTH_MALFORMED,
    AUTH_UNWRITABLE,
    LocalServer,
    LocalServerError,
    auth_file,
    auth_string,
)
from steward.errors import StewardError
from steward.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(project_dir=tmp_path, home=tmp_path / "home")


def test_it_is_made_once_random_and_readable_by_its_owner_only(settings, tmp_path):
    first = auth_string(settings)
    assert re.fullmatch(r"steward:[A-Za-z0-9_-]{32}", first)
    assert stat.S_IMODE(auth_file(settings).stat().st_mode) == 0o600
    assert auth_string(settings) == first  # kept, not made again
    other = Settings(project_dir=tmp_path, home=tmp_path / "other-home")
    assert auth_string(other) != first
    assert [p.name for p in settings.state_dir.iterdir()] == ["prefect-auth"]  # no scratch file left behind


def test_a_file_others_may_read_is_refused_with_the_fix(settings):
    auth_string(settings)
    path = auth_file(settings)
    path.chmod(0o644)
    with pytest.raises(LocalServerError) as caught:
        auth_string(settings)
    assert str(caught.value) == AUTH_EXPOSED.format(path=path, mode=0o644)
    assert "chmod 600" in str(caught.value)


@pytest.mark.parametrize("text", ["", "\n", "steward: two words\n"])
def test_a_file_without_one_auth_string_is_refused_naming_it(settings, text):
    path = auth_file(settings)
    path.parent.mkdir(parents=True)
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(LocalServerError, match=re.escape(AUTH_MALFORMED.format(path=path))):
        auth_string(settings)


def test_an_unreadable_file_is_named_with_the_reason(settings):
    auth_file(settings).mkdir(parents=True)  # a folder where the file should be: unreadable even as root
    with pytest.raises(LocalServerError) as caught:
        auth_string(settings)
    message = str(caught.value)
    assert message.startswith(f"cannot read the Prefect server's auth string from {auth_file(settings)}: ")
    assert "directory" in message


def test_a_home_it_cannot_write_in_is_named(tmp_path):
    (tmp_path / "home").write_text("a file, not a folder")
    settings = Settings(project_dir=tmp_path, home=tmp_path / "home")
    with pytest.raises(LocalServerError) as caught:
        auth_string(settings)
    assert str(caught.value).startswith(AUTH_UNWRITABLE.format(path=auth_file(settings), reason=""))


def test_clients_get_the_url_and_the_auth_string_which_no_repr_shows():
    url = "http://127.0.0.1:4321/api"
    server = LocalServer(api_url=url, pid=1, log=Path("log"), started=True, auth="steward:s3cret")
    assert server.client_env() == {"PREFECT_API_URL": url, "PREFECT_API_AUTH_STRING": "steward:s3cret"}
    assert "s3cret" not in repr(server)
    unauthenticated = LocalServer(api_url=url, pid=1, log=Path("log"), started=False)
    assert unauthenticated.client_env() == {"PREFECT_API_URL": url}


def test_its_errors_share_steward_s_root():
    assert issubclass(LocalServerError, StewardError) and issubclass(LocalServerError, RuntimeError)

"""/feedback's signature: HMAC-SHA256 of the exact body (checked against RFC 4231's vectors and Python's hmac), and
the feedback key: configured, or made once under STEWARD_HOME, readable by its owner only."""

from __future__ import annotations

import hashlib
import hmac
import json
import stat
import threading

import pytest

from steward.feedback_auth import (
    BAD_SIGNATURE,
    CONFIGURED_KEY_SHORT,
    KEY_FILE_EXPOSED,
    KEY_FILE_SHORT,
    MALFORMED_SIGNATURE,
    MISSING_SIGNATURE,
    SIGNATURE_HEADER,
    FeedbackKeyError,
    feedback_key,
    sign,
    signature_problem,
    signed_json,
)
from steward.settings import Settings

KEY = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("key", "body", "digest"),
    [  # RFC 4231, test cases 2 and 3 (HMAC-SHA-256)
        ("Jefe", b"what do ya want for nothing?", "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
        ("\xaa" * 20, b"\xdd" * 50, None),  # a key that is not ASCII: its UTF-8 bytes are the HMAC key
    ],
)
def test_the_signature_is_the_hex_hmac_sha256_of_the_body_under_the_keys_utf8_bytes(key, body, digest):
    expected = digest or hmac.new(key.encode("utf-8"), body, hashlib.sha256).hexdigest()
    assert sign(body, key=key) == f"sha256={expected}"


def test_a_signed_json_body_is_the_bytes_the_signature_covers():
    body, headers = signed_json({"request_id": "ab12", "outcome": "bad"}, key=KEY)

    assert json.loads(body) == {"request_id": "ab12", "outcome": "bad"}
    assert headers["Content-Type"] == "application/json"
    assert headers[SIGNATURE_HEADER] == "sha256=" + hmac.new(KEY.encode(), body, hashlib.sha256).hexdigest()
    assert signature_problem(body, headers[SIGNATURE_HEADER], key=KEY) is None


@pytest.mark.parametrize(
    ("signature", "problem"),
    [
        (None, MISSING_SIGNATURE),
        ("", MALFORMED_SIGNATURE),
        ("sha256=", MALFORMED_SIGNATURE),
        ("sha256=" + "a" * 63, MALFORMED_SIGNATURE),
        ("sha256=" + "a" * 65, MALFORMED_SIGNATURE),
        ("SHA256=" + "a" * 64, MALFORMED_SIGNATURE),
        ("sha256=" + "g" * 64, MALFORMED_SIGNATURE),
        ("sha256=" + "\u00e9" * 64, MALFORMED_SIGNATURE),  # latin-1 header bytes: never a crash
        ("sha256=" + "a" * 64, BAD_SIGNATURE),
    ],
)
def test_each_problem_with_a_signature_is_named(signature, problem):
    assert signature_problem(b"{}", signature, key=KEY) == problem


def test_a_signature_of_another_body_or_under_another_key_is_bad():
    body = b'{"request_id":"ab12","outcome":"bad"}'
    assert signature_problem(body, sign(body.replace(b"bad", b"good"), key=KEY), key=KEY) == BAD_SIGNATURE
    assert signature_problem(body, sign(body, key=KEY.upper()), key=KEY) == BAD_SIGNATURE
    assert signature_problem(body + b" ", sign(body, key=KEY), key=KEY) == BAD_SIGNATURE  # exact bytes


def _settings(tmp_path, **values) -> Settings:
    return Settings(project_dir=tmp_path, home=tmp_path / "home", **values)


def test_a_configured_key_is_used_and_no_file_is_made(tmp_path):
    assert feedback_key(_settings(tmp_path, feedback_key=KEY)) == KEY
    assert not (tmp_path / "home").exists()


def test_without_one_a_random_key_is_made_once_readable_by_its_owner_only(tmp_path):
    settings = _settings(tmp_path, feedback_key=None)

    key = feedback_key(settings)

    path = tmp_path / "home" / "keys" / "feedback.key"
    assert path.read_text() == key + "\n"
    assert len(key) == 64 and int(key, 16) >= 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0
    assert feedback_key(settings) == key  # read, not made again
    assert feedback_key(_settings(tmp_path / "elsewhere", feedback_key=None)) != key
    assert sorted(p.name for p in path.parent.iterdir()) == ["feedback.key"]  # no draft left behind


def test_processes_asking_at_once_all_get_the_one_key(tmp_path):
    settings = _settings(tmp_path, feedback_key=None)
    keys: list[str] = []
    start = threading.Barrier(8)

    def ask() -> None:
        start.wait()
        keys.append(feedback_key(settings))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(keys) == 8 and len(set(keys)) == 1
    assert (tmp_path / "home" / "keys" / "feedback.key").read_text().strip() == keys[0]


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o666])
def test_a_key_file_others_may_read_is_refused(tmp_path, mode):
    settings = _settings(tmp_path, feedback_key=None)
    feedback_key(settings)
    path = tmp_path / "home" / "keys" / "feedback.key"
    path.chmod(mode)

    with pytest.raises(FeedbackKeyError) as refused:
        feedback_key(settings)

    assert str(refused.value) == KEY_FILE_EXPOSED.format(path=path, mode=mode)


@pytest.mark.parametrize("text", ["", "\n", "short\n"])
def test_a_key_file_without_a_key_is_refused(tmp_path, text):
    path = tmp_path / "home" / "keys" / "feedback.key"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    path.chmod(0o600)

    with pytest.raises(FeedbackKeyError) as refused:
        feedback_key(_settings(tmp_path, feedback_key=None))

    assert str(refused.value) == KEY_FILE_SHORT.format(path=path, n=32)


def test_a_configured_key_shorter_than_32_characters_is_refused_without_repeating_it(monkeypatch, tmp_path):
    monkeypatch.setenv("STEWARD_FEEDBACK_KEY", "x" * 31)
    settings = Settings(project_dir=tmp_path)
    assert "x" * 31 not in repr(settings)

    with pytest.raises(FeedbackKeyError) as refused:
        feedback_key(settings)

    assert str(refused.value) == CONFIGURED_KEY_SHORT.format(n=32)
    monkeypatch.setenv("STEWARD_FEEDBACK_KEY", "x" * 32)
    assert feedback_key(Settings(project_dir=tmp_path)) == "x" * 32

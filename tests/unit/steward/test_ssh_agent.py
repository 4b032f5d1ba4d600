"""Signing through a real ssh-agent (OpenSSH's, started here on a socket in tmp_path and stopped by PID): the
agent's signature is the key file's, byte for byte, and a key the agent does not hold signs nothing."""

import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from steward.keys import KeyFileError, new_key
from steward.ssh_agent import AgentKey, load_signer

pytestmark = pytest.mark.skipif(not shutil.which("ssh-agent"), reason="OpenSSH's ssh-agent is not installed")
FIELDS = {"model": "credit-risk:v3", "decision": "approve", "evidence_digest": "ab" * 32}


@pytest.fixture
def agent(tmp_path):
    sock = tmp_path / "agent.sock"
    process = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):  # bounded: the socket appears within milliseconds
            if sock.exists():
                break
            time.sleep(0.05)
        yield str(sock)
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=10)


def _add(agent, key_file):
    env = {**os.environ, "SSH_AUTH_SOCK": agent}
    subprocess.run(["ssh-add", str(key_file)], env=env, check=True, capture_output=True, timeout=30)


def test_a_public_key_file_signs_through_the_agent_as_the_key_file_would(agent, tmp_path, monkeypatch):
    key = new_key(tmp_path / "alice", comment="alice@bank")
    _add(agent, tmp_path / "alice")
    monkeypatch.setenv("SSH_AUTH_SOCK", agent)
    signer = load_signer(tmp_path / "alice.pub")
    assert isinstance(signer, AgentKey) and signer.public.fingerprint == key.public.fingerprint
    signature = signer.sign("signoff-answer", FIELDS)
    assert signature == key.sign("signoff-answer", FIELDS)  # Ed25519 is deterministic: the same 64 bytes
    assert key.public.verifies("signoff-answer", FIELDS, signature)
    assert not key.public.verifies("signoff-answer", {**FIELDS, "decision": "reject"}, signature)


def test_a_key_the_agent_does_not_hold_is_refused_by_name(agent, tmp_path, monkeypatch):
    new_key(tmp_path / "alice")
    mallory = new_key(tmp_path / "mallory")
    _add(agent, tmp_path / "alice")
    monkeypatch.setenv("SSH_AUTH_SOCK", agent)
    with pytest.raises(KeyFileError, match=re.escape(f"does not hold key {mallory.public.fingerprint}")):
        load_signer(tmp_path / "mallory.pub")


def test_without_an_agent_a_public_key_cannot_sign(tmp_path, monkeypatch):
    new_key(tmp_path / "alice")
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    with pytest.raises(KeyFileError, match="is a public key: signing with it needs ssh-agent"):
        load_signer(tmp_path / "alice.pub")
    monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "no-such.sock"))
    with pytest.raises(KeyFileError, match="does not answer"):
        load_signer(tmp_path / "alice.pub")


def test_a_private_key_file_still_signs_itself(tmp_path, monkeypatch):
    key = new_key(tmp_path / "alice")
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    assert load_signer(tmp_path / "alice").sign("k", FIELDS) == key.sign("k", FIELDS)

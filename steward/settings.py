"""Settings from the environment: where Steward keeps its state and which services it talks to.

One of the two configuration sources (the other is params.yaml). Read once at the front door
(`flows/cli/__init__.py`, a DVC stage's `main`, the BentoML service) and passed down as an argument.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, IPvAnyNetwork, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def find_project_dir(start: Path | None = None) -> Path:
    """The nearest folder at or above `start` (default: cwd) holding dvc.yaml, else `start` itself."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file():
            return folder
    return here


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user with no passwd entry and no LOGNAME/USER
        return f"uid-{os.getuid()}"


class Settings(BaseSettings):
    """Environment of one Steward installation (variables prefixed STEWARD_)."""

    model_config = SettingsConfigDict(env_prefix="STEWARD_", extra="ignore")

    project_dir: Path = Field(default_factory=find_project_dir)
    home: Path | None = Field(default=None, description="State folder; default <project_dir>/.steward")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in home")
    s3_endpoint_url: str | None = Field(default=None, description="e.g. http://127.0.0.1:9000 for MinIO")
    s3_bucket: str | None = None
    prefect_api_url: str | None = Field(
        default=None,
        validation_alias="PREFECT_API_URL",
        description="A running Prefect server; unset: Steward starts one on 127.0.0.1",
    )
    prefect_port: int = Field(default=4200, ge=1, le=65535)
    user: str = Field(
        default_factory=lambda: _login(),
        description="Who starts runs from this shell (a run's author may not approve it); default: the OS user",
    )
    key_file: Path | None = Field(
        default=None,
        description="Your Ed25519 private key (OpenSSH or PEM): signs your sign-off answers and the runs you open; "
        "unset: a run is opened by this instance's key (STEWARD_HOME/keys/instance)",
    )
    replica: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="This serving replica's name among its use case's replicas (its decision journal's folder); "
        "unset: the first journal no running replica holds",
    )
    admin_token: str | None = Field(
        default=None, description="Bearer token for the service's /admin endpoints; unset: they answer 503"
    )
    signoff_poll_seconds: float = Field(
        default=5.0, gt=0, le=300, description="How often a paused sign-off asks Prefect whether it was answered"
    )
    # --- the ledger's anchor (steward/anchor.py) ---
    ledger_anchor: str | None = Field(
        default=None,
        description="Where signed checkpoints of the ledger's head go: s3://BUCKET/PREFIX (COMPLIANCE retention "
        "when the bucket has Object Lock); unset: the append-only file STEWARD_HOME/ledger-checkpoints.jsonl",
    )
    ledger_checkpoint_seconds: float = Field(
        default=300.0, gt=0, description="A checkpoint at least this often while the ledger grows"
    )
    ledger_anchor_retain_days: int = Field(
        default=365, ge=1, description="Object Lock retention of each checkpoint in an s3:// anchor"
    )
    # --- serving trust (deployments/guards.py, steward/feedback_auth.py) ---
    feedback_key: SecretStr | None = Field(
        default=None,
        description="The key a system of record signs /feedback with (HMAC-SHA256; at least 32 characters, "
        "checked where it is used: steward/feedback_auth.py); unset: a random one made once at "
        "STEWARD_HOME/keys/feedback.key",
    )
    pseudonym_key: SecretStr | None = Field(
        default=None,
        description="The key subject ids are pseudonymised with in the prediction log (HMAC-SHA256; at least 32 "
        "characters: steward/personal.py); unset: a random one made once at STEWARD_HOME/keys/pseudonym.key. "
        "Without it nobody can find a subject's decisions by id, to erase them or otherwise",
    )
    trusted_proxies: Annotated[tuple[IPvAnyNetwork, ...], NoDecode] = Field(
        default=(),
        description="Comma-separated addresses or networks (CIDR) of the proxies whose X-Client-Id the rate limit "
        "believes; from any other peer the header is ignored and the peer address is the client",
    )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return tuple(part.strip() for part in value.split(",") if part.strip()) if isinstance(value, str) else value

    @property
    def state_dir(self) -> Path:
        """STEWARD_HOME, resolved against the project."""
        home = self.home if self.home is not None else Path(".steward")
        return home if home.is_absolute() else self.project_dir / home

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.state_dir / 'steward.db'}"

    def journal_dir(self, model_name: str) -> Path:
        """Where the replicas serving `model_name` journal its decisions before answering them (steward/journal.py)."""
        return self.state_dir / "journal" / model_name

    @property
    def keys_dir(self) -> Path:
        """This instance's key, and the demo identities' keys of a demo home (`demo/`)."""
        return self.state_dir / "keys"

    @property
    def artifacts_dir(self) -> Path:
        return self.state_dir / "artifacts"

    @property
    def dvc_remote_dir(self) -> Path:
        return self.state_dir / "dvc-remote"

    @property
    def prefect_home(self) -> Path:
        return self.state_dir / "prefect"

    @property
    def bentoml_home(self) -> Path:
        return self.state_dir / "bentoml"

    def tool_env(self) -> dict[str, str]:
        """Environment for the tools Steward drives (Prefect, BentoML, DVC): state in home, no telemetry."""
        env = {
            "STEWARD_PROJECT_DIR": str(self.project_dir),
            "STEWARD_HOME": str(self.state_dir),
            "PREFECT_HOME": str(self.prefect_home),
            "BENTOML_HOME": str(self.bentoml_home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "60",
            "DVC_NO_ANALYTICS": "1",
            "BENTOML_DO_NOT_TRACK": "true",
            "MPLBACKEND": "Agg",
        }
        if self.database_url:
            env["STEWARD_DATABASE_URL"] = self.database_url
        if self.s3_endpoint_url:
            env["STEWARD_S3_ENDPOINT_URL"] = self.s3_endpoint_url
        if self.s3_bucket:
            env["STEWARD_S3_BUCKET"] = self.s3_bucket
        if self.prefect_api_url:
            env["PREFECT_API_URL"] = self.prefect_api_url
        if self.ledger_anchor:
            env["STEWARD_LEDGER_ANCHOR"] = self.ledger_anchor
        return env

"""The `steward` command reports what Steward refuses as a message and exit 1, and lets a bug crash."""

import pytest
from typer.testing import CliRunner

from deployments.local.prefect_server import LocalServerError
from flows.cli import app
from steward.errors import StewardError
from steward.ledger import LedgerError
from steward.params import ParamsError
from steward.registry import RegistryError
from steward.reviews import ReviewError, ReviewQueue
from steward.routing import RoutingError
from steward.storage import StorageError
from steward.usecase import DataError
from tasks.data.validate import SuiteInvalid, ValidationFailed
from tasks.document.evidence import EvidenceError
from tasks.dvc import DvcError
from tasks.signoff.approvals import AnswerError

RESOLVE = ["review", "resolve", "7", "--as", "rita", "--decision", "approve", "--note", "seen"]


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (ParamsError, ValueError),
        (LedgerError, ValueError),
        (RegistryError, ValueError),
        (RoutingError, ValueError),
        (ReviewError, ValueError),
        (StorageError, ValueError),
        (DataError, ValueError),
        (EvidenceError, ValueError),
        (AnswerError, ValueError),
        (DvcError, RuntimeError),
        (LocalServerError, RuntimeError),
        (SuiteInvalid, ValueError),
    ],
)
def test_every_error_steward_raises_for_bad_input_shares_one_root(error, builtin):
    assert issubclass(error, StewardError) and issubclass(error, builtin)
    assert issubclass(ValidationFailed, StewardError)


def test_a_refusal_is_a_message_and_exit_1(steward_home):
    result = CliRunner().invoke(app, RESOLVE)
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert "error: no review case 7" in " ".join(result.output.split())


def test_a_programming_error_is_not_dressed_up_as_bad_input(steward_home, monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("decision")

    monkeypatch.setattr(ReviewQueue, "resolve", broken)
    result = CliRunner().invoke(app, RESOLVE)
    assert isinstance(result.exception, KeyError)  # the traceback surfaces
    assert "error:" not in result.output

"""`steward review list` and `resolve` show an applicant's contest text and a reviewer's words with every control
and invisible character escaped: nothing they contain acts on the reviewer's terminal or hides from them."""

from typer.testing import CliRunner

from flows.cli import app
from steward.db import make_engine
from steward.reviews import ReviewQueue
from steward.settings import Settings

# ESC ] 0 ; ... BEL sets the window title; CSI 2 J clears the screen; a carriage return rewrites the line;
# U+202E shows what follows right to left; U+200B is invisible; rich markup would turn red
HOSTILE = "I was \x1b]0;owned\x07wronged\x1b[2J\rapproved [red]x[/red] \u202eenilced\u200b\u2028end"
SHOWN = "I was \\x1b]0;owned\\x07wronged\\x1b[2J\\x0dapproved [red]x[/red] \\u202eenilced\\u200b\\u2028end"


def test_review_list_escapes_what_the_applicant_sent(steward_home):
    queue = ReviewQueue(make_engine(Settings().db_url))
    queue.open(kind="contest", request_id="r\x1b[31m1", reason=HOSTILE)
    shown = CliRunner(env={"COLUMNS": "400"}).invoke(app, ["review", "list"])
    assert shown.exit_code == 0, shown.output
    assert "\x1b" not in shown.output and "\u202e" not in shown.output and "\r" not in shown.output
    assert SHOWN in shown.output and "r\\x1b[31m1" in shown.output


def test_review_resolve_escapes_the_reviewers_name_it_echoes(steward_home):
    queue = ReviewQueue(make_engine(Settings().db_url))
    case = queue.open(kind="contest", request_id="r1", reason="why")
    done = CliRunner().invoke(
        app, ["review", "resolve", str(case.id), "--as", "rita\x1b[8m", "--decision", "approve", "--note", "seen"]
    )
    assert done.exit_code == 0, done.output
    assert "\x1b" not in done.output and "approve by rita\\x1b[8m" in done.output
    listed = CliRunner(env={"COLUMNS": "400"}).invoke(app, ["review", "list", "--all"])
    assert "\x1b" not in listed.output and "approve by rita\\x1b[8m" in listed.output

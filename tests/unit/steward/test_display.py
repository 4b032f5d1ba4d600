"""safe_text: every character that acts on a terminal or hides from a reader is shown as its escape."""

import unicodedata

import pytest

from steward.display import safe_text


@pytest.mark.parametrize(
    ("sent", "shown"),
    [
        ("plain text, accents é and 漢字 stay", "plain text, accents é and 漢字 stay"),
        ("\x1b[2J", "\\x1b[2J"),
        ("a\x00b\x7fc\x9bd", "a\\x00b\\x7fc\\x9bd"),  # NUL, DEL and the 8-bit CSI
        ("abc\u202edef\u2066g\u2069", "abc\\u202edef\\u2066g\\u2069"),
        ("zero\u200bwidth\ufeff", "zero\\u200bwidth\\ufeff"),
        ("line\u2028para\u2029", "line\\u2028para\\u2029"),
        ("tag \U000e0041", "tag \\U000e0041"),  # a Unicode tag character, invisible
        ("two\nlines\tand tab", "two lines and tab"),
    ],
)
def test_hidden_characters_are_shown_as_escapes(sent, shown):
    assert safe_text(sent) == shown


def test_newlines_are_kept_when_asked_and_nothing_hidden_survives_any_character():
    assert safe_text("a\nb\r", keep_newlines=True) == "a\nb\\x0d"
    every = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    assert not any(
        unicodedata.category(c) in {"Cc", "Cf", "Zl", "Zp"} for c in safe_text(every, keep_newlines=True) if c != "\n"
    )

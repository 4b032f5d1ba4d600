"""Text that came from outside (a contest's reason, a review note, a reviewer's name) made safe to show.

A terminal obeys escape sequences (move the cursor, rewrite earlier lines, set the window title, hide text) and a
person reading a page or a terminal is misled by Unicode's invisible and direction-changing characters (a note
whose end displays before its start). Before such text reaches a terminal or a page, every control character
(Unicode category Cc: C0, DEL and C1, so ESC and CSI too), every format character (Cf: bidirectional overrides and
isolates, zero-width joiners) and every line or paragraph separator (Zl, Zp) is shown as its escape (``\\x1b``,
``\\u202e``), so the reader sees that something was there; newlines and tabs become spaces unless kept. The
stored text is never changed: it is the evidence of what was sent.
"""

from __future__ import annotations

import unicodedata

HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


def safe_text(text: str, *, keep_newlines: bool = False) -> str:
    """`text` with every character that could act on a terminal or hide itself from a reader shown as its escape."""
    out = []
    for char in text:
        if char == "\n" and keep_newlines:
            out.append(char)
        elif char in "\n\t":
            out.append(" ")
        elif unicodedata.category(char) in HIDDEN_CATEGORIES:
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(char)
    return "".join(out)

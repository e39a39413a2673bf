"""Text from profiles, servers and files made safe to print: controls escaped, cut short."""

from __future__ import annotations

import unicodedata

#: Longest value quoted back whole; longer ones keep their start and end.
ECHO_LIMIT = 200
#: Longest line of an error message; what is cut is said, never silently dropped.
LINE_LIMIT = 1000

#: Unicode categories that change what a terminal shows without being seen themselves:
#: controls (C0, DEL, C1), format characters (bidi overrides and isolates, zero-width
#: characters, soft hyphen, BOM), line/paragraph separators, and lone surrogates
#: (undecodable bytes read with surrogateescape).
_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
#: Kept in multi-line text; every other hidden character is escaped everywhere.
_LAYOUT = frozenset("\n\t")


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _needs_escape(char: str) -> bool:
    # printable ASCII is by far the common case: answer it without a table look-up
    return not (" " <= char <= "~") and unicodedata.category(char) in _HIDDEN


def escaped(text: str, *, keep_layout: bool = False) -> str:
    """``text`` with every hidden character as ``\\xNN``/``\\uNNNN``; with ``keep_layout``,
    newlines and tabs stay (for multi-line output). Idempotent: escaping twice is escaping
    once, so a renderer may escape what a lower layer escaped already."""
    if text.isascii() and text.isprintable():
        return text
    return "".join(_escape(c) if _needs_escape(c) and not (keep_layout and c in _LAYOUT)
                   else c for c in text)


def shortened(text: str, limit: int = ECHO_LIMIT) -> str:
    """``text`` cut in the middle when longer than ``limit`` characters, saying how much
    was left out (the start names what it is, the end often why it is wrong)."""
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    tail = limit - head
    return f"{text[:head]}...[{len(text) - head - tail} characters left out]...{text[-tail:]}"


def shown(value: object, limit: int = ECHO_LIMIT) -> str:
    """A user- or server-supplied value as it may be quoted in a message: cut, then escaped."""
    return escaped(shortened(str(value), limit))


def safe_lines(text: str, limit: int | None = None) -> str:
    """Multi-line output made safe: escaped with newlines and tabs kept, and each line cut at
    ``limit`` when one is given (messages; never output a script may read, such as argv)."""
    if limit is None:
        return escaped(text, keep_layout=True)
    return "\n".join(escaped(shortened(line, limit), keep_layout=True)
                     for line in text.split("\n"))

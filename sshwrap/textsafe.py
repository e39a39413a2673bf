"""Text from profiles, servers and files made safe to print: controls escaped, cut short."""

from __future__ import annotations

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
    if " " <= char <= "~":
        return False
    if char < "\x80":  # the rest of ASCII is controls (a newline in every multi-line text)
        return True
    import unicodedata  # loaded at the first character past printable ASCII: most text has none

    return unicodedata.category(char) in _HIDDEN


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


#: How many characters of a user's value a message quotes before it cuts the value short.
SHOWN_LIMIT = 60


def _strict(text: str, limit: int) -> tuple[str, str]:
    """``text[:limit]`` with everything outside printable ASCII escaped (lookalike letters
    too, so that a quoted value reads as what it is), and the note of what was cut."""
    body = "".join("\\" + ch if ch in "\\'" else ch if " " <= ch <= "~" else _escape(ch)
                   for ch in text[:limit])
    cut = f"... ({len(text)} characters)" if len(text) > limit else ""
    return body, cut


def shown(value: object, *, limit: int = SHOWN_LIMIT) -> str:
    """A user's value as a message quotes it: in quotes, every character outside printable
    ASCII escaped (control characters, invisible format characters and lookalike letters
    would otherwise reach the terminal or mislead the reader), cut after ``limit`` characters
    with the full length given (a 10 MB value is not echoed back)."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            body, cut = _strict(str(value), limit)
        except ValueError:  # an int with more digits than Python converts
            return "<a number too large to show>"
        return body + cut
    body, cut = _strict(value if isinstance(value, str) else repr(value), limit)
    return f"'{body}'{cut}"


def shown_key(key: str) -> str:
    """A file name or key path (which may hold a user's TOML key), safe to print."""
    if key.isascii() and key.isprintable() and len(key) <= 2 * SHOWN_LIMIT:
        return key
    body, cut = _strict(key, 2 * SHOWN_LIMIT)
    return body + cut


def safe_lines(text: str, limit: int | None = None) -> str:
    """Multi-line output made safe: escaped with newlines and tabs kept, and each line cut at
    ``limit`` when one is given (messages; never output a script may read, such as argv)."""
    if limit is None:
        return escaped(text, keep_layout=True)
    return "\n".join(escaped(shortened(line, limit), keep_layout=True)
                     for line in text.split("\n"))

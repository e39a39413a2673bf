"""Byte-exact edits of a user's ssh_config: add and remove the one Include line sshwrap owns."""

from __future__ import annotations

import re
from dataclasses import dataclass

#: The comment line right above our Include; ``remove_include`` finds what we added by it.
MARKER = (
    b"# Added by sshwrap: Host blocks of its profiles; "
    b"'sshwrap config remove' takes these two lines out."
)
INCLUDE_KEYWORD = b"Include"
_BLOCK_KEYWORDS = (b"host", b"match")
_SPACE = b" \t"
# Characters an Include path may not hold: quotes and backslashes would need escaping that ssh
# does not offer, glob characters would widen the Include, and newlines would end the line.
_UNSAFE_PATH = re.compile(rb'["\\\x00-\x1f\x7f*?\[\]$%]')


class UnsafeIncludePath(ValueError):
    """The owned file's path cannot be written in an Include line safely."""


@dataclass(frozen=True)
class HostEntry:
    """One ``Host`` line of a config: its patterns and the forward keywords of its block."""

    line: int  # 1-based
    patterns: tuple[str, ...]
    forward_keywords: tuple[str, ...]


def line_ending(data: bytes) -> bytes:
    """The file's line-ending style: CRLF when most of its lines end so, LF otherwise."""
    crlf = data.count(b"\r\n")
    return b"\r\n" if crlf and crlf * 2 > data.count(b"\n") else b"\n"


def keyword(line: bytes) -> bytes | None:
    """The lowercased keyword of a config line; None for a blank or comment line.

    OpenSSH splits the keyword at whitespace or one ``=`` after leading whitespace.
    """
    text = line.rstrip(b"\r\n").lstrip(_SPACE)
    if not text or text.startswith(b"#"):
        return None
    end = len(text)
    for i, ch in enumerate(text):
        if ch in b" \t=":
            end = i
            break
    return text[:end].lower()


def arguments(line: bytes) -> list[bytes]:
    """The arguments after the keyword, split as ssh does (double quotes group words)."""
    text = line.rstrip(b"\r\n").lstrip(_SPACE)
    key = keyword(line)
    if key is None:
        return []
    rest = text[len(key):].lstrip(_SPACE)
    if rest.startswith(b"="):
        rest = rest[1:]
    words: list[bytes] = []
    for match in re.finditer(rb'"([^"]*)"|([^\s"]+)', rest):
        word = match.group(1) if match.group(1) is not None else match.group(2)
        if word.startswith(b"#") and match.group(1) is None:
            break  # a trailing comment
        words.append(word)
    return words


def include_directive(path: str) -> bytes:
    """The Include line (without line ending) for the owned file's path.

    Raises UnsafeIncludePath for a path that quoting cannot make safe.
    """
    raw = path.encode("utf-8", "surrogateescape")
    if not raw or _UNSAFE_PATH.search(raw):
        raise UnsafeIncludePath(
            f"{path!r} holds a character an Include line cannot carry safely "
            "(quote, backslash, glob character, '$', '%' or a control character)"
        )
    if any(ch in raw for ch in b" \t#="):
        raw = b'"' + raw + b'"'
    return INCLUDE_KEYWORD + b" " + raw


def _split(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True) if data else []


def _is_comment(line: bytes) -> bool:
    return line.lstrip(_SPACE).startswith(b"#")


def insertion_offset(data: bytes) -> int | None:
    """Where the Include goes: before the first Host/Match line and the comment lines attached
    to it (so a ``# section`` header stays with its block); None when the file has no block."""
    lines = _split(data)
    for index, line in enumerate(lines):
        if keyword(line) in _BLOCK_KEYWORDS:
            start = index
            while start > 0 and _is_comment(lines[start - 1]):
                start -= 1
            return sum(len(x) for x in lines[:start])
    return None


def _marker_index(lines: list[bytes]) -> int | None:
    for index, line in enumerate(lines[:-1]):
        if line.rstrip(b"\r\n") == MARKER and keyword(lines[index + 1]) == b"include":
            return index
    return None


def current_include(data: bytes) -> bytes | None:
    """Our Include line (without line ending) if the file has it."""
    lines = _split(data)
    index = _marker_index(lines)
    return None if index is None else lines[index + 1].rstrip(b"\r\n")


def add_include(data: bytes, directive: bytes) -> bytes:
    """``data`` with our marker and ``directive`` inserted where OpenSSH honours it.

    Every other byte is kept. A file that already holds exactly this directive is returned
    unchanged; one holding another of ours has it replaced.
    """
    existing = current_include(data)
    if existing == directive:
        return data
    if existing is not None:
        data = remove_include(data)
    eol = line_ending(data)
    block = MARKER + eol + directive + eol
    offset = insertion_offset(data)
    if offset is None:
        if data and not data.endswith(b"\n"):
            # Keep "no final newline" visible, so that removal knows to restore it.
            return data + eol + MARKER + eol + directive
        return data + block
    return data[:offset] + block + eol + data[offset:]


def remove_include(data: bytes) -> bytes:
    """``data`` without what ``add_include`` added: the original bytes when nothing around our
    lines was edited since; otherwise just our two lines (and their blank line) taken out."""
    lines = _split(data)
    index = _marker_index(lines)
    if index is None:
        return data
    directive = lines[index + 1].rstrip(b"\r\n")
    start = sum(len(x) for x in lines[:index])
    end = start + len(lines[index]) + len(lines[index + 1])
    after = data[end:]
    blank = after[: len(after) - len(after.lstrip(b"\r\n"))]
    blank_line = b"\r\n" if blank.startswith(b"\r\n") else b"\n" if blank.startswith(b"\n") else b""
    before = data[:start]
    candidates = [before + after[len(blank_line):], before + after]
    for eol in (b"\r\n", b"\n"):
        if before.endswith(eol) and not after:
            candidates.append(before[: -len(eol)])
    for candidate in candidates:
        if add_include(candidate, directive) == data:
            return candidate
    return candidates[0]


def host_entries(data: bytes) -> list[HostEntry]:
    """The Host lines of a config with the forward keywords found in each block."""
    entries: list[HostEntry] = []
    current: tuple[int, tuple[str, ...]] | None = None
    forwards: list[str] = []

    def close() -> None:
        if current is not None:
            entries.append(HostEntry(current[0], current[1], tuple(forwards)))

    for number, line in enumerate(_split(data), start=1):
        key = keyword(line)
        if key in _BLOCK_KEYWORDS:
            close()
            forwards = []
            current = None
            if key == b"host":
                words = arguments(line)
                current = (number, tuple(w.decode("utf-8", "replace") for w in words))
        elif key in (b"localforward", b"remoteforward", b"dynamicforward") and current:
            forwards.append(key.decode())
    close()
    return entries


def is_plain_alias(pattern: str) -> bool:
    """True for a Host pattern that names one host: no wildcard and no negation."""
    return bool(pattern) and not any(ch in pattern for ch in "*?![]")

"""Control, bidi and invisible characters are printed escaped, and huge values cut short."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from sshwrap.cli.render import error_text, rendered, table
from sshwrap.cli.render import profiles as _profiles_rendering  # noqa: F401
from sshwrap.errors import InvalidInput, Problem
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.textsafe import escaped, shortened, shown
from sshwrap.usecases.profiles import ProfileEntry, ProfileList
from tests.helpers import run_sshwrap

#: Characters a terminal acts on or hides: ESC, CR, BEL, backspace, NUL, DEL, C1 CSI and NEL,
#: bidi override and isolate, zero-width space and joiner, BOM, line separator, soft hyphen.
HIDDEN = ["\x1b", "\r", "\x07", "\x08", "\x00", "\x7f", "\x9b", "\x85", "\u202e", "\u2066",
          "\u200b", "\u200d", "\ufeff", "\u2028", "\u00ad"]


def _raw_hidden(data: bytes) -> list[str]:
    text = data.decode("utf-8", "surrogateescape")
    return [c for c in HIDDEN if c in text]


@pytest.mark.parametrize("char", HIDDEN)
def test_every_hidden_character_is_escaped(char: str) -> None:
    out = escaped(f"a{char}b")
    assert char not in out and out.startswith("a\\") and out.endswith("b")
    assert escaped(out) == out  # escaping twice is escaping once


def test_visible_text_is_left_as_it_is() -> None:
    for text in ("db.example:3306", "café 日本 ☃", "C:\\path\\x1b", ""):
        assert escaped(text) == text
    assert escaped("a\tb\nc") == "a\\x09b\\x0ac"
    assert escaped("a\tb\nc\x1b", keep_layout=True) == "a\tb\nc\\x1b"
    assert escaped("\U000e0041") == "\\U000e0041"  # a tag character: invisible


def test_every_ascii_control_is_escaped_without_the_unicode_table() -> None:
    # Multi-line text (every report the lane prints) must not load unicodedata, 1 MB of
    # shared library, for its newlines: ASCII needs no table look-up.
    import subprocess
    import sys

    code = ("import sys; from sshwrap.textsafe import escaped; "
            "out = escaped(''.join(map(chr, range(128))), keep_layout=True); "
            "print(out); print('unicodedata' in sys.modules)")
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    out, loaded = ran.stdout.rsplit("\n", 2)[:2]
    controls = [c for c in map(chr, range(128)) if not " " <= c <= "~" and c not in "\n\t"]
    assert loaded == "False"
    assert not any(c in out for c in controls)
    assert all(f"\\x{ord(c):02x}" in out for c in controls)


def test_long_values_keep_start_and_end() -> None:
    assert shortened("short") == "short"
    cut = shortened("A" * 10_000 + "END", 90)
    assert cut.startswith("A" * 60) and cut.endswith("END")
    assert "[9913 characters left out]" in cut and len(cut) < 140
    assert shown("\x1b" * 1000) == "'" + "\\x1b" * 60 + "'... (1000 characters)"


def test_list_rendering_escapes_a_hostile_host() -> None:
    entry = ProfileEntry("evil", "/p/evil.toml", "h\x1b[2J\rost", ("j\u202eump",), "ssh",
                         ("local 1 -> t\x9bo:2",), ("tag",), "")
    out = rendered(ProfileList(("/p",), (entry,)))
    assert not _raw_hidden(out.encode())
    assert "h\\x1b[2J\\x0dost via j\\u202eump" in out and "t\\x9bo:2" in out


def test_table_columns_line_up_after_escaping() -> None:
    lines = table(["A", "B"], [["\x1b", "X"], ["abcd", "Y"]]).splitlines()
    assert [line.index(c) for line, c in zip(lines[1:], "XY", strict=True)] == [6, 6]


def test_an_error_quoting_a_huge_hostile_value_is_short_and_escaped() -> None:
    value = "\x1b]0;title\x07" + "h" * 10_000_000
    text = error_text(InvalidInput(Problem(f"host {value!s} is not valid", key="host",
                                           file="/p/x.toml"),
                                   hint=f"did you mean {value}?"))
    assert not _raw_hidden(text.encode())
    assert len(text) < 2500 and text.count("\n") == 2
    assert text.startswith("sshwrap: error: /p/x.toml: host: host \\x1b]0;title\\x07hhh")
    assert "is not valid\n" in text and "characters left out" in text


_sshwrap = partial(run_sshwrap, text=False, timeout=60)


def test_list_prints_no_raw_control_characters(profiles_dir: Path) -> None:
    (profiles_dir / "esc.toml").write_text(
        'host = "db\\u001b[31m\\rexample"\n[[forward]]\ntype = "local"\nlisten = 1\n'
        'to = "t\\u001b]0;x\\u0007:2"\n')
    (profiles_dir / "bidi.toml").write_text(
        'host = "db.example"\n[[forward]]\ntype = "local"\nlisten = 1\n'
        'to = "t\\u202e\\u200b:2"\n')
    done = _sshwrap("list")
    assert done.returncode == 0, done.stderr
    assert b"esc" in done.stdout and b"bidi" in done.stdout
    assert not _raw_hidden(done.stdout + done.stderr)


def test_logs_show_what_a_server_sent_escaped(state_dir: Path) -> None:
    paths = StatePaths(state_dir).ensure()
    paths.log("db").write_bytes(
        b"banner \x1b[2J\x1b]0;owned\x07 \xc2\x9b1m \xe2\x80\xae reversed\r\nsecond\tline\n")
    done = _sshwrap("logs", "db")
    assert done.returncode == 0, done.stderr
    assert not _raw_hidden(done.stdout)
    assert done.stdout == (b"banner \\x1b[2J\\x1b]0;owned\\x07 \\x9b1m \\u202e reversed\n"
                           b"second\tline\n")


def test_config_sync_diff_shows_ssh_config_lines_escaped(tmp_path: Path,
                                                          profiles_dir: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_bytes(b"# owned by \x1b[8mhidden\x1b[0m and \xe2\x80\xae\nHost old\n")
    (profiles_dir / "db.toml").write_text(
        'host = "db.example"\n[[forward]]\ntype = "local"\nlisten = 1\nto = "t:2"\n')
    done = _sshwrap("config", "sync", "--dry-run", "--file", str(config))
    assert done.returncode == 0, done.stderr
    assert not _raw_hidden(done.stdout + done.stderr)
    assert b"\\x1b[8mhidden" in done.stdout


@pytest.mark.parametrize("command", [["validate"], ["list"], ["compile", "big"],
                                     ["check", "big"], ["up", "big"]])
def test_a_huge_host_is_not_echoed_whole(command: list[str], profiles_dir: Path,
                                          state_dir: Path) -> None:
    (profiles_dir / "big.toml").write_text(
        # just under the size a profile file may have (a larger file is refused unread)
        f'host = "{"h" * 1_000_000}"\n[[forward]]\ntype = "local"\nlisten = 1\nto = "t:2"\n')
    done = _sshwrap(*command)
    assert done.returncode in (0, 2, 8), done.stderr[:2000]
    assert b"big" in done.stdout + done.stderr
    assert len(done.stdout) + len(done.stderr) < 3000
    assert b"... (1000000 characters)" in done.stdout + done.stderr

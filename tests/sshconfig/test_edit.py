"""Pure, byte-exact edits of ssh_config: where the Include lands and that removal restores bytes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sshwrap.core.model import Forward, ForwardType, Profile, TcpAddress
from sshwrap.sshconfig import edit, owned

DATA = Path(__file__).resolve().parent.parent / "data" / "ssh-configs"
CORPUS = sorted(DATA.glob("*.conf"))
DIRECTIVE = edit.include_directive("/home/u/.ssh/sshwrap.conf")


def first_block_line(data: bytes) -> int | None:
    for index, line in enumerate(data.splitlines()):
        if edit.keyword(line) in (b"host", b"match"):
            return index
    return None


def marker_line(data: bytes) -> int:
    return data.splitlines().index(edit.MARKER)


def test_corpus_is_complete() -> None:
    assert len(CORPUS) == 30
    assert (DATA / "SOURCES.md").is_file()


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name[:2])
def test_corpus_round_trip(path: Path) -> None:
    original = path.read_bytes()
    added = edit.add_include(original, DIRECTIVE)
    assert added != original
    assert edit.add_include(added, DIRECTIVE) == added
    assert edit.remove_include(added) == original
    block = first_block_line(added)
    if block is not None:
        assert marker_line(added) + 1 < block


def test_host_star_first_gets_include_before_it() -> None:
    data = b"Host *\n    User bob\nHost x\n    HostName y\n"
    added = edit.add_include(data, DIRECTIVE)
    assert added == edit.MARKER + b"\n" + DIRECTIVE + b"\n\n" + data


@pytest.mark.parametrize("first", [
    b"host *\n", b"  Host foo\n", b"Host=foo\n", b"HOST\tfoo\n", b"Match exec \"true\"\n",
    b"match all\n", b"\tMatch host x\n",
])
def test_any_spelling_of_a_block_start_counts(first: bytes) -> None:
    data = b"Compression yes\n" + first + b"  Include other.conf\n"
    added = edit.add_include(data, DIRECTIVE)
    assert added.startswith(b"Compression yes\n" + edit.MARKER + b"\n")


def test_attached_comments_stay_with_their_block() -> None:
    data = b"Compression yes\n\n# work hosts\n# (all of them)\nHost w\n"
    added = edit.add_include(data, DIRECTIVE)
    assert added == (b"Compression yes\n\n" + edit.MARKER + b"\n" + DIRECTIVE + b"\n\n"
                     b"# work hosts\n# (all of them)\nHost w\n")


def test_crlf_file_gets_crlf_lines() -> None:
    data = b"Compression yes\r\nHost a\r\n  User b\r\n"
    added = edit.add_include(data, DIRECTIVE)
    assert b"\r\n" + DIRECTIVE + b"\r\n\r\nHost a" in added
    assert added.count(b"\n") == added.count(b"\r\n")


def test_no_block_and_no_final_newline() -> None:
    data = b"Include config.d/*"
    added = edit.add_include(data, DIRECTIVE)
    assert added == data + b"\n" + edit.MARKER + b"\n" + DIRECTIVE
    assert edit.remove_include(added) == data
    with_newline = edit.add_include(data + b"\n", DIRECTIVE)
    assert edit.remove_include(with_newline) == data + b"\n"


def test_empty_file() -> None:
    assert edit.add_include(b"", DIRECTIVE) == edit.MARKER + b"\n" + DIRECTIVE + b"\n"
    assert edit.remove_include(edit.add_include(b"", DIRECTIVE)) == b""


def test_changed_path_replaces_our_include_only() -> None:
    data = b"Host a\n"
    other = edit.include_directive("/elsewhere/sshwrap.conf")
    moved = edit.add_include(edit.add_include(data, DIRECTIVE), other)
    assert moved == edit.add_include(data, other)


def test_user_edits_elsewhere_survive_removal() -> None:
    added = edit.add_include(b"Compression yes\nHost a\n", DIRECTIVE)
    edited = added.replace(b"Host a\n", b"Host a\n  User me\n")
    assert edit.remove_include(edited) == b"Compression yes\nHost a\n  User me\n"


def test_file_without_our_lines_is_left_alone() -> None:
    data = b"Include sshwrap.conf\nHost a\n"
    assert edit.remove_include(data) == data


@pytest.mark.parametrize("path", ["/a/b c/sshwrap.conf", "/x#y/sshwrap.conf"])
def test_include_path_with_space_is_quoted(path: str) -> None:
    assert edit.include_directive(path) == b'Include "' + path.encode() + b'"'


@pytest.mark.parametrize("path", ['/a"b', "/a\nProxyCommand x", "/a/*", "/a/${X}", "/a\\b", ""])
def test_unsafe_include_path_is_refused(path: str) -> None:
    with pytest.raises(edit.UnsafeIncludePath):
        edit.include_directive(path)


def test_host_entries_find_forwards() -> None:
    data = (b"Host *\n LocalForward 1 a:1\nHost a b*\n\tlocalforward=2 b:2\n"
            b"Match host c\n RemoteForward 3 c:3\nhost \"d\"  # note\n DynamicForward 4\n")
    entries = edit.host_entries(data)
    assert [(e.patterns, e.forward_keywords) for e in entries] == [
        (("*",), ("localforward",)), (("a", "b*"), ("localforward",)),
        (("d",), ("dynamicforward",)),
    ]


# --- owned-file blocks --------------------------------------------------------------------

def _profile(**changes: object) -> Profile:
    fields: dict[str, object] = {
        "name": "db", "host": "db.example.net",
        "forwards": (Forward(ForwardType.LOCAL, TcpAddress(None, 3307),
                             TcpAddress("db", 3306)),),
    }
    fields.update(changes)
    return Profile(**fields)  # type: ignore[arg-type]


def test_compiled_block_passes_the_check() -> None:
    from sshwrap.core.compile.config import compile_config

    block = owned.check_block("db", compile_config(_profile()))
    assert block.startswith(b"Host db\n")


@pytest.mark.parametrize("changes", [
    {"name": "db*"}, {"name": "a b"}, {"name": "!db"},
    {"options": (("ProxyCommand", "sh -c x"),)}, {"options": (("LocalCommand", "x"),)},
    {"options": (("Include", "/tmp/x"),)}, {"options": (("Match", "all"),)},
])
def test_hostile_profile_cannot_reach_the_owned_file(changes: dict[str, object]) -> None:
    from sshwrap.core.compile.config import compile_config

    profile = _profile(**changes)
    with pytest.raises((owned.UnsafeBlock, ValueError)):
        owned.check_block(profile.name, compile_config(profile))


def test_newline_in_a_value_is_refused() -> None:
    from sshwrap.core.compile import NotExpressible
    from sshwrap.core.compile.config import compile_config

    with pytest.raises(NotExpressible):
        compile_config(_profile(host="x\n    ProxyCommand sh"))


def test_owned_sections_round_trip() -> None:
    sections = {"b": b"Host b\n    HostName b\n", "a": b"Host a\n    HostName a\n"}
    data = owned.render(sections)
    assert owned.is_owned(data)
    assert owned.parse_sections(data) == sections
    assert data.index(b"Host a") < data.index(b"Host b")


def test_pure_modules_start_no_processes() -> None:
    code = ("import sys, sshwrap.sshconfig.edit, sshwrap.sshconfig.owned, "
            "sshwrap.sshconfig.effective; "
            "print(sorted({'subprocess','psutil','pexpect','socket'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


# --- properties over generated config files -----------------------------------------------

_word = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.-_", min_size=1, max_size=8)
_space = st.sampled_from(["", " ", "  ", "\t", " \t "])
_comment_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\r\n\x0b\x0c"
                           "\x1c\x1d\x1e\x85\u2028\u2029"),
    max_size=30,
)


@st.composite
def _line(draw: st.DrawFn) -> str:  # noqa: PLR0911 (one return per kind of line reads best)
    kind = draw(st.sampled_from(["comment", "blank", "option", "include", "host", "match",
                                 "body"]))
    lead = draw(_space)
    trail = draw(_space)
    if kind == "comment":
        return f"{lead}#{draw(_comment_text)}"
    if kind == "blank":
        return lead + trail
    sep = draw(st.sampled_from([" ", "\t", "=", " = ", "  "]))
    if kind == "option":
        key, value = draw(st.sampled_from([
            ("Compression", "yes"), ("compression", "no"), ("ServerAliveInterval", "30"),
            ("FORWARDAGENT", "no"), ("User", "someone"), ("SendEnv", "LANG LC_*"),
        ]))
        return f"{lead}{key}{sep}{value}{trail}"
    if kind == "include":
        return f"{lead}Include{sep}config.d/{draw(_word)}*{trail}"
    if kind == "host":
        key = draw(st.sampled_from(["Host", "host", "HOST"]))
        pattern = draw(st.sampled_from(["*", "!x", "a*"]) | _word)
        return f"{lead}{key}{sep}{pattern}{trail}"
    if kind == "match":
        key = draw(st.sampled_from(["Match", "match"]))
        crit = draw(st.sampled_from(['all', 'exec "true"', 'host x,y', 'final host z']))
        return f"{lead}{key}{sep}{crit}{trail}"
    body = draw(st.sampled_from(["LocalForward 8001 x:80", "ForwardX11 no", "Port 2201"]))
    return f"{draw(st.sampled_from(['  ', chr(9), '    ']))}{body}{trail}"


@st.composite
def config_files(draw: st.DrawFn) -> bytes:
    lines = [line.encode() for line in draw(st.lists(_line(), max_size=25))]
    if draw(st.booleans()):
        lines.insert(0, b"Host *")
    style = draw(st.sampled_from(["lf", "crlf", "mixed"]))
    out = b""
    for line in lines:
        eol = {"lf": b"\n", "crlf": b"\r\n"}.get(style) or draw(st.sampled_from([b"\n",
                                                                                  b"\r\n"]))
        out += line + eol
    no_final_newline: bool = draw(st.booleans())
    if lines and no_final_newline:
        out = out.rstrip(b"\r\n")
    return out


@settings(max_examples=400, deadline=None)
@given(config_files())
def test_sync_then_remove_gives_back_the_bytes(data: bytes) -> None:
    added = edit.add_include(data, DIRECTIVE)
    assert edit.remove_include(added) == data


@settings(max_examples=400, deadline=None)
@given(config_files())
def test_add_is_idempotent(data: bytes) -> None:
    added = edit.add_include(data, DIRECTIVE)
    assert edit.add_include(added, DIRECTIVE) == added
    assert edit.current_include(added) == DIRECTIVE


@settings(max_examples=400, deadline=None)
@given(config_files())
def test_include_lands_before_the_first_block_at_top_level(data: bytes) -> None:
    added = edit.add_include(data, DIRECTIVE)
    lines = added.splitlines()
    at = lines.index(edit.MARKER)
    assert lines[at + 1] == DIRECTIVE
    assert all(edit.keyword(line) not in (b"host", b"match") for line in lines[:at])
    # every byte of the original is kept, in order, around one inserted run
    offset = edit.insertion_offset(data)
    inserted = len(added) - len(data)
    if offset is None:
        assert added.startswith(data)
    else:
        assert added[:offset] + added[offset + inserted:] == data

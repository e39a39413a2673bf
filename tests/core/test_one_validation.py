"""One validation: whatever ``validate`` accepts compiles to every target, and a target
refuses only what it cannot express (plink's limits are reported by ``validate`` itself for
client = "plink" profiles)."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from sshwrap.core.compile.values import require_parsed
from sshwrap.core.options import ALLOWED, MAX_OPTION_VALUE
from sshwrap.errors import InvalidInput
from sshwrap.store import ProfileStore, load_profile_file
from sshwrap.usecases.profiles import Target, compile_profile, validate

# Values near every edge the grammars draw: lengths at and past each limit (and the limits
# compilers once had of their own), scoped IPv6, wildcards, sockets, '~', non-ASCII, controls.
# Each field is mostly good, so that most profiles pass and reach the compilers.
LENGTHS = [1, 200, 201, 511, 512, 513, MAX_OPTION_VALUE - 1, MAX_OPTION_VALUE,
           MAX_OPTION_VALUE + 1, 100_000]
HOSTS = ["db.internal", "127.0.0.1", "::1", "fe80::1%eth0", "a" * 63 + ".example", "h_1"]
BAD_HOSTS = [".".join(["a" * 63] * 4), "-oProxyCommand=x", "ex\u0430mple.com", "0"]
PATHS = ["~/.ssh/id", "/k.ppk", "./key", "../k", "key.ppk", "/" + "a" * 1023]
BAD_PATHS = ["/" + "a" * 1024, "/a b", "~/x~y", "/x%h"]
BINDS = ["127.0.0.1:{p}", "[::1]:{p}", "localhost:{p}", "{p}"]
BAD_BINDS = ["0.0.0.0:{p}", "*:{p}"]
TARGETS = ["db:3306", "[fe80::1%eth0]:22", "/run/s.sock", "127.0.0.1:1", "web:80"]
LISTEN_SOCKETS = ["./s.sock", "/tmp/x.sock"]


def mostly(good: st.SearchStrategy[Any], edge: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` seven times in eight, ``edge`` otherwise."""
    return st.integers(0, 7).flatmap(lambda i: edge if i == 7 else good)


#: A value each allowed option takes, and one of a length near each limit where it takes text.
GOOD_OPTION = {"Ciphers": "aes128-ctr", "MACs": "hmac-sha2-256", "KexAlgorithms": "+curve25519",
               "HostKeyAlgorithms": "ssh-ed25519", "PubkeyAcceptedAlgorithms": "^rsa-sha2-512",
               "PubkeyAcceptedKeyTypes": "ssh-ed25519", "CASignatureAlgorithms": "ssh-ed25519",
               "ConnectTimeout": 30, "ConnectionAttempts": "3", "AddressFamily": "INET6",
               "IPQoS": "ef", "TCPKeepAlive": True, "IdentitiesOnly": "Yes",
               "IdentityAgent": "SSH_AUTH_SOCK", "CertificateFile": "~/.ssh/c.pub",
               "PreferredAuthentications": "publickey", "PubkeyAuthentication": "no",
               "GSSAPIAuthentication": False, "RekeyLimit": "1G", "RequiredRSASize": 2048,
               "BindAddress": "fe80::1%eth0", "BindInterface": "eth0"}
LONG_OPTION = {"Ciphers": lambda n: ",".join(["aes128-ctr"] * (n // 11 + 1))[:n].rstrip(","),
               "KexAlgorithms": lambda n: "a" * n,
               "CertificateFile": lambda n: "/" + "c" * (n - 1),
               "IdentityAgent": lambda n: "/" + "s" * (n - 1)}


def _option_value(name: str) -> st.SearchStrategy[object]:
    edge = st.one_of(
        st.sampled_from(["a b", "x\n", "%h", "0", "-1", "", "yes please"]),
        st.integers(-1, 20000), st.booleans(),
        st.text(st.characters(codec="utf-8"), max_size=8))
    if name in LONG_OPTION:
        edge = edge | st.sampled_from(LENGTHS).map(LONG_OPTION[name])
    return mostly(st.just(GOOD_OPTION[name]), edge)


@st.composite
def options(draw: st.DrawFn) -> dict[str, object]:
    names = draw(st.lists(st.sampled_from([a.name for a in ALLOWED.values()]), min_size=1,
                          max_size=2, unique=True))
    assert set(GOOD_OPTION) == {a.name for a in ALLOWED.values()}
    return {name: draw(_option_value(name)) for name in names}


@st.composite
def forwards(draw: st.DrawFn, plink: bool) -> dict[str, Any]:
    kind = draw(st.sampled_from(["local", "remote", "dynamic"]))
    port = draw(st.sampled_from([0, 1, 65535]) | st.integers(1024, 65000))
    binds = BINDS if plink else [*BINDS, *LISTEN_SOCKETS]
    listen: object = draw(mostly(st.sampled_from(binds),
                                 st.sampled_from(BAD_BINDS))).format(p=port)
    if listen == str(port) and draw(st.booleans()):
        listen = port
    forward: dict[str, Any] = {"type": kind, "listen": listen}
    if kind != "dynamic":
        forward["to"] = draw(st.sampled_from(TARGETS[:2] if plink else TARGETS))
    if draw(mostly(st.just(False), st.just(True))):
        forward["public"] = True
    return forward


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """A profile document; a plink one mostly keeps within what plink can do (its limits
    are drawn too, but less often, so that plink profiles also reach the compilers)."""
    plink = draw(st.booleans())
    doc: dict[str, Any] = {
        "host": draw(mostly(st.sampled_from(HOSTS), st.sampled_from(BAD_HOSTS))),
        "forward": draw(st.lists(forwards(plink), min_size=1, max_size=2))}
    if plink:
        doc["client"] = "plink"
    optional: dict[str, st.SearchStrategy[Any]] = {
        "user": mostly(st.sampled_from(["git", "u" * 64]), st.sampled_from(["u" * 65, "-x"])),
        "port": mostly(st.integers(1, 65535), st.sampled_from([0, 65536])),
        "identity_file": mostly(st.sampled_from(["/k.ppk", "./k.ppk"] if plink else PATHS),
                                st.sampled_from(BAD_PATHS)),
        "description": mostly(st.sampled_from(LENGTHS).map(lambda n: "d" * min(n, 200)),
                              st.sampled_from(LENGTHS).map(lambda n: "d" * n)
                              | st.text(st.characters(codec="utf-8"), max_size=12)),
        "jump": st.lists(st.sampled_from(["gw", "u@gw:2222", "[::1]:22", "gw.example"]),
                         max_size=2),
        "compression": st.booleans(),
        "host_key": st.sampled_from(["strict", "SHA256:" + "A" * 43]
                                    + ([] if plink else ["accept-new"])),
    }
    beyond_plink: dict[str, st.SearchStrategy[Any]] = {
        "ssh_config_file": mostly(st.sampled_from(PATHS), st.sampled_from(BAD_PATHS)),
        "keepalive": st.integers(0, 60),
        "share_connection": st.booleans(),
        "options": options(),
    }
    for key, strategy in optional.items():
        if draw(st.integers(0, 3)) == 0:
            doc[key] = draw(strategy)
    for key, strategy in beyond_plink.items():
        if draw(st.integers(0, 7 if plink else 1)) == 0 or (key == "options" and not plink):
            doc[key] = draw(strategy)
    return doc


#: What each target may refuse of an accepted profile: only what it cannot express.
ABILITIES = {
    Target.SSH: r"forward\[\d+\]\.listen: listen = 0",
    Target.CONFIG: r"(ssh_config_file: a Host block cannot name|forward\[\d+\]\.listen: "
                   r"listen = 0)",
    Target.SYSTEMD: r"client: the unit runs OpenSSH",
    Target.LAUNCHD: r"client: the agent runs OpenSSH",
    Target.PLINK: r"(ssh_config_file|options\.\w+|keepalive|host_key|identity_file|"
                  r"share_connection|forward\[\d+\])(\.listen)?: (plink|listen = 0)",
}


@pytest.fixture
def where(state_dir: Path) -> Path:
    return state_dir


def _with_options(**values: object) -> dict[str, Any]:
    return {"host": "db", "forward": [{"type": "local", "listen": 1, "to": "a:1"}],
            "options": values}


# Where the compilers had checks of their own (an option value's alphabet and 512
# characters): all passed validate, and then compile refused them.
@example(doc=_with_options(BindAddress="fe80::1%eth0"))
@example(doc=_with_options(Ciphers=LONG_OPTION["Ciphers"](513)))
@example(doc=_with_options(CertificateFile=LONG_OPTION["CertificateFile"](700)))
@example(doc=_with_options(KexAlgorithms="a" * 100_000))
@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(documents())
def test_what_validate_accepts_compiles_to_every_target(where: Path,
                                                        doc: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "t.toml"
        path.write_text(tomli_w.dumps(doc))
        store = ProfileStore((Path(folder),))
        [result] = validate(store, [str(path)]).results
        if not result.ok:
            assert result.problems
            event("refused by validate: " + re.sub(r"^.*?: (\S+?)(\[\d+\])?[.:].*", r"\1",
                                                   result.problems[0]))
            return
        event(f"accepted, client {doc.get('client', 'ssh')}")
        profile = load_profile_file(path)
        require_parsed(profile, "any")  # the compilers' own check of every value
        for target in Target:
            try:
                compile_profile(store, str(path), target)
            except InvalidInput as exc:
                [line] = exc.lines()
                what = line.removeprefix(f"{path}: ")
                assert re.match(ABILITIES[target], what), (target, what)
                # plink's own limits were reported by validate for a plink profile.
                assert target is not Target.PLINK or profile.client.value == "ssh" \
                    or "listen = 0" in what, what


def test_an_option_value_too_long_is_refused_by_validate_with_its_length(
        profiles_dir: Path) -> None:
    (profiles_dir / "long.toml").write_text(tomli_w.dumps(
        _with_options(Ciphers="a" * 100_000, MACs="hmac-sha2-256")))
    [result] = validate(ProfileStore((profiles_dir,)), ["long"]).results
    assert result.problems == (f"{profiles_dir / 'long.toml'}: options.Ciphers: value is "
                               f"100000 characters long; at most {MAX_OPTION_VALUE}",)

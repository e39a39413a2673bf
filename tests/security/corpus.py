"""Hostile profiles: each one key set to a value an attacker would try, and the key to blame."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import tomli_w

#: Replaced by the path of a file that only an executed command would create.
SENTINEL = "@SENTINEL@"
RUN = f"touch {SENTINEL}"

BASE: dict[str, Any] = {
    "host": "gw.example.invalid",
    "user": "alice",
    "port": 2222,
    "forward": [{"type": "local", "listen": 3307, "to": "db.internal:3306"}],
}


@dataclass(frozen=True)
class Case:
    """``changes`` are merged into BASE (``forward`` keys into its first forward); ``key`` is
    the key path the one problem line must name (None: the file as a whole)."""

    id: str
    key: str | None
    changes: dict[str, Any] = field(default_factory=dict)
    forward: dict[str, Any] = field(default_factory=dict)
    raw: bytes | None = None  # the file's bytes, when it is no TOML tomli_w can write

    def document(self, sentinel: str) -> bytes:
        if self.raw is not None:
            return self.raw
        data = _replaced({**BASE, **self.changes}, sentinel)
        if self.forward:
            data["forward"] = [{**BASE["forward"][0], **_replaced(self.forward, sentinel)}]
        return tomli_w.dumps(data).encode()


def _replaced(value: Any, sentinel: str) -> Any:
    if isinstance(value, str):
        return value.replace(SENTINEL, sentinel)
    if isinstance(value, list):
        return [_replaced(v, sentinel) for v in value]
    if isinstance(value, dict):
        return {_replaced(k, sentinel): _replaced(v, sentinel) for k, v in value.items()}
    return value


HUGE = "a" * 400_000  # under the profile size limit, so the parser sees it whole

HOSTS = [
    "::1%h'$(cd;touch @SENTINEL@)'", f"h;{RUN}", f"h$({RUN})", f"`{RUN}`", f"h&&{RUN}",
    f"-oProxyCommand={RUN}", f"h\nProxyCommand {RUN}", "h\r", "h\x1b[31m", "gw\u202eexample",
    "gw.ex\u0430mple", "\uff47\uff57", "g\u0131t.example", "127.0.0.1\x00", "a" * 64 + ".x",
    "a." * 130 + "x", HUGE, "h%h", "h p", "'h'", "h#c", "fe80::1%eth0;x", "[::1]", "::1%",
    "::1%" + "a" * 16, "::1%a b", "0x7f000001", "127.1", "", "h\t", "h\u200b", "-h",
    "\u0661\u0662\u0667.0.0.1", "1:2:3:4:5:6:7:8:9", "h.-x", "h..x",
]
USERS = [f"a;{RUN}", "-oProxyCommand=x", "a b", "\uff41", "root\n", f"u$({RUN})", "%u",
         "r\u043eot", ""]
JUMPS = [["[::1%h'$(touch @SENTINEL@)']:22"], [f"j;{RUN}"], [f"-oProxyCommand={RUN}"],
         ["j:\u00b2\u00b2"], ["j:0"], ["\uff4a"], ["j\n"], ["[fe80::1%eth0]"],
         ["[fe80::1%eth0]:22"], ["u;x@j"], ["j:22:33"], ["j%h"]]
PATHS = [f"k;{RUN}", f"$({RUN})", "k\n", "k ", "%d/k", "\uff4b", "-k", "k`x`", "a\\b",
         "k\x1b]0;x\x07"]
REFUSED_OPTIONS = [
    ("ProxyCommand", RUN), ("proxycommand", RUN), ("PROXYCOMMAND", RUN), ("pRoXyJuMp", "j"),
    ("LocalCommand", RUN), ("PermitLocalCommand", "yes"), ("KnownHostsCommand", RUN),
    ("NoHostAuthenticationForLocalhost", "yes"), ("nohostauthenticationforlocalhost", True),
    ("UserKnownHostsFile", "/dev/null"), ("GlobalKnownHostsFile", "/dev/null"),
    ("StrictHostKeyChecking", "no"), ("NumberOfPasswordPrompts", 5),
    ("StreamLocalBindUnlink", "yes"), ("StreamLocalBindMask", "0000"),
    ("ForwardAgent", "yes"), ("ForwardX11", "yes"), ("SendEnv", "AWS_SECRET"),
    ("SetEnv", "A=b"), ("GatewayPorts", "yes"), ("ControlPath", "/tmp/x"),
    ("HostKeyAlias", "other"), ("HostName", "evil.example"), ("Port", 23), ("User", "root"),
    ("IdentityFile", "/root/.ssh/id"), ("PKCS11Provider", "/tmp/x.so"),
    ("SecurityKeyProvider", "/tmp/x.so"), ("RemoteCommand", RUN), ("Include", "/tmp/x"),
    ("Match", "all"), ("CanonicalizeHostname", "yes"), ("BatchMode", "no"),
    ("ExitOnForwardFailure", "no"), ("Tunnel", "yes"), ("XAuthLocation", "/bin/sh"),
    ("UpdateHostKeys", "yes"), ("VerifyHostKeyDNS", "yes"), ("CheckHostIP", "no"),
    ("PasswordAuthentication", "yes"), ("LogLevel", "QUIET"), ("Cipher", "aes128-ctr"),
    ("\u0421iphers", "aes128-ctr"), ("Ciphers\n", "aes128-ctr"), ("Proxy Command", RUN),
]
BAD_OPTION_VALUES = [
    ("Ciphers", f"aes128-ctr;{RUN}"), ("Ciphers", f"aes128-ctr\nProxyCommand {RUN}"),
    ("MACs", "hmac-sha2-256 x"), ("ConnectTimeout", "\uff15"), ("ConnectTimeout", -1),
    ("AddressFamily", "\u0131net"), ("IdentityAgent", f"$({RUN})"),
    ("CertificateFile", "/a b"), ("BindInterface", "eth0;x"), ("BindAddress", "1.2.3.4;x"),
    ("TCPKeepAlive", "maybe"), ("KexAlgorithms", ["x"]), ("IPQoS", "af21 cs1;x"),
]
LISTENS = [
    ("127.lan.example:8080", "forward[0].listen"), ("0.0.0.0:8080", "forward[0].listen"),
    ("*:8080", "forward[0].listen"), ("[::]:8080", "forward[0].listen"),
    ("127.0.0.1:\u00b2", "forward[0].listen"), ("127.0.0.1:\uff18\uff10", "forward[0].listen"),
    ("localhost:80;x", "forward[0].listen"), ("[::1%h'$(touch @SENTINEL@)']:80",
                                              "forward[0].listen"),
    ("127.0.0.2.nip.io:80", "forward[0].listen"), ("::ffff:127.0.0.1:80", "forward[0].listen"),
    ("/tmp/a b.sock", "forward[0].listen"), (f"/tmp/$({RUN})", "forward[0].listen"),
]
TARGETS = [
    "[::1%x'$(touch @SENTINEL@)']:80", f"db:3306;{RUN}", "db:\uff13\uff13\uff10\uff16",
    f"$({RUN}):1", "./relative.sock", "-oProxyCommand=x:1", "db\n:1", "db:0", "db",
    "\u0430db:1", "~/s.sock",
]


def _value_cases() -> list[Case]:
    """Hostile values of the connection keys: host, user, port, jump, paths, options."""
    cases: list[Case] = []
    add = cases.append
    add(Case("scope-with-jump", "host", {"host": HOSTS[0], "jump": ["j.example.invalid"]}))
    for i, host in enumerate(HOSTS[1:]):
        add(Case(f"host-{i}", "host", {"host": host}))
    for i, user in enumerate(USERS):
        add(Case(f"user-{i}", "user", {"user": user}))
    for i, port in enumerate(["22", -1, 0, 70000, True, 1.5]):
        add(Case(f"port-{i}", "port", {"port": port}))
    for i, jump in enumerate(JUMPS):
        add(Case(f"jump-{i}", "jump[0]", {"jump": jump}))
    for i, path in enumerate(PATHS):
        add(Case(f"identity-{i}", "identity_file", {"identity_file": path}))
    for i, path in enumerate(PATHS[:4]):
        add(Case(f"config-file-{i}", "ssh_config_file", {"ssh_config_file": path}))
    for i, (name, value) in enumerate(REFUSED_OPTIONS + BAD_OPTION_VALUES):
        add(Case(f"option-{i}", f"options.{name}", {"options": {name: value}}))
    return cases


def _other_cases() -> list[Case]:
    """Forwards, descriptive keys, unknown keys and files that are no valid TOML at all."""
    cases: list[Case] = []
    add = cases.append
    for i, (listen, key) in enumerate(LISTENS):
        add(Case(f"listen-{i}", key, forward={"listen": listen}))
    for i, target in enumerate(TARGETS):
        add(Case(f"to-{i}", "forward[0].to", forward={"to": target}))
    add(Case("remote-relative-listen", "forward[0].listen",
             forward={"type": "remote", "listen": "../x.sock", "to": "127.0.0.1:80"}))
    for i, text in enumerate(["a\nb", "a\x1b[2J", "\u202eevil", "x" * 201]):
        add(Case(f"description-{i}", "description", {"description": text}))
    for i, tags in enumerate([["a b"], [f"$({RUN})"], ["\uff54"]]):
        add(Case(f"tag-{i}", "tags[0]", {"tags": tags}))
    for key, values in (("keepalive", [-1, 4000, "3", True]), ("client", ["putty", "ssh\n"]),
                        ("host_key", ["no", "SHA256:x", "accept-new\n", "yes"]),
                        ("auth", ["none"]), ("password_env", ["A B", f"$({RUN})", "PW\n"]),
                        ("compression", ["yes"]), ("share_connection", [1])):
        for i, value in enumerate(values):
            add(Case(f"{key}-{i}", key, {key: value}))
    for i, value in enumerate(["local\n", "Local"]):
        add(Case(f"type-{i}", "forward[0].type", forward={"type": value}))
    add(Case("probe", "forward[0].probe", forward={"probe": "tcp;x"}))
    add(Case("public", "forward[0].public", forward={"public": "yes"}))
    add(Case("unknown-key-escape", "\x1b[31mevil", {"\x1b[31mevil": 1}))
    add(Case("password-in-profile", "password", {"password": "hunter2"}))
    add(Case("not-utf8", None, raw=b'host = "\xff\xfe"\n'))
    add(Case("deep-nesting", None, raw=b"x = " + b"[" * 50_000 + b"]" * 50_000 + b"\n"))
    add(Case("toml-syntax", None, raw=b'host = "unterminated\n'))
    add(Case("huge-integer", None, raw=b"port = " + b"9" * 5000 + b"\n"))
    add(Case("huge-file", None, raw=b'host = "' + b"a" * (2 << 20) + b'"\n'))
    add(Case("table-as-host", "host", raw=b'host = { a = 1 }\n[[forward]]\ntype = "local"\n'
             b'listen = 1\nto = "a:1"\n'))
    return cases


CASES = _value_cases() + _other_cases()

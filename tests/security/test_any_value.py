"""Any TOML value under any key is a profile or one-line bad input per problem, never exit 1."""

from __future__ import annotations

import contextlib
import datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sshwrap.core.binds import HostFacts
from sshwrap.core.compile import NotExpressible
from sshwrap.core.compile.config import compile_config
from sshwrap.core.compile.plink import compile_plink
from sshwrap.core.compile.ssh import compile_ssh
from sshwrap.core.parse import FORWARD_KEYS, PROFILE_KEYS, parse_profile
from sshwrap.errors import InvalidInput

scalars = (st.text(max_size=30) | st.integers() | st.integers(-(10**40), 10**40)
           | st.floats(allow_nan=True) | st.booleans()
           | st.datetimes(max_value=datetime.datetime(9999, 1, 1))
           | st.sampled_from(["127.0.0.1:80", "db:1", "/tmp/s.sock", "local", "remote",
                              "dynamic", "gw", "[::1]:22", "strict", "SHA256:" + "A" * 43,
                              "aes128-ctr", "fe80::1%eth0"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=10), inner, max_size=3), max_leaves=8)
forward_tables = st.dictionaries(st.sampled_from([*FORWARD_KEYS, "colour"]), values, max_size=5)
option_tables = st.dictionaries(st.sampled_from(["Ciphers", "connecttimeout", "AddressFamily",
                                                 "IdentityAgent", "ProxyCommand", "x y"]),
                                values, max_size=3)


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    data = draw(st.dictionaries(st.sampled_from([*PROFILE_KEYS, "password", "unknown"]), values,
                                max_size=8))
    if draw(st.booleans()):
        data["forward"] = draw(st.lists(forward_tables | values, max_size=3))
    if draw(st.booleans()):
        data["options"] = draw(option_tables | values)
    return data


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_any_document_is_a_profile_or_bad_input(data: dict[str, Any]) -> None:
    try:
        profile = parse_profile("any", data, source="any.toml")
    except InvalidInput as exc:
        assert exc.problems
        for line in exc.lines():
            assert line.startswith("any.toml: ")
            assert "\n" not in line and "\x1b" not in line
        return
    for compile_to in (compile_ssh, compile_plink, compile_config):
        with contextlib.suppress(NotExpressible):
            compile_to(profile, HostFacts())

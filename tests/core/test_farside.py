"""The far-side proof read from a tunnel's log (core/diagnose/farside.py): lines as
OpenSSH 9.2 writes them."""

from __future__ import annotations

from sshwrap.core.diagnose import channel_failures, log_lines, open_failures
from sshwrap.core.diagnose.farside import Outcome, judge, probe_addresses, verdict

#: A master's log while a probe of 127.0.0.1 is held by a squatter, one of ::1 arrives, one
#: of 127.0.0.2 is refused, and one of ::1 on a host without it cannot connect.
LOG = """debug1: channel_connect_stdio_fwd: 127.0.0.1:51981
debug1: channel 2: new stdio-forward [stdio-forward] (inactive timeout: 0)
debug1: channel_connect_stdio_fwd: ::1:51981
debug1: channel 3: new stdio-forward [stdio-forward] (inactive timeout: 0)
debug1: client_input_channel_open: ctype forwarded-tcpip rchan 2 win 2097152 max 32768
debug1: client_request_forwarded_tcpip: listen localhost port 51981, originator ::1 port 34820
debug1: channel 4: new forwarded-tcpip [::1] (inactive timeout: 0)
debug1: channel_connect_stdio_fwd: 127.0.0.2:51981
debug1: channel 5: new stdio-forward [stdio-forward] (inactive timeout: 0)
channel 5: open failed: connect failed: Connection refused
debug1: channel_connect_stdio_fwd: ::1:7000
debug1: channel 6: new stdio-forward [stdio-forward] (inactive timeout: 0)
channel 6: open failed: connect failed: open failed
debug1: channel_connect_stdio_fwd: 127.0.0.1:7001
debug1: channel 7: new stdio-forward [stdio-forward] (inactive timeout: 0)
channel 7: open failed: administratively prohibited: open failed
"""


def test_arrival_of_the_probed_family_proves_it() -> None:
    assert judge("::1", 51981, opened=True, log_text=LOG).outcome is Outcome.PROVEN


def test_opened_without_arrival_is_held() -> None:
    assert judge("127.0.0.1", 51981, opened=True, log_text=LOG).outcome is Outcome.HELD
    # An arrival on another port proves nothing of this one.
    assert judge("::1", 51982, opened=True, log_text=LOG).outcome is Outcome.HELD


def test_refusals_are_told_apart_by_sshd_reason() -> None:
    assert judge("127.0.0.2", 51981, opened=False, log_text=LOG).outcome is Outcome.NOT_BOUND
    assert judge("::1", 7000, opened=False, log_text=LOG).outcome is Outcome.ABSENT
    policy = judge("127.0.0.1", 7001, opened=False, log_text=LOG)
    assert policy.outcome is Outcome.POLICY and "prohibited" in policy.reason
    assert judge("127.0.0.1", 7002, opened=None, log_text=LOG).outcome is Outcome.UNKNOWN


def test_addresses_probed_for_each_listen_host() -> None:
    assert probe_addresses(None) == ("127.0.0.1", "::1")
    assert probe_addresses("localhost") == ("127.0.0.1", "::1")
    assert probe_addresses("127.0.0.1") == ("127.0.0.1",)
    assert probe_addresses("[::1]") == ("::1",)
    assert probe_addresses("0.0.0.0") == ("127.0.0.1",)  # noqa: S104


def test_verdict_fails_only_on_a_held_or_wholly_unbound_forward() -> None:
    held = judge("127.0.0.1", 51981, opened=True, log_text=LOG)
    proven = judge("::1", 51981, opened=True, log_text=LOG)
    absent = judge("::1", 7000, opened=False, log_text=LOG)
    unbound = judge("127.0.0.2", 51981, opened=False, log_text=LOG)
    policy = judge("127.0.0.1", 7001, opened=False, log_text=LOG)
    failed, detail = verdict((held, proven), "gw")
    assert failed and detail.startswith("127.0.0.1:51981 on the tunnel host (gw) is held")
    assert verdict((proven, absent), "gw") == (
        False, "proven from the tunnel host (gw) on [::1]:51981; the tunnel host has no ::1 "
               "(its sshd cannot connect there)")
    assert verdict((unbound,), "gw")[0]
    assert not verdict((proven, unbound), "gw")[0]
    failed, detail = verdict((policy,), "gw")
    assert not failed and "far side not proven" in detail and "server policy" in detail


def test_a_probes_refusal_is_not_a_forwards_channel_failure() -> None:
    """check and diagnosis judge forwards by 'open failed': the proofs' own are left out."""
    forward_failure = "debug1: channel 8: new direct-tcpip [direct-tcpip]\n" \
                      "channel 8: open failed: connect failed: Connection refused\n"
    assert open_failures(LOG) == []
    assert channel_failures(log_lines(LOG)) == []
    assert len(channel_failures(log_lines(LOG + forward_failure))) == 1

"""Read an ssh or plink log and say which segment and hop failed, and why (pure)."""

from sshwrap.core.diagnose.forwards import (
    ChannelFailure,
    channel_diagnosis,
    channel_failures,
    describe_channel,
    find_forward,
    reached_address,
)
from sshwrap.core.diagnose.model import Diagnosis, FailureKind, PathHop, Segment, path_hops
from sshwrap.core.diagnose.patterns import log_lines, open_failures
from sshwrap.core.diagnose.rules import diagnose_log, unknown_failure

__all__ = [
    "ChannelFailure", "Diagnosis", "FailureKind", "PathHop", "Segment", "channel_diagnosis",
    "channel_failures", "describe_channel", "diagnose_log", "find_forward", "log_lines",
    "open_failures", "path_hops", "reached_address", "unknown_failure",
]

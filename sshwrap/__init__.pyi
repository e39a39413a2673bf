"""sshwrap: declarative, named and verifiable SSH tunnels (the public names and their types)."""

from sshwrap.api.forwards import Dynamic as Dynamic
from sshwrap.api.forwards import Local as Local
from sshwrap.api.forwards import OpenForward as OpenForward
from sshwrap.api.forwards import Remote as Remote
from sshwrap.api.managed import down as down
from sshwrap.api.managed import status as status
from sshwrap.api.managed import up as up
from sshwrap.api.tunnel import Tunnel as Tunnel
from sshwrap.errors import AuthFailed as AuthFailed
from sshwrap.errors import ConnectionFailed as ConnectionFailed
from sshwrap.errors import ExitCode as ExitCode
from sshwrap.errors import ForwardingFailed as ForwardingFailed
from sshwrap.errors import InvalidInput as InvalidInput
from sshwrap.errors import MissingBinary as MissingBinary
from sshwrap.errors import NotReady as NotReady
from sshwrap.errors import ProfileNotFound as ProfileNotFound
from sshwrap.errors import SshwrapError as SshwrapError
from sshwrap.runtime.observe.results import Action as Action
from sshwrap.runtime.observe.results import DownReport as DownReport
from sshwrap.runtime.observe.results import ForwardStatus as ForwardStatus
from sshwrap.runtime.observe.results import StatusReport as StatusReport
from sshwrap.runtime.observe.results import TunnelOutcome as TunnelOutcome
from sshwrap.runtime.observe.results import TunnelState as TunnelState
from sshwrap.runtime.observe.results import TunnelStatus as TunnelStatus
from sshwrap.runtime.observe.results import UpReport as UpReport

__version__: str
__all__: list[str]

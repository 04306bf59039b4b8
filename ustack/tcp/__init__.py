"""The sans-I/O TCP core: one connection as a state machine (RFC 9293).

``from ustack.tcp import TcpConnection, TcpConfig, TcpState, events``; see
docs/architecture.md ("tcp core") for the contract.
"""

from ustack.tcp import events
from ustack.tcp.config import TcpConfig
from ustack.tcp.connection import TcpConnection
from ustack.tcp.info import TcpInfo
from ustack.tcp.isn import IsnGenerator
from ustack.tcp.listener import listener_action, reply_to_unmatched
from ustack.tcp.ports import PortAllocator, choose_ephemeral_port
from ustack.tcp.state import TcpState

__all__ = [
    "IsnGenerator",
    "PortAllocator",
    "TcpConfig",
    "TcpConnection",
    "TcpInfo",
    "TcpState",
    "choose_ephemeral_port",
    "events",
    "listener_action",
    "reply_to_unmatched",
]

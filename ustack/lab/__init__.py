"""Network-namespace labs: a kernel peer and a stack-side veth (see netns/README.md)."""

from ustack.lab.lab import (
    DEFAULT_PEER_ADDRESS,
    DEFAULT_STACK_ADDRESS,
    Lab,
    LabError,
    enter_netns,
    have_netns_support,
    list_netns,
    reap_stale,
    set_offloads,
    status,
)

__all__ = [
    "DEFAULT_PEER_ADDRESS",
    "DEFAULT_STACK_ADDRESS",
    "Lab",
    "LabError",
    "enter_netns",
    "have_netns_support",
    "list_netns",
    "reap_stale",
    "set_offloads",
    "status",
]

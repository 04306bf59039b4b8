"""pytest plugin (entry point ``pytest11``): fixtures for labs, kernel peers,
ustack peers and probes, so a test file needs no setup code of its own.

Each area adds its fixtures by importing them here.
"""
from ustack.lab.fixtures import lab, lab_factory, module_lab  # noqa: F401
from ustack.probe.fixtures import kernel_peer, peer, probe, ustack_peer  # noqa: F401

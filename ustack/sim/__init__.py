"""ustack.sim: real Stacks on a simulated network under a virtual clock.

See docs/sim.md.  :mod:`ustack.sim.clock` (the loop), :mod:`ustack.sim.link`
(links, loss models, the dumbbell), :mod:`ustack.sim.experiment` (bulk-flow
experiments and their results).
"""

from __future__ import annotations

from ustack.sim.clock import SimDeadlock, VirtualClockLoop, run
from ustack.sim.experiment import (
    Experiment,
    Flow,
    FlowResult,
    Result,
    jain_index,
    run_async,
    run_experiment,
)
from ustack.sim.link import (
    Bernoulli,
    Dumbbell,
    GilbertElliott,
    LinkSpec,
    Red,
    SimDevice,
    SimLink,
)

__all__ = [
    "Bernoulli", "Dumbbell", "Experiment", "Flow", "FlowResult", "GilbertElliott", "LinkSpec",
    "Red", "Result", "SimDeadlock", "SimDevice", "SimLink", "VirtualClockLoop", "jain_index",
    "run", "run_async", "run_experiment",
]

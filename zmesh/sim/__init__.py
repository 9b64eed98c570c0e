"""Virtual-time network simulator: sans-IO endpoints, lossy links, one seed (DESIGN.md §3)."""

from zmesh.sim.network import (
    DirectionStats,
    Endpoint,
    GilbertElliott,
    LinkProfile,
    SimLink,
    SimulationError,
    Simulator,
    lossless,
)

__all__ = [
    "DirectionStats",
    "Endpoint",
    "GilbertElliott",
    "LinkProfile",
    "SimLink",
    "SimulationError",
    "Simulator",
    "lossless",
]

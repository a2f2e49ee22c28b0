"""Deterministic simulators that drive the real protocol cores with virtual time."""

from .dht import SimConfig, SimResult, run_simulation

__all__ = ["SimConfig", "SimResult", "run_simulation"]

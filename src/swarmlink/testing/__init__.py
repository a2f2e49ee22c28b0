"""Tools for testing agents on one machine: a :class:`Fleet` of real local daemons."""

from __future__ import annotations

from ._fleet import Fleet, FleetMember

__all__ = ["Fleet", "FleetMember"]

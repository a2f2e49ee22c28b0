"""The ``swarmlink`` command line (typer + rich). See docs/cli.md."""

from __future__ import annotations

from . import _discovery, _gossip, _sim, _tunnels  # noqa: F401  (they register their commands on app)
from ._app import app

__all__ = ["app", "main"]


def main() -> None:
    """Entry point of the ``swarmlink`` script."""
    app()

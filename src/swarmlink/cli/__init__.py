"""swarmlink.cli."""

"""swarmlink.identity."""

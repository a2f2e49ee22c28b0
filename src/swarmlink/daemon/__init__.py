"""swarmlink.daemon."""

"""swarmlink.wire."""

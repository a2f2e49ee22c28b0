"""swarmlink.trust."""

"""swarmlink.session."""

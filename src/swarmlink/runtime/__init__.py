"""swarmlink.runtime."""

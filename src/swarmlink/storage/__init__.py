"""Durable node state (SQLite)."""

from .db import SCHEMA_VERSION, Database

__all__ = ["SCHEMA_VERSION", "Database"]

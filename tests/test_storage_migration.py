"""A node home written by an older swarmlink opens with its data intact (schema
migrations run in order, once)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from swarmlink.errors import LocalError
from swarmlink.storage import SCHEMA_VERSION, Database
from swarmlink.storage import db as dbmod


def test_a_version_2_database_is_upgraded_and_keeps_its_forwards(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    conn = sqlite3.connect(path)
    for version, script in enumerate(dbmod._MIGRATIONS[:2]):
        for statement in dbmod._split_sql(script):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version={version + 1}")
    conn.execute(
        "INSERT INTO forwards (bind_host, local_port, agent_id, remote_port, created) "
        "VALUES ('127.0.0.1', 8080, 'agent', 80, 0)"
    )
    conn.commit()
    conn.close()
    db = Database(path)
    assert db.schema_version == SCHEMA_VERSION >= 3
    row = db.query_one("SELECT local_port, remote_port, remote_name FROM forwards")
    assert row is not None and tuple(row) == (8080, 80, None)
    db.close()
    # Opening again migrates nothing more.
    assert Database(path).schema_version == SCHEMA_VERSION


def test_a_newer_database_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    Database(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(LocalError, match="newer than this swarmlink supports"):
        Database(path)

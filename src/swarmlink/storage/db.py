"""The node's SQLite database: one file in the node home, WAL mode, versioned schema.

Every durable piece of node state lives here (peers, trust, the message inbox and
outbox, exposures, forwards, received files, the DHT routing table, stored records and
provider records, advertised capabilities). Writes are committed before the
operation that caused them is acknowledged, so a ``kill -9`` loses nothing that was
acknowledged. The schema version is kept in ``PRAGMA user_version``; migrations
run in order on open and a database newer than this code is refused.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import LocalError

__all__ = ["SCHEMA_VERSION", "Database"]

#: Each entry upgrades the schema by one version; entry ``i`` yields version ``i + 1``.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE peers (
        agent_id        TEXT PRIMARY KEY,
        identity_key    BLOB NOT NULL,
        addresses       TEXT NOT NULL DEFAULT '[]',   -- JSON list of "host:port"
        first_seen      REAL NOT NULL,
        last_seen       REAL NOT NULL,
        max_cert_serial INTEGER NOT NULL DEFAULT 0    -- newest operational cert seen
    );
    CREATE TABLE trust (
        agent_id TEXT PRIMARY KEY,
        since    REAL NOT NULL,
        reason   TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE trust_requests (
        agent_id  TEXT NOT NULL,
        direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
        reason    TEXT NOT NULL DEFAULT '',
        created   REAL NOT NULL,
        nonce     BLOB NOT NULL,
        PRIMARY KEY (agent_id, direction)
    );
    CREATE TABLE trust_outbox (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        agent_id TEXT NOT NULL,
        kind     TEXT NOT NULL,
        reason   TEXT NOT NULL DEFAULT '',
        ref      BLOB,
        created  REAL NOT NULL
    );
    CREATE INDEX trust_outbox_agent ON trust_outbox (agent_id, id);
    CREATE TABLE seen_nonces (
        nonce    BLOB PRIMARY KEY,
        agent_id TEXT NOT NULL,
        expires  REAL NOT NULL
    );
    CREATE INDEX seen_nonces_expires ON seen_nonces (expires);
    CREATE TABLE inbox (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        sender      TEXT NOT NULL,
        seq         INTEGER NOT NULL,
        sent_at     REAL NOT NULL,
        received_at REAL NOT NULL,
        body        TEXT NOT NULL,
        UNIQUE (sender, seq)
    );
    CREATE TABLE outbox (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        recipient TEXT NOT NULL,
        seq       INTEGER NOT NULL,
        created   REAL NOT NULL,
        body      TEXT NOT NULL,
        delivered REAL,
        UNIQUE (recipient, seq)
    );
    CREATE INDEX outbox_pending ON outbox (recipient, delivered, seq);
    CREATE TABLE exposures (
        port    INTEGER PRIMARY KEY,
        name    TEXT,
        allow   TEXT NOT NULL,     -- JSON list of agent IDs; empty list = trusted agents
        created REAL NOT NULL
    );
    CREATE TABLE forwards (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        bind_host   TEXT NOT NULL,
        local_port  INTEGER NOT NULL,
        agent_id    TEXT NOT NULL,
        remote_port INTEGER NOT NULL,
        created     REAL NOT NULL,
        UNIQUE (bind_host, local_port)
    );
    CREATE TABLE files (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        sender      TEXT NOT NULL,
        name        TEXT NOT NULL,
        path        TEXT NOT NULL,
        size        INTEGER NOT NULL,
        sha256      TEXT NOT NULL,
        received_at REAL NOT NULL
    );
    """,
    """
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE dht_contacts (
        agent_id  TEXT PRIMARY KEY,
        addresses TEXT NOT NULL DEFAULT '[]',   -- JSON list of "host:port"
        last_seen REAL NOT NULL
    );
    CREATE TABLE dht_records (
        agent_id TEXT PRIMARY KEY,
        expires  REAL NOT NULL,
        record   BLOB NOT NULL               -- signed agent record, verified again on load
    );
    CREATE TABLE dht_providers (
        key      BLOB NOT NULL,              -- capability key
        agent_id TEXT NOT NULL,
        expires  REAL NOT NULL,
        record   BLOB NOT NULL,
        PRIMARY KEY (key, agent_id)
    );
    CREATE TABLE capabilities (
        tag         TEXT PRIMARY KEY,
        name        TEXT NOT NULL DEFAULT '',
        description TEXT NOT NULL DEFAULT '',
        protocol    TEXT NOT NULL DEFAULT '',
        created     REAL NOT NULL
    );
    """,
    """
    ALTER TABLE forwards ADD COLUMN remote_name TEXT;  -- a service exposed under a name
    """,
    """
    CREATE TABLE gossip_state (
        name    TEXT PRIMARY KEY,            -- replicated state (CRDT document) name
        data    BLOB NOT NULL,               -- its deterministic CBOR encoding
        updated REAL NOT NULL
    );
    CREATE TABLE gossip_policies (
        topic  TEXT PRIMARY KEY,
        policy TEXT NOT NULL                 -- JSON: "trusted", "any" or a list of agent IDs
    );
    """,
)

SCHEMA_VERSION = len(_MIGRATIONS)


class Database:
    """A thin, synchronous wrapper around one SQLite connection.

    Statements run in autocommit mode; :meth:`transaction` groups several writes.
    The node is single-threaded (one asyncio loop), so one connection is enough.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if str(path) != ":memory:" and not self.path.exists():
            # Private from the first byte; SQLite gives -wal/-shm the same mode.
            self.path.touch(mode=0o600)
        try:
            self._conn = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise LocalError(f"cannot open database {self.path}: {exc}") from exc
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._migrate()

    @property
    def schema_version(self) -> int:
        row = self._conn.execute("PRAGMA user_version").fetchone()
        return int(row[0])

    def _migrate(self) -> None:
        current = self.schema_version
        if current > SCHEMA_VERSION:
            raise LocalError(
                f"database {self.path} has schema version {current}, newer than this "
                f"swarmlink supports ({SCHEMA_VERSION}); upgrade swarmlink"
            )
        for version in range(current, SCHEMA_VERSION):
            with self.transaction():
                for statement in _split_sql(_MIGRATIONS[version]):
                    self._conn.execute(statement)
                self._conn.execute(f"PRAGMA user_version={version + 1}")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self._conn.execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> sqlite3.Cursor:
        return self._conn.executemany(sql, rows)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return self._conn.execute(sql, params).fetchall()

    def query_one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._conn.execute(sql, params).fetchone()
        return row

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Run the enclosed statements atomically (BEGIN IMMEDIATE ... COMMIT)."""
        if self._conn.in_transaction:
            yield  # nested: the outer transaction commits
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def close(self) -> None:
        self._conn.close()


def _split_sql(script: str) -> list[str]:
    """Split a migration script into statements: drop ``--`` comments, split on ``;``."""
    text = "\n".join(line.split("--", 1)[0].rstrip() for line in script.splitlines())
    return [chunk.strip() for chunk in text.split(";") if chunk.strip()]

"""The SQLite engine's shared part: one connection, its transactions, and lookups every repository needs.

Writes go through ``tx()``: ``BEGIN IMMEDIATE`` takes SQLite's write lock up
front (waiting up to ``busy_timeout`` for another process), so a read-check-write
inside one ``tx`` — "is the name free?", "is the quota reached?" — is atomic
across processes. ``COMMIT`` under ``synchronous=FULL`` in WAL mode is durable
before ``tx`` returns: an acknowledged write survives SIGKILL and power loss.

The repositories (``store_identities``, ``store_keys``, ``store_policies``,
``store_mfa``, ``store_tokens``, ``store_oidc``, ``store_account``) each hold one
``SqliteDb`` and never import each other: what they share is here.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

from sts_backend import iam_errors as err
from sts_backend.store_core import DEFAULT_QUOTAS, ts
from wire.clock import WallClock

ENTITY_TABLES = {"user": ("users", "user_id"), "group": ("groups", "group_id"), "role": ("roles", "role_id")}


class SqliteDb:
    """A connection, the clock and the account id, shared by one store's repositories.

    Used by one thread at a time (``store.Store``). ``writes`` counts this
    connection's own commits (``PRAGMA data_version`` only sees other connections').
    """

    def __init__(self, conn: sqlite3.Connection, clock: WallClock, account_id: str) -> None:
        self.conn = conn
        self.clock = clock
        self.account_id = account_id
        self.writes = 0
        self._depth = 0

    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (nested uses join the outer one)."""
        if self._depth:
            self._depth += 1
            try:
                yield self.conn
            finally:
                self._depth -= 1
            return
        self.conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield self.conn
        except BaseException:
            self._depth = 0
            self.conn.execute("ROLLBACK")
            raise
        self._depth = 0
        self.conn.execute("COMMIT")
        self.writes += 1

    def now(self) -> str:
        return ts(self.clock.now())

    def one(self, sql: str, args: tuple = ()) -> sqlite3.Row | None:
        return self.conn.execute(sql, args).fetchone()

    def all(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, args).fetchall()

    def count(self, sql: str, args: tuple = ()) -> int:
        return self.conn.execute(sql, args).fetchone()[0]

    def bump_epoch(self) -> None:
        """Note a change that can revoke live sessions (call inside ``tx``)."""
        self.conn.execute("UPDATE account SET revocation_epoch = revocation_epoch + 1")

    def quota(self, name: str) -> int:
        """The quota ``name`` (a key of ``DEFAULT_QUOTAS``), stored override first."""
        row = self.one("SELECT value FROM settings WHERE name = ?", (name,))
        return DEFAULT_QUOTAS[name] if row is None else row[0]

    def check_quota(self, quota: str, used: int) -> None:
        """LimitExceeded when ``used`` has reached the quota."""
        limit = self.quota(quota)
        if used >= limit:
            raise err.quota_exceeded(quota, limit)

    def entity(self, kind: str, name: str) -> tuple[str, str]:
        """(unique id, stored name) of a user/group/role, or NoSuchEntity."""
        table, id_col = ENTITY_TABLES[kind]
        row = self.one(f"SELECT {id_col}, name FROM {table} WHERE name = ?", (name,))
        if row is None:
            raise err.no_such_entity(kind, name)
        return row[0], row[1]

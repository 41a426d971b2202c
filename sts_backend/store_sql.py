"""What the repositories share, over the SQL both engines speak: ``SqlDb``.

The repositories (``store_identities``, ``store_keys``, ``store_policies``,
``store_mfa``, ``store_tokens``, ``store_sessions``, ``store_oidc``,
``store_account``) are written once, in portable SQL: SQLite's ``?`` and
``:name`` placeholders, ``COLLATE NOCASE`` where IAM compares names without
case, ``ON CONFLICT ... DO UPDATE``, ``RETURNING``. Each engine subclasses
``SqlDb`` and turns that into its own dialect in one place: ``store_sqlite``
runs it as written; ``store_postgres`` rewrites the placeholders, and its schema
gives the case-insensitive columns the ``citext`` type instead of a collation.

Writes go through ``tx()``, which each engine makes serialising: a
read-check-write inside one ``tx`` ("is the name free?", "is the quota
reached?") is atomic across processes and replicas, and a committed write is
durable before ``tx`` returns.

A ``SqlDb`` is used by one thread at a time (``store.Store``). Engine errors that
mean "not now" (a lock held too long, the database down) reach the backend as
``store_core.StoreUnavailable`` (PostgreSQL) or ``sqlite3.OperationalError``
(SQLite, left as is on its hot path); both answer 503.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from sts_backend import iam_errors as err
from sts_backend.store_core import DEFAULT_QUOTAS, ts
from wire.clock import WallClock

__all__ = ["ENTITY_TABLES", "Connection", "Row", "SqlDb"]

ENTITY_TABLES = {"user": ("users", "user_id"), "group": ("groups", "group_id"), "role": ("roles", "role_id")}

Row = Sequence[Any]


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Row | None: ...
    def fetchall(self) -> list[Row]: ...
    def __iter__(self) -> Iterator[Row]: ...


class Connection(Protocol):
    """What ``SqlDb.conn`` and ``tx()`` give the repositories: ``sqlite3.Connection``'s shape."""

    def execute(self, sql: str, args: Sequence[Any] | dict[str, Any] = ()) -> Cursor: ...
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Any: ...


class SqlDb:
    """One store's way into its database: ``conn``, ``tx()``, the clock and the account id.

    Subclasses set ``conn`` and implement ``_begin``/``_commit``/``_rollback`` (what
    ``tx`` runs), ``data_stamp``, ``reader``, ``check`` and ``close``; the rest is shared. ``writes`` counts this
    store's own commits; ``where`` names the database in messages (a file, or a
    URL without its password); ``inline_reads`` says whether a read may run on the
    event loop (local SQLite: a page-cache read) or must go to a worker thread (a
    database across a socket).
    """

    conn: Connection
    where: str
    inline_reads: bool = False

    def __init__(self, clock: WallClock, account_id: str) -> None:
        self.clock = clock
        self.account_id = account_id
        self.writes = 0
        self._depth = 0

    @contextlib.contextmanager
    def tx(self) -> Iterator[Connection]:
        """A serialising write transaction (nested uses join the outer one)."""
        if self._depth:
            self._depth += 1
            try:
                yield self.conn
            finally:
                self._depth -= 1
            return
        self._begin()
        self._depth = 1
        try:
            yield self.conn
        except BaseException:
            if self._depth:
                self._depth = 0
                self._rollback()
            raise
        self._depth = 0
        self._commit()
        self.writes += 1

    def _begin(self) -> None:
        """Start a write transaction that holds the engine's write lock."""
        raise NotImplementedError

    def _commit(self) -> None:
        raise NotImplementedError

    def _rollback(self) -> None:
        raise NotImplementedError

    def data_stamp(self) -> object:
        """A value that changes when the database may have changed (``store_tokens``' cache key)."""
        raise NotImplementedError

    def reader(self) -> SqlDb:
        """A read-only ``SqlDb`` on the same database, for another thread."""
        raise NotImplementedError

    def check(self, *, need_token_key: bool) -> None:
        """The start-up checks (integrity or schema version, a token key); ``StoreError`` when they fail."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # ---- shared lookups ----------------------------------------------------------------

    def now(self) -> str:
        return ts(self.clock.now())

    def one(self, sql: str, args: Sequence[Any] | dict[str, Any] = ()) -> Row | None:
        return self.conn.execute(sql, args).fetchone()

    def all(self, sql: str, args: Sequence[Any] | dict[str, Any] = ()) -> list[Row]:
        return self.conn.execute(sql, args).fetchall()

    def count(self, sql: str, args: Sequence[Any] = ()) -> int:
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

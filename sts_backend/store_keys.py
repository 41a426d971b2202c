"""The repository ``store_api.AccessKeys``: long-term access keys and their last use.

``record_key_use`` is buffered in memory (``KeyUseBuffer``) and written at most
once a minute by the backend's background flush (``app.Backend.maintain``), on
``GetAccessKeyLastUsed`` and when the store closes, in one batch: a crash
loses at most a minute of last-used bookkeeping, never anything else, and no
request waits on that write. A read-only store shares its writer's buffer and
never flushes it.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading

from sts_backend import iam_errors as err
from sts_backend import ids
from sts_backend.iam_records import KeyLastUsed
from sts_backend.records import AccessKey
from sts_backend.store_core import StoreUnavailable, from_ts, ts
from sts_backend.store_sql import Row, SqlDb

KEY_USE_FLUSH_SECONDS = 60.0
_KEY_COLS = "k.access_key_id, u.name, k.secret, k.status, k.created"


def key_from_row(row: Row) -> AccessKey:
    return AccessKey(access_key_id=row[0], user_name=row[1], secret_access_key=row[2], status=row[3],
                     create_date=from_ts(row[4]))


class KeyUseBuffer:
    """The latest (service, region, when) of each key used since the last flush; thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.uses: dict[str, tuple[str, str, dt.datetime]] = {}

    def keep(self, access_key_id: str, use: tuple[str, str, dt.datetime]) -> None:
        """Remember ``use`` unless a later one of the same key is already held."""
        with self.lock:
            previous = self.uses.get(access_key_id)
            if previous is None or previous[2] <= use[2]:
                self.uses[access_key_id] = use

    def take(self) -> dict[str, tuple[str, str, dt.datetime]]:
        """Everything held, emptying the buffer."""
        with self.lock:
            pending, self.uses = self.uses, {}
            return pending


class SqlAccessKeys:
    """Access keys; ``writer`` False for a read-only store (its uses wait in the shared buffer)."""

    def __init__(self, db: SqlDb, buffer: KeyUseBuffer, *, writer: bool) -> None:
        self._db = db
        self._buffer = buffer
        self._writer = writer

    def access_key(self, access_key_id: str) -> AccessKey | None:
        """A long-term key by id (any status), or None."""
        row = self._db.one(f"SELECT {_KEY_COLS} FROM access_keys k JOIN users u USING (user_id) "
                           "WHERE k.access_key_id = ?", (access_key_id,))
        return None if row is None else key_from_row(row)

    def create_access_key(self, user_name: str) -> AccessKey:
        """A new Active key for the user; at most ``AccessKeysPerUser`` (2), any status."""
        with self._db.tx():
            user_id, stored = self._db.entity("user", user_name)
            self._db.check_quota("AccessKeysPerUser",
                                 self._db.count("SELECT count(*) FROM access_keys WHERE user_id = ?", (user_id,)))
            key = AccessKey(access_key_id=ids.new_access_key_id(), user_name=stored,
                            secret_access_key=ids.new_secret_access_key(), status="Active",
                            create_date=self._db.clock.now())
            self._db.conn.execute(
                "INSERT INTO access_keys (access_key_id, user_id, secret, status, created, seq) "
                "VALUES (?, ?, ?, ?, ?, (SELECT coalesce(max(seq), 0) + 1 FROM access_keys))",
                (key.access_key_id, user_id, key.secret_access_key, key.status, self._db.now()))
        return key

    def access_keys_of(self, user_name: str) -> list[AccessKey]:
        """The user's keys, oldest first."""
        user_id, _ = self._db.entity("user", user_name)
        rows = self._db.all(f"SELECT {_KEY_COLS} FROM access_keys k JOIN users u USING (user_id) "
                            "WHERE k.user_id = ? ORDER BY k.created, k.seq", (user_id,))
        return [key_from_row(r) for r in rows]

    def _owned_key(self, user_name: str, access_key_id: str) -> str:
        user_id, _ = self._db.entity("user", user_name)
        if not self._db.one("SELECT 1 FROM access_keys WHERE access_key_id = ? AND user_id = ?",
                            (access_key_id, user_id)):
            raise err.no_such_access_key(access_key_id)
        return user_id

    def update_access_key(self, user_name: str, access_key_id: str, status: str) -> None:
        """Set a key's status; any change bumps the revocation epoch."""
        with self._db.tx():
            self._owned_key(user_name, access_key_id)
            cur = self._db.conn.execute("UPDATE access_keys SET status = ? WHERE access_key_id = ? AND status != ?",
                                        (status, access_key_id, status))
            if cur.rowcount:
                self._db.bump_epoch()

    def delete_access_key(self, user_name: str, access_key_id: str) -> None:
        """Delete a key of the user (sessions minted with it are revoked)."""
        with self._db.tx():
            self._owned_key(user_name, access_key_id)
            self._db.conn.execute("DELETE FROM access_keys WHERE access_key_id = ?", (access_key_id,))
            self._db.bump_epoch()

    def key_last_used(self, access_key_id: str) -> KeyLastUsed:
        """When, where and for what service a key was last used (flushes buffered uses)."""
        self.flush_key_use()
        row = self._db.one("SELECT k.access_key_id, u.name, k.last_used, k.last_service, k.last_region "
                           "FROM access_keys k JOIN users u USING (user_id) WHERE k.access_key_id = ?",
                           (access_key_id,))
        if row is None:
            raise err.no_such_access_key(access_key_id)
        return KeyLastUsed(row[0], row[1], from_ts(row[2]), row[3], row[4])

    def record_key_use(self, access_key_id: str, service: str, region: str, when: dt.datetime) -> None:
        """Note a long-term key's use; buffered (never written on the request path)."""
        self._buffer.keep(access_key_id, (service, region, when))

    def flush_key_use(self) -> None:
        """Write buffered key uses now (kept for the next try if the database is busy).

        A read-only store never writes: its uses wait in the shared buffer."""
        if not self._writer:
            return
        pending = self._buffer.take()
        if not pending:
            return
        rows = [(ts(when), service, region, akid, ts(when)) for akid, (service, region, when) in pending.items()]
        try:
            with self._db.tx() as conn:
                conn.executemany("UPDATE access_keys SET last_used = ?, last_service = ?, last_region = ? "
                                 "WHERE access_key_id = ? AND (last_used IS NULL OR last_used < ?)", rows)
        except (sqlite3.OperationalError, StoreUnavailable):
            for akid, use in pending.items():   # back into the buffer, unless a later use came in meanwhile
                self._buffer.keep(akid, use)

"""The SQLite engine: one database file in the data dir (the embedded default).

``create`` initialises ``DATA_DIR/rolecall.db`` (0600, ``O_EXCL|O_NOFOLLOW``;
SQLite gives its ``-wal``/``-shm`` companions the database file's mode, so no
process-wide umask is touched) and refuses a data dir that already has one;
``open_db`` opens it and migrates it. Both refuse a data dir that is not ours
alone (``wire.private_files.private_dir``).

Settings, on every connection: ``journal_mode=WAL`` (readers never block the
writer), ``synchronous=FULL`` (a committed write is on disk before the call
returns, so it survives SIGKILL or power loss), ``foreign_keys=ON``,
``busy_timeout`` 5 s (a second process — ``rolecall backend rotate-token-key``
while ``serve`` runs, or two servers on one data dir — waits for the write lock
instead of failing). ``tx()`` uses ``BEGIN IMMEDIATE``: SQLite's write lock is
taken up front, so checks and writes inside one ``tx`` are atomic across
processes. The schema is versioned with ``PRAGMA user_version``
(``store_schema``). The repositories' SQL runs as written (``store_sql``).
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from pathlib import Path

from sts_backend import ids
from sts_backend.store_core import StoreError, ts
from sts_backend.store_schema import migrate
from sts_backend.store_sql import SqlDb
from wire.clock import WallClock
from wire.private_files import UnsafeDirectory, private_dir

__all__ = ["DB_NAME", "SqliteDb", "create", "open_db", "private_data_dir"]

DB_NAME = "rolecall.db"
BUSY_TIMEOUT_MS = 5000
MMAP_BYTES = 1 << 30   # pages read through a memory map, not copied into each connection's cache


class SqliteDb(SqlDb):
    """A connection to the data dir's database. ``writes`` adds this connection's own commits
    to ``PRAGMA data_version`` (which only sees other connections')."""

    inline_reads = True   # a read is a page-cache lookup: cheaper on the loop than a thread hand-off

    def __init__(self, conn: sqlite3.Connection, path: Path, clock: WallClock, *, read_only: bool = False) -> None:
        row = conn.execute("SELECT account_id FROM account").fetchone()
        if row is None:
            conn.close()
            raise StoreError(f"{path} is not initialised (run `rolecall backend init`)")
        super().__init__(clock, row[0])
        self.conn = conn
        self.path = path
        self.where = str(path)
        self.read_only = read_only

    def _begin(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")   # takes the write lock now, waiting up to busy_timeout

    def _commit(self) -> None:
        self.conn.execute("COMMIT")

    def _rollback(self) -> None:
        self.conn.execute("ROLLBACK")

    def data_stamp(self) -> tuple[int, int]:
        return self.conn.execute("PRAGMA data_version").fetchone()[0], self.writes

    def reader(self) -> SqliteDb:
        """A read-only connection that never waits for a lock (busy timeout 0: in WAL mode a
        reader is not blocked by the writer; a rare SQLITE_BUSY, e.g. during another
        process's crash recovery, raises at once). A write on it raises
        ``sqlite3.OperationalError`` (``PRAGMA query_only``)."""
        return SqliteDb(_connect(self.path, reader=True), self.path, self.clock, read_only=True)

    def check(self, *, need_token_key: bool) -> None:
        """SQLite's ``quick_check``, and a session-token key."""
        problems = [row[0] for row in self.all("PRAGMA quick_check(5)")]
        if problems != ["ok"]:
            raise StoreError(f"{self.path} is damaged (SQLite quick_check: {'; '.join(problems)[:300]}): "
                             "restore it from a backup")
        if need_token_key and self.one("SELECT 1 FROM token_keys LIMIT 1") is None:
            raise StoreError(f"{self.path} has no session-token key (the token_keys table is empty): run "
                             f"`rolecall backend rotate-token-key --data-dir {self.path.parent}`")

    def close(self) -> None:
        self.conn.close()


def create(data_dir: str | os.PathLike, account_id: str | None, clock: WallClock) -> SqliteDb:
    """Initialise ``data_dir`` (created 0700 if missing): the account and its first token key.

    Raises:
        StoreError: ``data_dir`` is already initialised, or not ours alone.
    """
    path = Path(data_dir) / DB_NAME
    private_data_dir(data_dir, create=True)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600))
    except FileExistsError:
        raise StoreError(f"{data_dir} is already initialised ({path} exists)") from None
    conn = _connect(path)
    now = ts(clock.now())
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO account (singleton, account_id, created) VALUES (1, ?, ?)",
                 (account_id or ids.new_account_id(), now))
    conn.execute("INSERT INTO token_keys (key, created) VALUES (?, ?)", (secrets.token_bytes(32), now))
    conn.execute("COMMIT")
    return SqliteDb(conn, path, clock)


def open_db(data_dir: str | os.PathLike, clock: WallClock) -> SqliteDb:
    """Open an initialised ``data_dir``'s database, migrating its schema if it is older.

    Raises:
        StoreError: ``data_dir`` holds no initialised store, or it cannot be opened.
    """
    path = Path(data_dir) / DB_NAME
    if not path.is_file():
        raise StoreError(f"{data_dir} is not initialised (run `rolecall backend init --data-dir {data_dir}`)")
    private_data_dir(data_dir, create=False)
    return SqliteDb(_connect(path), path, clock)


def private_data_dir(data_dir: str | os.PathLike, *, create: bool) -> None:
    """The data dir holds keys and secrets: ours alone (``wire.private_files.private_dir``), or refused."""
    try:
        private_dir(data_dir, create=create)
    except UnsafeDirectory as exc:
        raise StoreError(str(exc)) from None
    except OSError as exc:
        raise StoreError(f"cannot create {data_dir}: {exc.strerror or exc}") from None


def _connect(path: Path, *, reader: bool = False) -> sqlite3.Connection:
    """Open ``path`` with the store's pragmas and schema (``reader``: read-only, never waits for a lock)."""
    busy_ms = 0 if reader else BUSY_TIMEOUT_MS
    conn = sqlite3.connect(path, isolation_level=None, timeout=busy_ms / 1000, cached_statements=256,
                           check_same_thread=False)  # one thread at a time, not always the same one
    try:
        conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
        # Read pages through a memory map rather than read() into each connection's 2 MB page
        # cache: at 100,000 users the lookups of one AssumeRole touch pages all over a 250 MB
        # file, and the copies cost ~15% of a call (bench/backend_scale.py). Writes still go
        # through write(); a size above the file's maps only what exists.
        conn.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StoreError(f"{path}: cannot use WAL journal mode (got {mode})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        if reader:
            conn.execute("PRAGMA query_only = ON")
        else:
            migrate(conn)
    except (sqlite3.DatabaseError, RuntimeError) as exc:
        conn.close()
        raise StoreError(f"{path}: {exc}; restore it from a backup, or remove it to start afresh") from exc
    for suffix in ("", "-wal", "-shm"):
        try:
            os.chmod(f"{path}{suffix}", 0o600)
        except FileNotFoundError:
            pass
    return conn

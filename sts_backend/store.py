"""The backend's state: one SQLite database in the data dir.

Theory of operation
-------------------
``Store.create`` initialises ``DATA_DIR/rolecall.db`` (account id, first token
key) and refuses a data dir that already has one; ``Store.open`` opens it and
runs ``check`` (SQLite's ``quick_check``, a session-token key). Both refuse a
data dir that is not ours alone (``wire.private_files.private_dir``: another
user's, or writable by others). The database is created 0600 with
``O_EXCL|O_NOFOLLOW``, and SQLite gives its ``-wal``/``-shm`` companions the
database file's mode; no process-wide umask is touched.

Settings, on every connection: ``journal_mode=WAL`` (readers never block the
writer), ``synchronous=FULL`` (a committed write is on disk before the call
returns, so it survives SIGKILL or power loss), ``foreign_keys=ON``,
``busy_timeout`` 5 s (a second process — ``rolecall backend rotate-token-key``
while ``serve`` runs, or two servers on one data dir — waits for the write lock
instead of failing). Writes use ``BEGIN IMMEDIATE`` (``store_sqlite``), so checks
and writes are atomic across processes. The schema is versioned with
``PRAGMA user_version`` (``store_schema``).

Layout: ``store_api`` declares the interface, one ``typing.Protocol`` per
aggregate (account, identities, access keys, policies, MFA devices, token keys,
sessions, OIDC providers). The SQLite engine implements each in a module named
for what it holds (``store_identities``, ``store_keys``, ``store_policies``,
``store_mfa``, ``store_tokens``, ``store_sessions``, ``store_oidc``,
``store_account``), all over one ``store_sqlite.SqliteDb`` (the connection and
its transactions). ``Store`` is the facade: it owns the lifecycle and answers
every protocol method by the repository that holds it (``store.policies``,
``store.mfa``, … are the repositories themselves).

Hot path: AssumeRole and request authentication do a handful of indexed
point lookups (by primary key or the unique name index); the sqlite3 module
caches their prepared statements. ``token_keys`` is cached until the database
changes (``PRAGMA data_version`` for other processes' commits, a counter for ours).

``record_key_use`` is buffered in memory and written at most once a minute, on
``GetAccessKeyLastUsed`` and on ``close``: a crash loses at most a minute of
last-used bookkeeping, never anything else.

Threads: a ``Store`` (one connection, opened with ``check_same_thread=False``) is
used by one thread at a time, never concurrently: the backend's write lane runs
it in one worker thread at a time (``app.Backend``). ``reader()`` opens a second
``Store`` on the same file for the backend's read lane: its connection refuses
writes (``PRAGMA query_only``) and never waits for a lock (WAL lets it read while
the first one waits for or holds the write lock); the key uses it records go into
the first store's buffer (under a lock), which only the first store writes.

Nothing secret (key secrets, MFA seeds, token keys) is logged or put in an
exception message or repr.
"""

from __future__ import annotations

import functools
import os
import secrets
import sqlite3
from pathlib import Path

from sts_backend import ids
from sts_backend.store_account import SqliteAccount
from sts_backend.store_api import REPOSITORIES, members
from sts_backend.store_core import StoreError, ts
from sts_backend.store_identities import SqliteIdentities
from sts_backend.store_keys import KeyUseBuffer, SqliteAccessKeys
from sts_backend.store_mfa import SqliteMfaDevices
from sts_backend.store_oidc import SqliteOidcProviders
from sts_backend.store_policies import SqlitePolicies
from sts_backend.store_schema import migrate
from sts_backend.store_sessions import SqliteSessions
from sts_backend.store_sqlite import SqliteDb
from sts_backend.store_tokens import SqliteTokenKeys
from wire.clock import SystemClock, WallClock
from wire.private_files import UnsafeDirectory, private_dir

__all__ = ["Store", "StoreError", "DB_NAME", "private_data_dir"]

DB_NAME = "rolecall.db"
BUSY_TIMEOUT_MS = 5000
MMAP_BYTES = 1 << 30   # pages read through a memory map, not copied into each connection's cache

# The SQLite engine's repository for each ``store_api.REPOSITORIES`` attribute.
SQLITE_REPOSITORIES = {
    "account": SqliteAccount, "identities": SqliteIdentities, "keys": SqliteAccessKeys,
    "policies": SqlitePolicies, "mfa": SqliteMfaDevices, "tokens": SqliteTokenKeys,
    "sessions": SqliteSessions, "oidc": SqliteOidcProviders,
}
_MEMBERS = [(attr, members(protocol)) for attr, protocol in REPOSITORIES]


class Store:
    """The SQLite-backed IAM/STS state; implements every ``store_api`` protocol and ``records.StsStore``.

    Each protocol method is the repository's own: bound onto the instance in
    ``__init__`` (no wrapper on the hot path), and on the class as a delegating
    wrapper with the repository method's signature and docstring (for ``help``,
    ``inspect`` and ``records.StsStore`` checks).
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, clock: WallClock, *,
                 key_uses: KeyUseBuffer | None = None) -> None:
        """Use ``Store.create`` or ``Store.open`` (``key_uses``: a writer's buffer, for ``reader``)."""
        self.path = path
        row = conn.execute("SELECT account_id FROM account").fetchone()
        if row is None:
            conn.close()
            raise StoreError(f"{path} is not initialised (run `rolecall backend init`)")
        self._conn = conn
        self._clock = clock
        self._db = db = SqliteDb(conn, clock, row[0])
        self._key_uses = key_uses or KeyUseBuffer()
        self.account = SqliteAccount(db)
        self.identities = SqliteIdentities(db)
        self.keys = SqliteAccessKeys(db, self._key_uses, writer=key_uses is None)
        self.policies = SqlitePolicies(db)
        self.mfa = SqliteMfaDevices(db)
        self.tokens = SqliteTokenKeys(db, str(path))
        self.sessions = SqliteSessions(db)
        self.oidc = SqliteOidcProviders(db)
        # The hot path (a dozen calls per request) skips the class's delegating wrappers.
        for attr, names in _MEMBERS:
            repository = getattr(self, attr)
            self.__dict__.update((name, getattr(repository, name)) for name in names)

    # ---- lifecycle ---------------------------------------------------------------------

    @classmethod
    def create(cls, data_dir: str | os.PathLike, account_id: str | None = None,
               clock: WallClock | None = None) -> Store:
        """Initialise a new store in ``data_dir`` (created 0700 if missing).

        Args:
            data_dir: the backend's data directory.
            account_id: 12 digits; random when None.
            clock: the wall clock for creation dates (system clock by default).

        Raises:
            StoreError: ``data_dir`` is already initialised, or the account id is bad.
        """
        if account_id is not None and not (len(account_id) == 12 and account_id.isdigit()):
            raise StoreError(f"account id must be 12 digits, not {account_id!r}")
        path = Path(data_dir) / DB_NAME
        private_data_dir(data_dir, create=True)
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600))
        except FileExistsError:
            raise StoreError(f"{data_dir} is already initialised ({path} exists)") from None
        clock = clock or SystemClock()
        conn = _connect(path)
        now = ts(clock.now())
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO account (singleton, account_id, created) VALUES (1, ?, ?)",
                     (account_id or ids.new_account_id(), now))
        conn.execute("INSERT INTO token_keys (key, created) VALUES (?, ?)", (secrets.token_bytes(32), now))
        conn.execute("COMMIT")
        return cls(conn, path, clock)

    @classmethod
    def open(cls, data_dir: str | os.PathLike, clock: WallClock | None = None, *,
             need_token_key: bool = True) -> Store:
        """Open the store of an initialised ``data_dir`` (migrating its schema if older) and ``check`` it.

        Args:
            data_dir: the backend's data directory.
            clock: the wall clock (system clock by default).
            need_token_key: refuse a store without a session-token key (False for
                ``rotate-token-key``, which is how one is added).

        Raises:
            StoreError: ``data_dir`` holds no initialised store, it cannot be opened, or ``check`` fails.
        """
        path = Path(data_dir) / DB_NAME
        if not path.is_file():
            raise StoreError(f"{data_dir} is not initialised (run `rolecall backend init --data-dir {data_dir}`)")
        private_data_dir(data_dir, create=False)
        store = cls(_connect(path), path, clock or SystemClock())
        try:
            store.check(need_token_key=need_token_key)
        except StoreError:
            store.close()
            raise
        return store

    def check(self, *, need_token_key: bool = True) -> None:
        """The start-up checks ``open`` runs: SQLite's ``quick_check``, and a session-token key.

        Raises:
            StoreError: one line naming the file and what to do.
        """
        problems = [row[0] for row in self._db.all("PRAGMA quick_check(5)")]
        if problems != ["ok"]:
            raise StoreError(f"{self.path} is damaged (SQLite quick_check: {'; '.join(problems)[:300]}): "
                             "restore it from a backup")
        if need_token_key and self._db.one("SELECT 1 FROM token_keys LIMIT 1") is None:
            raise StoreError(f"{self.path} has no session-token key (the token_keys table is empty): run "
                             f"`rolecall backend rotate-token-key --data-dir {self.path.parent}`")

    def reader(self) -> Store:
        """A second, read-only ``Store`` on this database, for use in another thread.

        Its connection refuses writes (``PRAGMA query_only``: a write raises
        ``sqlite3.OperationalError``) and never waits (busy timeout 0: in WAL mode
        a reader is not blocked by the writer; a rare SQLITE_BUSY, e.g. during
        another process's crash recovery, raises at once). It does not migrate:
        this store did. Key uses it records are buffered here and flushed by this
        store. Close it before this one.

        Raises:
            StoreError: the database cannot be opened again.
        """
        return Store(_connect(self.path, reader=True), self.path, self._clock, key_uses=self._key_uses)

    def close(self) -> None:
        """Flush buffered key-use records and close the connection."""
        try:
            self.keys.flush_key_use()
        finally:
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, account={self._db.account_id})"


def _delegate(attr: str, name: str, impl):
    """``Store.name``: the method ``name`` of the repository in ``Store.attr`` (signature and docs of ``impl``)."""
    def method(self, *args, **kwargs):
        return getattr(getattr(self, attr), name)(*args, **kwargs)
    return functools.update_wrapper(method, impl)


for _attr, _names in _MEMBERS:
    for _name in _names:
        setattr(Store, _name, _delegate(_attr, _name, getattr(SQLITE_REPOSITORIES[_attr], _name)))


def private_data_dir(data_dir: str | os.PathLike, *, create: bool) -> None:
    """The data dir holds keys and secrets: ours alone (``wire.private_files.private_dir``), or refused."""
    try:
        private_dir(data_dir, create=create)
    except UnsafeDirectory as exc:
        raise StoreError(str(exc)) from None
    except OSError as exc:
        raise StoreError(f"cannot create {data_dir}: {exc.strerror or exc}") from None


def _connect(path: Path, *, reader: bool = False) -> sqlite3.Connection:
    """Open ``path`` with the store's pragmas and schema.

    The database file is 0600 (``Store.create`` makes it so, and SQLite gives
    its ``-wal`` and ``-shm`` files the database's mode), so no process-wide
    umask is touched. ``reader``: a read-only connection that never waits for a
    lock (``Store.reader``).
    """
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

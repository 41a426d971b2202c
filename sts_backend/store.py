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
instead of failing). Writes use ``BEGIN IMMEDIATE`` (``store_core``), so checks
and writes are atomic across processes. The schema is versioned with
``PRAGMA user_version`` (``store_schema``).

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

import datetime as dt
import os
import secrets
import sqlite3
import threading
import time
from pathlib import Path

from sts_backend import ids, mfa
from sts_backend.records import AccessKey, MfaDevice, Role, Session, User
from sts_backend.store_core import from_ts, ts
from sts_backend.store_iam import _KEY_COLS, _ROLE_COLS, _USER_COLS, key_from_row, user_from_row
from sts_backend.store_mfa import _MFA_SELECT, mfa_from_row
from sts_backend.store_oidc import StoreOidc
from sts_backend.store_schema import migrate
from wire.clock import SystemClock, WallClock
from wire.private_files import UnsafeDirectory, private_dir

__all__ = ["Store", "StoreError", "DB_NAME"]

DB_NAME = "rolecall.db"
BUSY_TIMEOUT_MS = 5000
MMAP_BYTES = 1 << 30
KEY_USE_FLUSH_SECONDS = 60.0


class StoreError(Exception):
    """The data dir cannot be used: not initialised, already initialised, unreadable."""


class Store(StoreOidc):
    """The SQLite-backed IAM/STS state; implements ``records.StsStore``."""

    def __init__(self, conn: sqlite3.Connection, path: Path, clock: WallClock) -> None:
        """Use ``Store.create`` or ``Store.open``."""
        self._init_core(conn, clock)
        self.path = path
        row = self._one("SELECT account_id FROM account")
        if row is None:
            conn.close()
            raise StoreError(f"{path} is not initialised (run `rolecall backend init`)")
        self._account_id = row[0]
        self._key_cache: tuple[tuple[int, int], tuple[int, dict[int, bytes]]] | None = None
        self._key_use: dict[str, tuple[str, str, dt.datetime]] = {}
        self._key_use_lock = threading.Lock()  # the buffer is shared with reader() stores
        self._key_use_writer = True            # False for reader(): it never flushes
        self._key_use_flushed = time.monotonic()

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
        _private(data_dir, create=True)
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
        _private(data_dir, create=False)
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
        problems = [row[0] for row in self._all("PRAGMA quick_check(5)")]
        if problems != ["ok"]:
            raise StoreError(f"{self.path} is damaged (SQLite quick_check: {'; '.join(problems)[:300]}): "
                             "restore it from a backup")
        if need_token_key and self._one("SELECT 1 FROM token_keys LIMIT 1") is None:
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
        other = Store(_connect(self.path, reader=True), self.path, self._clock)
        other._key_use, other._key_use_lock, other._key_use_writer = self._key_use, self._key_use_lock, False
        return other

    def close(self) -> None:
        """Flush buffered key-use records and close the connection."""
        try:
            self.flush_key_use()
        finally:
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, account={self._account_id})"

    # ---- StsStore: lookups -------------------------------------------------------------

    def account_id(self) -> str:
        """The account's 12-digit id."""
        return self._account_id

    def account_created(self) -> dt.datetime:
        """When the store (the account) was initialised."""
        return from_ts(self._one("SELECT created FROM account")[0])

    def access_key(self, access_key_id: str) -> AccessKey | None:
        """A long-term key by id (any status), or None."""
        row = self._one(f"SELECT {_KEY_COLS} FROM access_keys k JOIN users u USING (user_id) "
                        "WHERE k.access_key_id = ?", (access_key_id,))
        return None if row is None else key_from_row(row)

    def user(self, user_name: str) -> User | None:
        """A user by name (case-insensitive), or None."""
        row = self._one(f"SELECT {_USER_COLS} FROM users WHERE name = ?", (user_name,))
        return None if row is None else user_from_row(row)

    def role(self, role_name: str) -> Role | None:
        """A role by name (case-insensitive), or None."""
        row = self._one(f"SELECT {_ROLE_COLS} FROM roles WHERE name = ?", (role_name,))
        return None if row is None else self._role_from_row(row)

    def mfa_device(self, serial_number: str) -> MfaDevice | None:
        """An MFA device by serial number, or None."""
        row = self._one(f"{_MFA_SELECT} WHERE d.serial = ?", (serial_number,))
        return None if row is None else mfa_from_row(row)

    def consume_totp(self, serial_number: str, timecode: int) -> bool:
        """Record ``timecode`` as used if newer than the device's last one (atomic, durable).

        One conditional UPDATE: of two processes racing with the same step, exactly
        one sees ``rowcount == 1``.
        """
        cur = self._conn.execute("UPDATE mfa_devices SET last_timecode = ? WHERE serial = ? AND last_timecode < ?",
                                 (timecode, serial_number, timecode))
        self._writes += 1
        return cur.rowcount == 1

    def mfa_failures(self, serial_number: str) -> mfa.FailureState | None:
        """The device's failed codes and lockouts (``sts_backend.mfa``), or None when it has none."""
        row = self._one("SELECT failures, first_failure, locked_until, lockouts FROM mfa_failures WHERE serial = ?",
                        (serial_number,))
        return None if row is None else mfa.FailureState(*row)

    def record_mfa_failure(self, serial_number: str, now: dt.datetime) -> bool:
        """Count one failed code (durably, atomically); True when it locks the device."""
        with self._tx() as conn:
            state, locks = mfa.after_failure(
                self.mfa_failures(serial_number), now, limit=self.quota("MfaFailuresBeforeLockout"),
                window=self.quota("MfaFailureWindowSeconds"), lockout=self.quota("MfaLockoutSeconds"))
            conn.execute("INSERT INTO mfa_failures (serial, failures, first_failure, locked_until, lockouts) "
                         "VALUES (?, ?, ?, ?, ?) ON CONFLICT (serial) DO UPDATE SET failures = excluded.failures, "
                         "first_failure = excluded.first_failure, locked_until = excluded.locked_until, "
                         "lockouts = excluded.lockouts",
                         (serial_number, state.failures, state.first_failure, state.locked_until, state.lockouts))
        return locks

    def clear_mfa_failures(self, serial_number: str) -> None:
        """A good code: forget the device's failures and lockouts."""
        with self._tx() as conn:
            conn.execute("DELETE FROM mfa_failures WHERE serial = ?", (serial_number,))

    # ---- StsStore: token keys and revocation -------------------------------------------

    def token_keys(self) -> tuple[int, dict[int, bytes]]:
        """(current key id, every key id → 32-byte key) for sealing session tokens."""
        stamp = (self._conn.execute("PRAGMA data_version").fetchone()[0], self._writes)
        if self._key_cache is None or self._key_cache[0] != stamp:
            keys = {r[0]: bytes(r[1]) for r in self._all("SELECT key_id, key FROM token_keys")}
            if not keys:
                raise StoreError(f"{self.path} has no session-token key: run `rolecall backend rotate-token-key`")
            self._key_cache = (stamp, (max(keys), keys))
        current, keys = self._key_cache[1]
        return current, dict(keys)

    def add_token_key(self) -> int:
        """Add a fresh token key and make it current (``rolecall backend rotate-token-key``).

        Older keys stay, so tokens they sealed keep verifying until they expire.
        """
        with self._tx() as conn:
            cur = conn.execute("INSERT INTO token_keys (key, created) VALUES (?, ?)",
                               (secrets.token_bytes(32), self._now()))
            return cur.lastrowid

    def retire_token_key(self, key_id: int | None = None) -> int:
        """Delete token key ``key_id`` (default: the oldest) and return its id
        (``rolecall backend retire-token-key``). Tokens it sealed stop verifying: every
        backend on this data dir notices within ``auth.KEY_CHECK_INTERVAL``.

        Raises:
            StoreError: no such key, or it is the current one (the newest key, which seals
                new tokens, is never retired: rotate first).
        """
        with self._tx() as conn:
            ids_ = [r[0] for r in conn.execute("SELECT key_id FROM token_keys ORDER BY key_id")]
            if len(ids_) < 2:
                raise StoreError("only the current token key is left: run `rolecall backend rotate-token-key` "
                                 "first, then retire the old key")
            target = ids_[0] if key_id is None else key_id
            if target not in ids_:
                raise StoreError(f"there is no token key {target} (keys: {', '.join(map(str, ids_))})")
            if target == ids_[-1]:
                raise StoreError(f"token key {target} is the current one: run `rolecall backend rotate-token-key` "
                                 "first, then retire it")
            conn.execute("DELETE FROM token_keys WHERE key_id = ?", (target,))
            return target

    def revocation_epoch(self) -> int:
        """A counter bumped by every change that can revoke live sessions."""
        return self._count("SELECT revocation_epoch FROM account")

    def revoke_sessions(self, kind: str, name: str, before: dt.datetime | None = None) -> None:
        """Revoke every session of role/user ``name`` issued before ``before`` (default now)."""
        if kind not in ("role", "user"):
            raise ValueError(kind)
        when = ts(before or self._clock.now())
        with self._tx() as conn:
            conn.execute("INSERT INTO revocations (kind, name, revoked_before) VALUES (?, ?, ?) "
                         "ON CONFLICT (kind, name) DO UPDATE SET revoked_before = "
                         "max(revoked_before, excluded.revoked_before)", (kind, name, when))
            self._bump_epoch()

    def _revoked_after(self, kind: str, name: str, issued_at: dt.datetime) -> bool:
        row = self._one("SELECT revoked_before FROM revocations WHERE kind = ? AND name = ?", (kind, name))
        return row is not None and issued_at < from_ts(row[0])

    def session_revoked(self, session: Session) -> bool:
        """True when what ``session`` stands on is gone: the role (deleted, or recreated
        under the same name), the source key (deleted or not Active), the source user,
        the MFA device that authenticated it (deactivated since), or an explicit
        ``revoke_sessions`` later than the session's issue time."""
        if session.role_name is not None:
            row = self._one("SELECT role_id FROM roles WHERE name = ?", (session.role_name,))
            if row is None or (session.role_id is not None and row[0] != session.role_id):
                return True
            if self._revoked_after("role", session.role_name, session.issued_at):
                return True
        if session.source_access_key_id:
            row = self._one("SELECT status FROM access_keys WHERE access_key_id = ?", (session.source_access_key_id,))
            if row is None or row[0] != "Active":
                return True
        if session.source_user_name:
            if self.user(session.source_user_name) is None:
                return True
            if self._revoked_after("user", session.source_user_name, session.issued_at):
                return True
        if session.mfa_serial:
            row = self._one("SELECT revoked_before FROM mfa_revocations WHERE serial = ?", (session.mfa_serial,))
            if row is not None and session.issued_at < from_ts(row[0]):
                return True
        return False

    # ---- StsStore: key use -------------------------------------------------------------

    def record_key_use(self, access_key_id: str, service: str, region: str, when: dt.datetime) -> None:
        """Note a long-term key's use; buffered, flushed at most once a minute."""
        with self._key_use_lock:
            _keep_latest(self._key_use, access_key_id, (service, region, when))
        if self.key_use_flush_due():
            self.flush_key_use()

    def key_use_flush_due(self) -> bool:
        """True when this store holds key uses older than the flush interval (False for a reader)."""
        return (self._key_use_writer and bool(self._key_use)
                and time.monotonic() - self._key_use_flushed >= KEY_USE_FLUSH_SECONDS)

    def flush_key_use(self) -> None:
        """Write buffered key uses now (kept for the next try if the database is busy).

        A ``reader()`` store never writes: its uses wait in the shared buffer."""
        if not self._key_use_writer:
            return
        self._key_use_flushed = time.monotonic()
        with self._key_use_lock:
            pending = dict(self._key_use)
            self._key_use.clear()
        if not pending:
            return
        rows = [(ts(when), service, region, akid, ts(when)) for akid, (service, region, when) in pending.items()]
        try:
            with self._tx() as conn:
                conn.executemany("UPDATE access_keys SET last_used = ?, last_service = ?, last_region = ? "
                                 "WHERE access_key_id = ? AND (last_used IS NULL OR last_used < ?)", rows)
        except sqlite3.OperationalError:
            with self._key_use_lock:   # back into the buffer, unless a later use came in meanwhile
                for akid, use in pending.items():
                    _keep_latest(self._key_use, akid, use)


def _keep_latest(buffer: dict[str, tuple[str, str, dt.datetime]], access_key_id: str,
                 use: tuple[str, str, dt.datetime]) -> None:
    previous = buffer.get(access_key_id)
    if previous is None or previous[2] <= use[2]:
        buffer[access_key_id] = use


def _private(data_dir: str | os.PathLike, *, create: bool) -> None:
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

"""The PostgreSQL engine: N backend replicas on one database (psycopg 3 and its pool).

Connections come from two ``psycopg_pool.ConnectionPool``s, each connection in
autocommit mode: a small write pool, and a read pool whose sessions are
read-only (``default_transaction_read_only``), as SQLite's ``query_only``
readers are. A ``PgDb`` (one per ``store.Store``, used by one thread at a time)
borrows one connection on first use and keeps it while it works; when the
connection fails it goes back to the pool (which discards it and opens another)
and the call raises ``store_core.StoreUnavailable``: the backend answers 503,
SDKs retry, and the next call takes a fresh connection. ``check_connection`` on
checkout keeps a stale connection from a database restart from being handed out
again, and the pool reconnects on its own: while the database is down each request
that finds no connection starts an attempt (``RECONNECT_SECONDS``), so service
resumes about a second after the database does.

Writes: ``tx()`` is ``BEGIN`` plus ``pg_advisory_xact_lock(LOCK_ID)``: every
writing transaction of every replica is serialised on that one lock, exactly as
SQLite's ``BEGIN IMMEDIATE`` serialises them, so the repositories' checks and
writes are atomic across replicas (the name is free, the quota is not reached).
A lock not granted within ``lock_timeout`` (5 s, SQLite's busy timeout) is a 503.
``COMMIT`` returns once the WAL is flushed (``synchronous_commit`` stays on), so
an acknowledged write survives a replica's SIGKILL and a database restart.
The MFA replay state needs no lock of its own: ``consume_totp`` is one
conditional ``UPDATE ... WHERE last_timecode < code`` on the device's row, and
PostgreSQL re-checks that condition after waiting for the row lock, so of two
replicas racing with one code exactly one sees a row updated.

Reads: a reader (the backend's read lanes) remembers each lookup for up to
``READ_CACHE_SECONDS`` of the wall clock (IAM is eventually consistent), and
forgets everything at once when this process commits a write (``Pools.generation``):
another replica's change is seen within a second, this one's at once. The write
lane never caches; token keys are cached a second and read past every cache for a
token under an unknown key (``store_tokens``).

Dialect: the repositories' SQL (``store_sql``) is rewritten once per statement
text and cached: ``?`` and ``:name`` become psycopg's placeholders, and
``COLLATE NOCASE`` is dropped (those columns are ``citext``:
``store_postgres_schema``).

Secrets: the URL may not carry a password (``StoreError`` says where it goes:
``PGPASSFILE``, ``~/.pgpass`` or ``--database-password-file``). The password is
read from that file, handed to libpq, and never logged or put in a message.
"""

from __future__ import annotations

import contextlib
import functools
import re
import secrets
from collections.abc import Sequence
from typing import Any

import psycopg
import psycopg_pool
from psycopg import conninfo as pg_conninfo

from sts_backend import ids
from sts_backend.store_core import StoreError, StoreUnavailable, ts
from sts_backend.store_postgres_schema import SCHEMA_VERSION, migrate, version
from sts_backend.store_sql import SqlDb
from wire.clock import WallClock

__all__ = ["LOCK_ID", "PgDb", "create", "open_db", "translate"]

LOCK_ID = 0x726F6C6563616C6C   # "rolecall": the advisory lock every writing transaction takes
WRITE_POOL_SIZE = 4
READ_POOL_SIZE = 12            # app.READ_WORKERS + app.WEB_IDENTITY_WORKERS, and room to spare
CHECKOUT_SECONDS = 1.0         # waiting for a pooled connection longer than this is a 503
# psycopg_pool's reconnection backs off exponentially without a cap until it gives up: a short
# give-up lets the next request start a fresh attempt instead, so recovery follows the database
# within about a second of its return however long it was down.
RECONNECT_SECONDS = 5.0
CONNECT_SECONDS = 5
READ_CACHE_SECONDS = 1.0       # how stale a replica's read lane may be (IAM is eventually consistent)
READ_CACHE_ENTRIES = 20_000    # per reader; the whole cache starts afresh when it fills
SESSION_OPTIONS = "-c lock_timeout=5000 -c statement_timeout=30000 -c idle_in_transaction_session_timeout=60000"

# Errors that mean "not now" (the database is down, restarting, or a lock was not granted).
_UNAVAILABLE = (psycopg.OperationalError, psycopg.InterfaceError, psycopg_pool.PoolTimeout,
                psycopg_pool.PoolClosed)

_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@functools.lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """The repositories' SQL in psycopg's dialect (``?``/``:name`` → ``%s``/``%(name)s``)."""
    sql = sql.replace("%", "%%").replace(" COLLATE NOCASE", "")
    return _NAMED.sub(r"%(\1)s", sql.replace("?", "%s"))


class Pools:
    """The write and read pools of one database, opened together, closed by their owner.

    ``generation`` counts this process's committed writes (every ``PgDb`` on these pools
    bumps it): the read caches start afresh after each, so a replica reads its own writes.
    """

    def __init__(self, url: str, password: str | None) -> None:
        self.generation = 0
        kwargs: dict[str, Any] = {"autocommit": True, "application_name": "rolecall-backend",
                                  "connect_timeout": CONNECT_SECONDS, "options": SESSION_OPTIONS}
        if password is not None:
            kwargs["password"] = password
        read_kwargs = dict(kwargs, options=SESSION_OPTIONS + " -c default_transaction_read_only=on")
        common = dict(check=psycopg_pool.ConnectionPool.check_connection, timeout=CHECKOUT_SECONDS,
                      reconnect_timeout=RECONNECT_SECONDS, open=False)
        self.write = psycopg_pool.ConnectionPool(url, kwargs=kwargs, min_size=1, max_size=WRITE_POOL_SIZE,
                                                 name="rolecall-write", **common)
        self.read = psycopg_pool.ConnectionPool(url, kwargs=read_kwargs, min_size=1, max_size=READ_POOL_SIZE,
                                                name="rolecall-read", **common)

    def open(self) -> None:
        self.write.open(wait=False)
        self.read.open(wait=False)

    def close(self) -> None:
        self.read.close(timeout=2)
        self.write.close(timeout=2)


class _Conn:
    """``store_sql.Connection`` over a ``PgDb``'s borrowed connection: translates, maps errors."""

    def __init__(self, db: PgDb) -> None:
        self._db = db

    def execute(self, sql: str, args: Sequence[Any] | dict[str, Any] = ()) -> psycopg.Cursor:
        db = self._db
        try:
            return db.connection().execute(translate(sql), args or None)
        except _UNAVAILABLE as exc:
            raise db.unavailable(exc) from None

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        db = self._db
        try:
            with db.connection().cursor() as cur:
                cur.executemany(translate(sql), rows)
        except _UNAVAILABLE as exc:
            raise db.unavailable(exc) from None


class PgDb(SqlDb):
    """One store's way into the database: a borrowed connection, serialised write transactions."""

    def __init__(self, pools: Pools, where: str, clock: WallClock, *, reader: bool = False,
                 owner: bool = False) -> None:
        super().__init__(clock, "")
        self.where = where
        self._pools = pools
        self._pool = pools.read if reader else pools.write
        self._owner = owner
        self._reader = reader
        self._borrowed: psycopg.Connection | None = None
        self.conn = _Conn(self)
        self._cache: dict[tuple, list] = {}   # readers: (sql, args) -> rows (see ``all``)
        self._cache_stamp: tuple[int, float] = (-1, 0.0)
        row = self.one("SELECT account_id FROM account")
        if row is None:
            raise StoreError(f"{where} is not initialised (run `rolecall backend init --database URL`)")
        self.account_id = row[0]

    def one(self, sql: str, args: Sequence[Any] | dict[str, Any] = ()) -> Any:
        rows = self.all(sql, args)
        return rows[0] if rows else None

    def all(self, sql: str, args: Sequence[Any] | dict[str, Any] = ()) -> list:
        """Rows of a query; on a reader, remembered for up to ``READ_CACHE_SECONDS``.

        IAM is eventually consistent, and so is a replica's read lane: a reader answers a
        lookup it made less than a second ago (by the wall clock) from memory, unless this
        process committed a write since (``Pools.generation``). Another replica's change is
        therefore seen within a second (AWS documents seconds); this replica's at once; and
        the write lane, whose checks must be exact, never caches.
        """
        if not self._reader:
            return self.conn.execute(sql, args).fetchall()
        now = self.clock.now().timestamp()
        stamp = self._cache_stamp
        if stamp[0] != self._pools.generation or now >= stamp[1] or len(self._cache) >= READ_CACHE_ENTRIES:
            self._cache.clear()
            self._cache_stamp = (self._pools.generation, now + READ_CACHE_SECONDS)
        key = (sql, tuple(sorted(args.items())) if isinstance(args, dict) else tuple(args))
        rows = self._cache.get(key)
        if rows is None:
            rows = self._cache[key] = self.conn.execute(sql, args).fetchall()
        return list(rows)

    def connection(self) -> psycopg.Connection:
        """The borrowed connection (borrowed now if none is)."""
        if self._borrowed is None:
            self._borrowed = self._pool.getconn(timeout=CHECKOUT_SECONDS)
        return self._borrowed

    def unavailable(self, exc: Exception) -> StoreUnavailable:
        """Give a failed connection back (the pool discards a broken one) and say why, in one line."""
        self._release()
        self._depth = 0
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return StoreUnavailable(f"PostgreSQL: {type(exc).__name__}: {reason[:200]}")

    def _release(self) -> None:
        conn, self._borrowed = self._borrowed, None
        if conn is not None:
            with contextlib.suppress(Exception):
                self._pool.putconn(conn)

    def _begin(self) -> None:
        # Every writing transaction of every replica takes one advisory lock: serialised as
        # SQLite's BEGIN IMMEDIATE serialises them. A failure here releases the connection.
        self.conn.execute("BEGIN")
        self.conn.execute("SELECT pg_advisory_xact_lock(?)", (LOCK_ID,))

    def _commit(self) -> None:
        self.conn.execute("COMMIT")
        self._pools.generation += 1   # an int bump: atomic under the GIL; readers compare it

    def _rollback(self) -> None:
        if self._borrowed is not None:   # else the connection is gone, and its transaction with it
            with contextlib.suppress(StoreUnavailable):
                self.conn.execute("ROLLBACK")

    def data_stamp(self) -> tuple[int, int]:
        # Another replica's commits are invisible to a counter here: the token-key cache lives
        # for one second of the wall clock (this store's commits end it at once). A token sealed
        # elsewhere under a newer key asks past it (``token_keys(fresh=True)``).
        return self.writes, int(self.clock.now().timestamp())

    def reader(self) -> PgDb:
        return PgDb(self._pools, self.where, self.clock, reader=True)

    def check(self, *, need_token_key: bool) -> None:
        """The schema is the version this rolecall knows, and a session-token key exists."""
        try:
            found = version(self.connection())
        except _UNAVAILABLE as exc:
            raise StoreError(str(self.unavailable(exc))) from None
        if found != SCHEMA_VERSION:
            raise StoreError(schema_mismatch(self.where, found))
        if need_token_key and self.one("SELECT 1 FROM token_keys LIMIT 1") is None:
            raise StoreError(f"{self.where} has no session-token key (the token_keys table is empty): run "
                             f"`rolecall backend rotate-token-key --database {self.where}`")

    def pool_statistics(self) -> tuple[int, int, int]:
        """``(in use, waiting, size)`` of the read pool (the one requests wait on)."""
        stats = self._pools.read.get_stats()
        size = stats.get("pool_size", 0)
        return size - stats.get("pool_available", 0), stats.get("requests_waiting", 0), size

    def close(self) -> None:
        self._release()
        if self._owner:
            self._pools.close()


def schema_mismatch(where: str, found: int | None) -> str:
    """The one line ``serve`` prints for a schema it does not know."""
    if found is None or found == 0:
        return f"{where} is not initialised (run `rolecall backend init --database {where}`)"
    if found < SCHEMA_VERSION:
        return (f"{where} has schema version {found}, older than this rolecall's ({SCHEMA_VERSION}): run "
                f"`rolecall backend init --database {where}` to migrate it")
    return (f"{where} has schema version {found}, newer than this rolecall's ({SCHEMA_VERSION}): "
            "upgrade rolecall on this host")


def checked_url(url: str) -> str:
    """``url`` if it is a PostgreSQL URL without a password; StoreError (one line) otherwise."""
    if not url.startswith(("postgresql://", "postgres://")):
        raise StoreError(f"--database must be a postgresql:// URL, not {url.split('://')[0]!r}://...")
    try:
        params = pg_conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise StoreError("--database is not a valid postgresql:// URL") from None
    if params.get("password"):
        raise StoreError("--database: put the password in PGPASSFILE, ~/.pgpass or --database-password-file, "
                         "never in the URL (command lines and logs are readable by others)")
    return url


def read_password(password_file: str | None) -> str | None:
    """The first line of ``password_file`` (None: libpq reads PGPASSFILE or ~/.pgpass itself)."""
    if password_file is None:
        return None
    try:
        with open(password_file, encoding="utf-8") as f:
            first = f.readline().rstrip("\r\n")
    except OSError as exc:
        raise StoreError(f"--database-password-file {password_file}: {exc.strerror or exc}") from None
    if not first:
        raise StoreError(f"--database-password-file {password_file}: the first line is empty")
    return first


def _connect_once(url: str, password: str | None) -> psycopg.Connection:
    """A direct connection, so a refusal is reported with libpq's reason (the pool would only time out)."""
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_SECONDS,
                               application_name="rolecall-backend",
                               **({"password": password} if password is not None else {}))
    except psycopg.OperationalError as exc:
        reason = " ".join(str(exc).split())[:300]
        raise StoreError(f"cannot connect to {url}: {reason}") from None


def _pooled(url: str, clock: WallClock, password: str | None) -> PgDb:
    pools = Pools(url, password)
    pools.open()
    try:
        return PgDb(pools, url, clock, owner=True)
    except StoreUnavailable as exc:
        pools.close()
        raise StoreError(f"cannot use {url}: {exc}") from None
    except BaseException:
        pools.close()
        raise


def create(url: str, account_id: str | None, clock: WallClock, *, password_file: str | None = None) -> PgDb:
    """Initialise the database at ``url``: migrate its schema, then the account and its first token key.

    Raises:
        StoreError: the URL or password file is refused, the database unreachable, or
            it already holds an account (after migrating its schema to this version).
    """
    url = checked_url(url)
    password = read_password(password_file)
    with _connect_once(url, password) as conn:
        try:
            before, after = migrate(conn, LOCK_ID)
        except RuntimeError as exc:
            raise StoreError(f"{url}: {exc}") from None
        except psycopg.Error as exc:
            raise StoreError(f"{url}: cannot create the schema: {' '.join(str(exc).split())[:300]}") from None
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_ID,))
            if conn.execute("SELECT 1 FROM account").fetchone() is not None:
                done = (f"its schema was migrated from version {before} to {after}" if before != after
                        else f"schema version {after}")
                raise StoreError(f"{url} is already initialised ({done})")
            now = ts(clock.now())
            conn.execute("INSERT INTO account (singleton, account_id, created) VALUES (1, %s, %s)",
                         (account_id or ids.new_account_id(), now))
            conn.execute("INSERT INTO token_keys (key, created) VALUES (%s, %s)", (secrets.token_bytes(32), now))
    return _pooled(url, clock, password)


def open_db(url: str, clock: WallClock, *, password_file: str | None = None) -> PgDb:
    """Open the store at ``url`` (its schema is checked by ``PgDb.check``; nothing is migrated).

    Raises:
        StoreError: the URL or password file is refused, or the database is unreachable.
    """
    url = checked_url(url)
    password = read_password(password_file)
    with _connect_once(url, password) as conn:
        found = version(conn)
    if found != SCHEMA_VERSION:
        raise StoreError(schema_mismatch(url, found))
    return _pooled(url, clock, password)

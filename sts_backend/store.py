"""The backend's state, behind one object: ``Store``.

Theory of operation
-------------------
Two engines hold it. SQLite is the embedded default: ``Store.create`` initialises
``DATA_DIR/rolecall.db`` and ``Store.open`` opens it (``store_sqlite``: WAL,
``synchronous=FULL``, ``BEGIN IMMEDIATE`` writes, a data dir that is ours alone).
PostgreSQL serves N backend replicas: ``Store.create_database`` and
``Store.open_database`` take a ``postgresql://`` URL (``store_postgres``: psycopg 3
and its pool, serialised writes, a versioned schema that ``open_database`` checks
and refuses when it does not know it).

Layout: ``store_api`` declares the interface, one ``typing.Protocol`` per
aggregate (account, identities, access keys, policies, MFA devices, token keys,
sessions, OIDC providers). Each is implemented once, in portable SQL, in a module
named for what it holds (``store_identities``, ``store_keys``, ``store_policies``,
``store_mfa``, ``store_tokens``, ``store_sessions``, ``store_oidc``,
``store_account``), over a ``store_sql.SqlDb`` that an engine provides (its
connection, transactions and dialect). ``Store`` is the facade: it owns the
lifecycle and answers every protocol method by the repository that holds it
(``store.policies``, ``store.mfa``, … are the repositories themselves).

Hot path: AssumeRole and request authentication do a handful of indexed point
lookups (by primary key or the unique name index). ``token_keys`` is cached until
the database may have changed (``SqlDb.data_stamp``).

``record_key_use`` is buffered in memory and written at most once a minute, by
the backend's background flush (``app.Backend.flush_key_uses``), on
``GetAccessKeyLastUsed`` and on ``close``: a crash loses at most a minute of
last-used bookkeeping, never anything else, and no request waits on that write.

Threads: a ``Store`` is used by one thread at a time, never concurrently: the
backend's write lane runs it in one worker thread at a time (``app.Backend``).
``reader()`` opens a second ``Store`` on the same database for the backend's read
lanes: it refuses writes, never waits for a lock, and its key uses go into the
first store's buffer (under a lock), which only the first store writes.

Nothing secret (key secrets, MFA seeds, token keys, database passwords) is logged
or put in an exception message or repr.
"""

from __future__ import annotations

import functools
import os

from sts_backend import store_sqlite
from sts_backend.store_account import SqlAccount
from sts_backend.store_api import REPOSITORIES, members
from sts_backend.store_core import StoreError, StoreUnavailable
from sts_backend.store_identities import SqlIdentities
from sts_backend.store_keys import KeyUseBuffer, SqlAccessKeys
from sts_backend.store_mfa import SqlMfaDevices
from sts_backend.store_oidc import SqlOidcProviders
from sts_backend.store_policies import SqlPolicies
from sts_backend.store_sessions import SqlSessions
from sts_backend.store_sql import SqlDb
from sts_backend.store_sqlite import DB_NAME, private_data_dir
from sts_backend.store_tokens import SqlTokenKeys
from wire.clock import SystemClock, WallClock

__all__ = ["Store", "StoreError", "StoreUnavailable", "DB_NAME", "private_data_dir"]

# The repository for each ``store_api.REPOSITORIES`` attribute.
SQL_REPOSITORIES = {
    "account": SqlAccount, "identities": SqlIdentities, "keys": SqlAccessKeys,
    "policies": SqlPolicies, "mfa": SqlMfaDevices, "tokens": SqlTokenKeys,
    "sessions": SqlSessions, "oidc": SqlOidcProviders,
}
_MEMBERS = [(attr, members(protocol)) for attr, protocol in REPOSITORIES]


class Store:
    """The IAM/STS state; implements every ``store_api`` protocol and ``records.StsStore``.

    Each protocol method is the repository's own: bound onto the instance in
    ``__init__`` (no wrapper on the hot path), and on the class as a delegating
    wrapper with the repository method's signature and docstring (for ``help``,
    ``inspect`` and ``records.StsStore`` checks).
    """

    def __init__(self, db: SqlDb, *, key_uses: KeyUseBuffer | None = None) -> None:
        """Use ``create``/``open`` (SQLite) or ``create_database``/``open_database`` (PostgreSQL).

        ``key_uses``: a writer's buffer, for ``reader``."""
        self.db = db
        self.where = db.where
        self.path = getattr(db, "path", None)   # the SQLite file (None on PostgreSQL)
        self.inline_reads = db.inline_reads
        self._key_uses = key_uses or KeyUseBuffer()
        self.account = SqlAccount(db)
        self.identities = SqlIdentities(db)
        self.keys = SqlAccessKeys(db, self._key_uses, writer=key_uses is None)
        self.policies = SqlPolicies(db)
        self.mfa = SqlMfaDevices(db)
        self.tokens = SqlTokenKeys(db)
        self.sessions = SqlSessions(db)
        self.oidc = SqlOidcProviders(db)
        # The hot path (a dozen calls per request) skips the class's delegating wrappers.
        for attr, names in _MEMBERS:
            repository = getattr(self, attr)
            self.__dict__.update((name, getattr(repository, name)) for name in names)

    # ---- lifecycle ---------------------------------------------------------------------

    @classmethod
    def create(cls, data_dir: str | os.PathLike, account_id: str | None = None,
               clock: WallClock | None = None) -> Store:
        """Initialise a new SQLite store in ``data_dir`` (created 0700 if missing).

        Args:
            data_dir: the backend's data directory.
            account_id: 12 digits; random when None.
            clock: the wall clock for creation dates (system clock by default).

        Raises:
            StoreError: ``data_dir`` is already initialised, or the account id is bad.
        """
        _check_account_id(account_id)
        return cls(store_sqlite.create(data_dir, account_id, clock or SystemClock()))

    @classmethod
    def open(cls, data_dir: str | os.PathLike, clock: WallClock | None = None, *,
             need_token_key: bool = True) -> Store:
        """Open the SQLite store of an initialised ``data_dir`` (migrating its schema if older) and ``check`` it.

        Args:
            data_dir: the backend's data directory.
            clock: the wall clock (system clock by default).
            need_token_key: refuse a store without a session-token key (False for
                ``rotate-token-key``, which is how one is added).

        Raises:
            StoreError: ``data_dir`` holds no initialised store, it cannot be opened, or ``check`` fails.
        """
        return cls._checked(store_sqlite.open_db(data_dir, clock or SystemClock()), need_token_key)

    @classmethod
    def create_database(cls, url: str, account_id: str | None = None, clock: WallClock | None = None, *,
                        password_file: str | None = None) -> Store:
        """Initialise (or migrate) a PostgreSQL database as a store (``store_postgres.create``).

        Raises:
            StoreError: the URL, the password file or the database is refused (one line).
        """
        _check_account_id(account_id)
        return cls(_postgres().create(url, account_id, clock or SystemClock(), password_file=password_file))

    @classmethod
    def open_database(cls, url: str, clock: WallClock | None = None, *, need_token_key: bool = True,
                      password_file: str | None = None) -> Store:
        """Open a PostgreSQL store whose schema this rolecall knows, and ``check`` it.

        Raises:
            StoreError: the database is unreachable, not initialised, or of an unknown schema version.
        """
        db = _postgres().open_db(url, clock or SystemClock(), password_file=password_file)
        return cls._checked(db, need_token_key)

    @classmethod
    def _checked(cls, db: SqlDb, need_token_key: bool) -> Store:
        try:
            db.check(need_token_key=need_token_key)
        except BaseException:
            db.close()
            raise
        return cls(db)

    def check(self, *, need_token_key: bool = True) -> None:
        """The start-up checks ``open`` runs (SQLite's ``quick_check`` or PostgreSQL's schema
        version, and a session-token key).

        Raises:
            StoreError: one line naming the database and what to do.
        """
        self.db.check(need_token_key=need_token_key)

    def reader(self) -> Store:
        """A second, read-only ``Store`` on this database, for use in another thread.

        Its connection refuses writes and never waits for a lock. It does not
        migrate: this store did. Key uses it records are buffered here and flushed
        by this store. Close it before this one.

        Raises:
            StoreError: the database cannot be opened again.
        """
        return Store(self.db.reader(), key_uses=self._key_uses)

    def pool_statistics(self) -> tuple[int, int, int] | None:
        """``(in use, waiting, size)`` of the engine's connection pool (None: SQLite has none)."""
        stats = getattr(self.db, "pool_statistics", None)
        return stats() if stats else None

    def close(self) -> None:
        """Flush buffered key-use records and close the connection."""
        try:
            self.keys.flush_key_use()
        finally:
            self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.where!r}, account={self.db.account_id})"


def _postgres():
    """The PostgreSQL engine, imported when first asked for: psycopg is an optional dependency."""
    try:
        from sts_backend import store_postgres
    except ImportError as exc:
        raise StoreError(f"--database needs psycopg 3 and psycopg-pool ({exc.name} is missing): "
                         "pip install 'rolecall[postgresql]'") from None
    return store_postgres


def _check_account_id(account_id: str | None) -> None:
    if account_id is not None and not (len(account_id) == 12 and account_id.isdigit()):
        raise StoreError(f"account id must be 12 digits, not {account_id!r}")


def _delegate(attr: str, name: str, impl):
    """``Store.name``: the method ``name`` of the repository in ``Store.attr`` (signature and docs of ``impl``)."""
    def method(self, *args, **kwargs):
        return getattr(getattr(self, attr), name)(*args, **kwargs)
    return functools.update_wrapper(method, impl)


for _attr, _names in _MEMBERS:
    for _name in _names:
        setattr(Store, _name, _delegate(_attr, _name, getattr(SQL_REPOSITORIES[_attr], _name)))

"""The repository ``store_api.TokenKeys``: the keys that seal session tokens.

``token_keys`` is on every minting request's path, so it is cached until the
database may have changed (``SqlDb.data_stamp``: SQLite's ``data_version`` and
this store's own commits; on PostgreSQL, this store's commits and at most one
second of the wall clock). A token sealed under a key the cache lacks (another
replica's new one) asks with ``fresh``, which reads the database past every cache,
so it verifies at once.
"""

from __future__ import annotations

import secrets

from sts_backend.store_core import StoreError
from sts_backend.store_sql import SqlDb


class SqlTokenKeys:
    """Token keys (``SqlDb.where`` names the database in errors)."""

    def __init__(self, db: SqlDb) -> None:
        self._db = db
        self._cache: tuple[object, tuple[int, dict[int, bytes]]] | None = None

    def token_keys(self, fresh: bool = False) -> tuple[int, dict[int, bytes]]:
        """(current key id, every key id → 32-byte key) for sealing session tokens
        (``fresh``: past every cache)."""
        db = self._db
        stamp = db.data_stamp()
        if fresh or self._cache is None or self._cache[0] != stamp:
            keys = {r[0]: bytes(r[1]) for r in db.conn.execute("SELECT key_id, key FROM token_keys").fetchall()}
            if not keys:
                raise StoreError(f"{db.where} has no session-token key: run `rolecall backend rotate-token-key`")
            self._cache = (stamp, (max(keys), keys))
        current, keys = self._cache[1]
        return current, dict(keys)

    def add_token_key(self) -> int:
        """Add a fresh token key and make it current (``rolecall backend rotate-token-key``).

        Older keys stay, so tokens they sealed keep verifying until they expire.
        """
        with self._db.tx() as conn:
            return conn.execute("INSERT INTO token_keys (key, created) VALUES (?, ?) RETURNING key_id",
                                (secrets.token_bytes(32), self._db.now())).fetchone()[0]

    def retire_token_key(self, key_id: int | None = None) -> int:
        """Delete token key ``key_id`` (default: the oldest) and return its id
        (``rolecall backend retire-token-key``). Tokens it sealed stop verifying: every
        backend on this database notices within ``auth.KEY_CHECK_INTERVAL``.

        Raises:
            StoreError: no such key, or it is the current one (the newest key, which seals
                new tokens, is never retired: rotate first).
        """
        with self._db.tx() as conn:
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

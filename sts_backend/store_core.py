"""What every part of the store shares: the connection, transactions, time, quotas.

Writes go through ``_tx()``: ``BEGIN IMMEDIATE`` takes SQLite's write lock up
front (waiting up to ``busy_timeout`` for another process), so a read-check-write
inside one ``_tx`` — "is the name free?", "is the quota reached?" — is atomic
across processes. ``COMMIT`` under ``synchronous=FULL`` in WAL mode is durable
before ``_tx`` returns: an acknowledged write survives SIGKILL and power loss.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
from collections.abc import Iterator

from wire.clock import WallClock

UTC = dt.timezone.utc

# Quotas (sts-iam.md §7; the product FAQ in shared/seed/iam-faq.txt where it differs:
# 250 roles per account, 5,120 characters per managed policy). Stored overrides live
# in the ``settings`` table (``Store.set_quota``).
DEFAULT_QUOTAS: dict[str, int] = {
    "UsersPerAccount": 5000,
    "GroupsPerAccount": 300,
    "RolesPerAccount": 250,
    "PoliciesPerAccount": 1500,
    "AccessKeysPerUser": 2,
    "GroupsPerUser": 10,
    "MFADevicesPerUser": 8,
    "PoliciesPerUser": 10,
    "PoliciesPerGroup": 10,
    "PoliciesPerRole": 10,
    "VersionsPerPolicy": 5,
    "TagsPerEntity": 50,
    "UserPolicySize": 2048,
    "GroupPolicySize": 5120,
    "RolePolicySize": 10240,
    "PolicySize": 5120,
    "AssumeRolePolicySize": 2048,
    "AccountAliasesPerAccount": 1,
    "OpenIdConnectProvidersPerAccount": 100,
    # rolecall's own limits (not IAM quotas): MFA lockouts (sts_backend.mfa) and STS call rates
    # per access key (sts_backend.throttle; 0 requests per second turns throttling off)
    "MfaFailuresBeforeLockout": 5,
    "MfaFailureWindowSeconds": 300,
    "MfaLockoutSeconds": 300,
    "StsRequestsPerSecondPerKey": 50,
    "StsBurstPerKey": 100,
}
# The smallest value each quota takes (1 unless listed).
QUOTA_MINIMUM: dict[str, int] = {"StsRequestsPerSecondPerKey": 0}


def ts(when: dt.datetime) -> str:
    """Datetime → stored text (UTC, microseconds)."""
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def from_ts(text: str | None) -> dt.datetime | None:
    """Stored text → aware datetime (None stays None)."""
    return None if text is None else dt.datetime.fromisoformat(text)


class StoreCore:
    """Connection, clock, transactions and settings; the other store parts build on it."""

    _conn: sqlite3.Connection
    _clock: WallClock
    _account_id: str

    def _init_core(self, conn: sqlite3.Connection, clock: WallClock) -> None:
        self._conn = conn
        self._clock = clock
        self._tx_depth = 0
        self._writes = 0          # own commits; data_version only sees other connections'

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (nested uses join the outer one)."""
        if self._tx_depth:
            self._tx_depth += 1
            try:
                yield self._conn
            finally:
                self._tx_depth -= 1
            return
        self._conn.execute("BEGIN IMMEDIATE")
        self._tx_depth = 1
        try:
            yield self._conn
        except BaseException:
            self._tx_depth = 0
            self._conn.execute("ROLLBACK")
            raise
        self._tx_depth = 0
        self._conn.execute("COMMIT")
        self._writes += 1

    def transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """One write transaction around several calls (each joins it): all of them commit, or none.

        The backend wraps every IAM change in one, with the change's audit line
        written inside it, so a change whose line cannot be written is rolled back.
        """
        return self._tx()

    def _now(self) -> str:
        return ts(self._clock.now())

    def _one(self, sql: str, args: tuple = ()) -> sqlite3.Row | None:
        return self._conn.execute(sql, args).fetchone()

    def _all(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        return self._conn.execute(sql, args).fetchall()

    def _count(self, sql: str, args: tuple = ()) -> int:
        return self._conn.execute(sql, args).fetchone()[0]

    def _bump_epoch(self) -> None:
        """Note a change that can revoke live sessions (call inside ``_tx``)."""
        self._conn.execute("UPDATE account SET revocation_epoch = revocation_epoch + 1")

    def quota(self, name: str) -> int:
        """The quota ``name`` (a key of ``DEFAULT_QUOTAS``), stored override first."""
        row = self._one("SELECT value FROM settings WHERE name = ?", (name,))
        return DEFAULT_QUOTAS[name] if row is None else row[0]

    def set_quota(self, name: str, value: int) -> None:
        """Override the quota ``name`` for this account (e.g. ``RolesPerAccount``)."""
        if name not in DEFAULT_QUOTAS:
            raise KeyError(name)
        with self._tx() as conn:
            conn.execute("INSERT INTO settings (name, value) VALUES (?, ?) "
                         "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (name, int(value)))

"""The repository ``store_api.Account``: the account, quotas and settings, aliases, the summary."""

from __future__ import annotations

import contextlib
import datetime as dt

from sts_backend import iam_errors as err
from sts_backend.store_core import DEFAULT_QUOTAS, from_ts
from sts_backend.store_sql import Connection, SqlDb


class SqlAccount:
    """The account row, the ``settings`` table (quota overrides), aliases, counts."""

    def __init__(self, db: SqlDb) -> None:
        self._db = db

    def account_id(self) -> str:
        """The account's 12-digit id."""
        return self._db.account_id

    def account_created(self) -> dt.datetime:
        """When the store (the account) was initialised."""
        return from_ts(self._db.one("SELECT created FROM account")[0])

    def transaction(self) -> contextlib.AbstractContextManager[Connection]:
        """One write transaction around several calls (each joins it): all of them commit, or none.

        The backend wraps every IAM change in one, with the change's audit line
        written inside it, so a change whose line cannot be written is rolled back.
        """
        return self._db.tx()

    def quota(self, name: str) -> int:
        """The quota ``name`` (a key of ``DEFAULT_QUOTAS``), stored override first."""
        return self._db.quota(name)

    def set_quota(self, name: str, value: int) -> None:
        """Override the quota ``name`` for this account (e.g. ``RolesPerAccount``)."""
        if name not in DEFAULT_QUOTAS:
            raise KeyError(name)
        with self._db.tx() as conn:
            conn.execute("INSERT INTO settings (name, value) VALUES (?, ?) "
                         "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (name, int(value)))

    # ---- account aliases ---------------------------------------------------------------

    def account_aliases(self) -> list[str]:
        """The account's aliases (at most one)."""
        return [r[0] for r in self._db.all("SELECT alias FROM account_aliases ORDER BY alias")]

    def create_account_alias(self, alias: str) -> None:
        """Set the account alias; one per account (re-creating the same one is a no-op)."""
        with self._db.tx():
            if self._db.one("SELECT 1 FROM account_aliases WHERE alias = ?", (alias,)):
                return
            self._db.check_quota("AccountAliasesPerAccount", self._db.count("SELECT count(*) FROM account_aliases"))
            self._db.conn.execute("INSERT INTO account_aliases (alias) VALUES (?)", (alias,))

    def delete_account_alias(self, alias: str) -> None:
        """Remove the alias, or NoSuchEntity."""
        with self._db.tx():
            if not self._db.conn.execute("DELETE FROM account_aliases WHERE alias = ?", (alias,)).rowcount:
                raise err.no_such_alias(alias)

    # ---- summary -----------------------------------------------------------------------

    def entity_counts(self) -> dict[str, int]:
        """Counts for GetAccountSummary."""
        q = self._db.count
        return {
            "Users": q("SELECT count(*) FROM users"),
            "Groups": q("SELECT count(*) FROM groups"),
            "Roles": q("SELECT count(*) FROM roles"),
            "Policies": q("SELECT count(*) FROM policies"),
            "PolicyVersionsInUse": q("SELECT count(*) FROM policy_attachments"),
            "MFADevices": q("SELECT count(*) FROM mfa_devices"),
            "MFADevicesInUse": q("SELECT count(*) FROM mfa_devices WHERE user_id IS NOT NULL"),
            "AccountAccessKeysPresent": 0,
            "AccountMFAEnabled": 0,
            "AccountSigningCertificatesPresent": 0,
            "Providers": q("SELECT count(*) FROM oidc_providers"),   # OIDC; this backend has no SAML providers
        }

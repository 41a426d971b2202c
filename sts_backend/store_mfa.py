"""Store part: virtual MFA devices, account aliases and the account summary.

A device's ``last_timecode`` only ever grows: enabling, resyncing and signing in
(``Store.consume_totp``) each set it with a compare-and-set
(``… WHERE last_timecode < ?``), so one TOTP step is accepted at most once even
when several processes share the data dir. Deactivating keeps it, so codes used
before cannot be replayed when the device is enabled again.
"""

from __future__ import annotations

from sts_backend import iam_errors as err
from sts_backend import ids
from sts_backend.records import MfaDevice
from sts_backend.store_core import from_ts
from sts_backend.store_policies import StorePolicies

_MFA_SELECT = ("SELECT d.serial, u.name, d.seed, d.enable_date, d.last_timecode "
               "FROM mfa_devices d LEFT JOIN users u USING (user_id)")


def mfa_from_row(row) -> MfaDevice:
    return MfaDevice(serial_number=row[0], user_name=row[1], seed_base32=row[2],
                     enable_date=from_ts(row[3]), last_timecode=row[4])


class StoreMfa(StorePolicies):
    """Virtual MFA devices, aliases, summary."""

    # ---- virtual MFA devices -----------------------------------------------------------

    def create_virtual_mfa_device(self, name: str, seed: str, path: str = "/") -> MfaDevice:
        """Store a new, unassigned virtual MFA device; its serial is its ARN."""
        serial = ids.mfa_arn(self._account_id, name, path)
        with self._tx():
            if self._one("SELECT 1 FROM mfa_devices WHERE serial = ?", (serial,)):
                raise err.mfa_exists()
            self._conn.execute("INSERT INTO mfa_devices (serial, name, path, seed, created) VALUES (?, ?, ?, ?, ?)",
                               (serial, name, path, seed, self._now()))
        return self.get_mfa_device(serial)

    def get_mfa_device(self, serial: str) -> MfaDevice:
        """The device ``serial``, or NoSuchEntity."""
        row = self._one(f"{_MFA_SELECT} WHERE d.serial = ?", (serial,))
        if row is None:
            raise err.no_such_mfa_device(serial)
        return mfa_from_row(row)

    def enable_mfa_device(self, serial: str, user_name: str, last_timecode: int) -> None:
        """Assign an unassigned device to a user, recording the last code's step.

        Raises EntityAlreadyExists when the device is assigned (or was assigned and
        used meanwhile), LimitExceeded past ``MFADevicesPerUser`` (8).
        """
        with self._tx():
            self.get_mfa_device(serial)
            user_id, _ = self._entity("user", user_name)
            self._check_quota("MFADevicesPerUser",
                              self._count("SELECT count(*) FROM mfa_devices WHERE user_id = ?", (user_id,)))
            cur = self._conn.execute(
                "UPDATE mfa_devices SET user_id = ?, enable_date = ?, last_timecode = ? "
                "WHERE serial = ? AND user_id IS NULL AND last_timecode < ?",
                (user_id, self._now(), last_timecode, serial, last_timecode))
            if not cur.rowcount:
                raise err.mfa_in_use()

    def _assigned(self, serial: str, user_name: str | None) -> MfaDevice:
        device = self.get_mfa_device(serial)
        if user_name is not None:
            self._entity("user", user_name)
        if device.user_name is None or (user_name is not None and device.user_name.lower() != user_name.lower()):
            raise err.no_such_mfa_device(serial)
        return device

    def resync_mfa_device(self, serial: str, user_name: str, last_timecode: int) -> bool:
        """Record a resync's step for a device assigned to ``user_name``; False if not newer."""
        with self._tx():
            self._assigned(serial, user_name)
            cur = self._conn.execute("UPDATE mfa_devices SET last_timecode = ? WHERE serial = ? AND last_timecode < ?",
                                     (last_timecode, serial, last_timecode))
            return bool(cur.rowcount)

    def deactivate_mfa_device(self, serial: str, user_name: str | None = None) -> None:
        """Unassign a device from its user (from ``user_name``'s, when given), and end the
        sessions it authenticated: those issued until now are revoked (``session_revoked``)."""
        with self._tx():
            device = self._assigned(serial, user_name)
            self._conn.execute("UPDATE mfa_devices SET user_id = NULL, enable_date = NULL WHERE serial = ?", (serial,))
            self._conn.execute("INSERT INTO mfa_revocations (serial, revoked_before) VALUES (?, ?) "
                               "ON CONFLICT (serial) DO UPDATE SET revoked_before = "
                               "max(revoked_before, excluded.revoked_before)", (device.serial_number, self._now()))
            self._bump_epoch()

    def delete_virtual_mfa_device(self, serial: str) -> None:
        """Delete an unassigned device (DeleteConflict while assigned)."""
        with self._tx():
            if self.get_mfa_device(serial).user_name is not None:
                raise err.mfa_still_assigned()
            self._conn.execute("DELETE FROM mfa_devices WHERE serial = ?", (serial,))

    def mfa_devices_of(self, user_name: str) -> list[MfaDevice]:
        """Devices assigned to the user, by enable date."""
        user_id, _ = self._entity("user", user_name)
        return [mfa_from_row(r) for r in self._all(f"{_MFA_SELECT} WHERE d.user_id = ? ORDER BY d.enable_date",
                                                   (user_id,))]

    def virtual_mfa_devices(self, assignment: str = "Any") -> list[MfaDevice]:
        """Virtual devices filtered by ``Assigned``/``Unassigned``/``Any``, by serial."""
        where = {"Assigned": "WHERE d.user_id IS NOT NULL", "Unassigned": "WHERE d.user_id IS NULL"}.get(assignment, "")
        return [mfa_from_row(r) for r in self._all(f"{_MFA_SELECT} {where} ORDER BY d.serial")]

    # ---- account aliases ---------------------------------------------------------------

    def account_aliases(self) -> list[str]:
        """The account's aliases (at most one)."""
        return [r[0] for r in self._all("SELECT alias FROM account_aliases ORDER BY alias")]

    def create_account_alias(self, alias: str) -> None:
        """Set the account alias; one per account (re-creating the same one is a no-op)."""
        with self._tx():
            if self._one("SELECT 1 FROM account_aliases WHERE alias = ?", (alias,)):
                return
            self._check_quota("AccountAliasesPerAccount", self._count("SELECT count(*) FROM account_aliases"))
            self._conn.execute("INSERT INTO account_aliases (alias) VALUES (?)", (alias,))

    def delete_account_alias(self, alias: str) -> None:
        """Remove the alias, or NoSuchEntity."""
        with self._tx():
            if not self._conn.execute("DELETE FROM account_aliases WHERE alias = ?", (alias,)).rowcount:
                raise err.no_such_alias(alias)

    # ---- summary -----------------------------------------------------------------------

    def entity_counts(self) -> dict[str, int]:
        """Counts for GetAccountSummary."""
        q = self._count
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
        }

"""The repository ``store_api.MfaDevices``: virtual MFA devices, TOTP replay state, failure counters.

A device's ``last_timecode`` only ever grows: enabling, resyncing and signing in
(``consume_totp``) each set it with a compare-and-set
(``… WHERE last_timecode < ?``), so one TOTP step is accepted at most once even
when several processes share the data dir. Deactivating keeps it, so codes used
before cannot be replayed when the device is enabled again.
"""

from __future__ import annotations

import datetime as dt

from sts_backend import iam_errors as err
from sts_backend import ids, mfa
from sts_backend.records import MfaDevice
from sts_backend.store_core import from_ts
from sts_backend.store_sql import SqlDb

_MFA_SELECT = ("SELECT d.serial, u.name, d.seed, d.enable_date, d.last_timecode "
               "FROM mfa_devices d LEFT JOIN users u USING (user_id)")


def mfa_from_row(row) -> MfaDevice:
    return MfaDevice(serial_number=row[0], user_name=row[1], seed_base32=row[2],
                     enable_date=from_ts(row[3]), last_timecode=row[4])


class SqlMfaDevices:
    """Virtual MFA devices, replay state, failed codes."""

    def __init__(self, db: SqlDb) -> None:
        self._db = db

    def mfa_device(self, serial_number: str) -> MfaDevice | None:
        """An MFA device by serial number, or None."""
        row = self._db.one(f"{_MFA_SELECT} WHERE d.serial = ?", (serial_number,))
        return None if row is None else mfa_from_row(row)

    def consume_totp(self, serial_number: str, timecode: int) -> bool:
        """Record ``timecode`` as used if newer than the device's last one (atomic, durable).

        One conditional UPDATE: of two processes racing with the same step, exactly
        one sees ``rowcount == 1``.
        """
        cur = self._db.conn.execute("UPDATE mfa_devices SET last_timecode = ? WHERE serial = ? AND last_timecode < ?",
                                    (timecode, serial_number, timecode))
        self._db.writes += 1
        return cur.rowcount == 1

    def mfa_failures(self, serial_number: str) -> mfa.FailureState | None:
        """The device's failed codes and lockouts (``sts_backend.mfa``), or None when it has none."""
        row = self._db.one("SELECT failures, first_failure, locked_until, lockouts FROM mfa_failures "
                           "WHERE serial = ?", (serial_number,))
        return None if row is None else mfa.FailureState(*row)

    def record_mfa_failure(self, serial_number: str, now: dt.datetime) -> bool:
        """Count one failed code (durably, atomically); True when it locks the device."""
        db = self._db
        with db.tx() as conn:
            state, locks = mfa.after_failure(
                self.mfa_failures(serial_number), now, limit=db.quota("MfaFailuresBeforeLockout"),
                window=db.quota("MfaFailureWindowSeconds"), lockout=db.quota("MfaLockoutSeconds"))
            conn.execute("INSERT INTO mfa_failures (serial, failures, first_failure, locked_until, lockouts) "
                         "VALUES (?, ?, ?, ?, ?) ON CONFLICT (serial) DO UPDATE SET failures = excluded.failures, "
                         "first_failure = excluded.first_failure, locked_until = excluded.locked_until, "
                         "lockouts = excluded.lockouts",
                         (serial_number, state.failures, state.first_failure, state.locked_until, state.lockouts))
        return locks

    def clear_mfa_failures(self, serial_number: str) -> None:
        """A good code: forget the device's failures and lockouts."""
        with self._db.tx() as conn:
            conn.execute("DELETE FROM mfa_failures WHERE serial = ?", (serial_number,))

    # ---- virtual MFA devices -----------------------------------------------------------

    def create_virtual_mfa_device(self, name: str, seed: str, path: str = "/") -> MfaDevice:
        """Store a new, unassigned virtual MFA device; its serial is its ARN."""
        serial = ids.mfa_arn(self._db.account_id, name, path)
        with self._db.tx():
            if self._db.one("SELECT 1 FROM mfa_devices WHERE serial = ?", (serial,)):
                raise err.mfa_exists()
            self._db.conn.execute("INSERT INTO mfa_devices (serial, name, path, seed, created) VALUES (?, ?, ?, ?, ?)",
                                  (serial, name, path, seed, self._db.now()))
        return self.get_mfa_device(serial)

    def get_mfa_device(self, serial: str) -> MfaDevice:
        """The device ``serial``, or NoSuchEntity."""
        row = self._db.one(f"{_MFA_SELECT} WHERE d.serial = ?", (serial,))
        if row is None:
            raise err.no_such_mfa_device(serial)
        return mfa_from_row(row)

    def enable_mfa_device(self, serial: str, user_name: str, last_timecode: int) -> None:
        """Assign an unassigned device to a user, recording the last code's step.

        Raises EntityAlreadyExists when the device is assigned (or was assigned and
        used meanwhile), LimitExceeded past ``MFADevicesPerUser`` (8).
        """
        with self._db.tx():
            self.get_mfa_device(serial)
            user_id, _ = self._db.entity("user", user_name)
            self._db.check_quota("MFADevicesPerUser",
                                 self._db.count("SELECT count(*) FROM mfa_devices WHERE user_id = ?", (user_id,)))
            cur = self._db.conn.execute(
                "UPDATE mfa_devices SET user_id = ?, enable_date = ?, last_timecode = ? "
                "WHERE serial = ? AND user_id IS NULL AND last_timecode < ?",
                (user_id, self._db.now(), last_timecode, serial, last_timecode))
            if not cur.rowcount:
                raise err.mfa_in_use()

    def _assigned(self, serial: str, user_name: str | None) -> MfaDevice:
        device = self.get_mfa_device(serial)
        if user_name is not None:
            self._db.entity("user", user_name)
        if device.user_name is None or (user_name is not None and device.user_name.lower() != user_name.lower()):
            raise err.no_such_mfa_device(serial)
        return device

    def resync_mfa_device(self, serial: str, user_name: str, last_timecode: int) -> bool:
        """Record a resync's step for a device assigned to ``user_name``; False if not newer."""
        with self._db.tx():
            self._assigned(serial, user_name)
            cur = self._db.conn.execute("UPDATE mfa_devices SET last_timecode = ? "
                                        "WHERE serial = ? AND last_timecode < ?",
                                        (last_timecode, serial, last_timecode))
            return bool(cur.rowcount)

    def deactivate_mfa_device(self, serial: str, user_name: str | None = None) -> None:
        """Unassign a device from its user (from ``user_name``'s, when given), and end the
        sessions it authenticated: those issued until now are revoked (``session_revoked``)."""
        with self._db.tx():
            device = self._assigned(serial, user_name)
            self._db.conn.execute("UPDATE mfa_devices SET user_id = NULL, enable_date = NULL WHERE serial = ?",
                                  (serial,))
            self._db.conn.execute("INSERT INTO mfa_revocations (serial, revoked_before) VALUES (?, ?) "
                                  "ON CONFLICT (serial) DO UPDATE SET revoked_before = "
                                  "excluded.revoked_before "
                                  "WHERE excluded.revoked_before > mfa_revocations.revoked_before",
                                  (device.serial_number, self._db.now()))
            self._db.bump_epoch()

    def delete_virtual_mfa_device(self, serial: str) -> None:
        """Delete an unassigned device (DeleteConflict while assigned)."""
        with self._db.tx():
            if self.get_mfa_device(serial).user_name is not None:
                raise err.mfa_still_assigned()
            self._db.conn.execute("DELETE FROM mfa_devices WHERE serial = ?", (serial,))

    def mfa_devices_of(self, user_name: str) -> list[MfaDevice]:
        """Devices assigned to the user, by enable date."""
        user_id, _ = self._db.entity("user", user_name)
        return [mfa_from_row(r) for r in self._db.all(f"{_MFA_SELECT} WHERE d.user_id = ? ORDER BY d.enable_date",
                                                      (user_id,))]

    def virtual_mfa_devices(self, assignment: str = "Any") -> list[MfaDevice]:
        """Virtual devices filtered by ``Assigned``/``Unassigned``/``Any``, by serial."""
        where = {"Assigned": "WHERE d.user_id IS NOT NULL", "Unassigned": "WHERE d.user_id IS NULL"}.get(assignment, "")
        return [mfa_from_row(r) for r in self._db.all(f"{_MFA_SELECT} {where} ORDER BY d.serial")]

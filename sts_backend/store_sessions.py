"""The repository ``store_api.Sessions``: session revocation and the revocation epoch.

Sessions themselves are not stored (a sealed token carries all of one); what is
stored is what ends them: ``revocations`` (explicit, per role or user),
``mfa_revocations`` (written by ``store_mfa`` on deactivation), and the account's
``revocation_epoch``, which every revoking change bumps so callers can cache
``session_revoked`` answers.
"""

from __future__ import annotations

import datetime as dt

from sts_backend.records import Session
from sts_backend.store_core import from_ts, ts
from sts_backend.store_sql import SqlDb


class SqlSessions:
    """Revocations."""

    def __init__(self, db: SqlDb) -> None:
        self._db = db

    def revocation_epoch(self) -> int:
        """A counter bumped by every change that can revoke live sessions.

        Read through ``SqlDb.one`` like the revocations themselves, so that where reads
        are cached (a PostgreSQL replica's read lane) the epoch is never fresher than the
        rows it stands for: a caller that caches answers per epoch cannot pin a stale one."""
        return self._db.one("SELECT revocation_epoch FROM account")[0]

    def revoke_sessions(self, kind: str, name: str, before: dt.datetime | None = None) -> None:
        """Revoke every session of role/user ``name`` issued before ``before`` (default now)."""
        if kind not in ("role", "user"):
            raise ValueError(kind)
        when = ts(before or self._db.clock.now())
        with self._db.tx() as conn:
            conn.execute("INSERT INTO revocations (kind, name, revoked_before) VALUES (?, ?, ?) "
                         "ON CONFLICT (kind, name) DO UPDATE SET revoked_before = "
                         "excluded.revoked_before WHERE excluded.revoked_before > revocations.revoked_before",
                         (kind, name, when))
            self._db.bump_epoch()

    def _revoked_after(self, kind: str, name: str, issued_at: dt.datetime) -> bool:
        row = self._db.one("SELECT revoked_before FROM revocations WHERE kind = ? AND name = ?", (kind, name))
        return row is not None and issued_at < from_ts(row[0])

    def session_revoked(self, session: Session) -> bool:
        """True when what ``session`` stands on is gone: the role (deleted, or recreated
        under the same name), the source key (deleted or not Active), the source user,
        the MFA device that authenticated it (deactivated since), or an explicit
        ``revoke_sessions`` later than the session's issue time."""
        one = self._db.one
        if session.role_name is not None:
            row = one("SELECT role_id FROM roles WHERE name = ?", (session.role_name,))
            if row is None or (session.role_id is not None and row[0] != session.role_id):
                return True
            if self._revoked_after("role", session.role_name, session.issued_at):
                return True
        if session.source_access_key_id:
            row = one("SELECT status FROM access_keys WHERE access_key_id = ?", (session.source_access_key_id,))
            if row is None or row[0] != "Active":
                return True
        if session.source_user_name:
            if one("SELECT 1 FROM users WHERE name = ?", (session.source_user_name,)) is None:
                return True
            if self._revoked_after("user", session.source_user_name, session.issued_at):
                return True
        if session.mfa_serial:
            row = one("SELECT revoked_before FROM mfa_revocations WHERE serial = ?", (session.mfa_serial,))
            if row is not None and session.issued_at < from_ts(row[0]):
                return True
        return False

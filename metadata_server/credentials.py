"""What the metadata server serves: role credentials, and who holds them.

The metadata server knows nothing of the agent. It asks a ``CredentialHolder``
for the current ``RoleCredentials`` on every credential request and serves
exactly that, or refuses (503) when there is nothing valid to serve. The
agent's ``Rotator`` is the holder (the daemon's and ``rolecall exec``'s).
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = ["CredentialHolder", "RoleCredentials"]

# IAM role names: 1-64 of [\w+=,.@-] (sts-iam.md). The name becomes a path
# segment and the body of the role listing, so nothing else may slip in.
_ROLE_NAME = re.compile(r"[\w+=,.@-]{1,64}", re.ASCII)
_ACCOUNT_ID = re.compile(r"[0-9]{12}")


@dataclass(frozen=True, slots=True)
class RoleCredentials:
    """One set of temporary role credentials, as IMDS and the container endpoint serve them.

    The secret key and the session token never appear in ``repr`` (so never in
    a log line or a traceback's locals dump by accident).

    Args:
        role_name: the role's name (last part of its ARN, no path).
        access_key_id: ``ASIA...``.
        secret_access_key: the secret (hidden from ``repr``).
        token: the session token (hidden from ``repr``).
        expiration: when STS says they expire; timezone-aware.
        last_updated: when they were obtained; timezone-aware.
        account_id: the role's 12-digit account, when known.

    Raises:
        ValueError: a malformed role name or account id, an empty key, or a
            naive datetime.
    """

    role_name: str
    access_key_id: str
    secret_access_key: str = field(repr=False)
    token: str = field(repr=False)
    expiration: _dt.datetime
    last_updated: _dt.datetime
    account_id: str | None = None

    def __post_init__(self) -> None:
        if not _ROLE_NAME.fullmatch(self.role_name):
            raise ValueError("role_name must be 1-64 characters of [A-Za-z0-9+=,.@_-]")
        if not self.access_key_id or not self.secret_access_key or not self.token:
            raise ValueError("access_key_id, secret_access_key and token must not be empty")
        if self.expiration.tzinfo is None or self.last_updated.tzinfo is None:
            raise ValueError("expiration and last_updated must be timezone-aware")
        if self.account_id is not None and not _ACCOUNT_ID.fullmatch(self.account_id):
            raise ValueError("account_id must be 12 digits")


@runtime_checkable
class CredentialHolder(Protocol):
    """Whatever hands the metadata server its credentials (the agent, a test)."""

    def current(self) -> RoleCredentials | None:
        """The credentials to serve now, or None when none are held.

        Called on every credential request, so it must be cheap and must not
        block: return what is held, never fetch. The server itself refuses
        credentials that have expired by its wall clock.
        """

"""The backend's records and the store interface the STS side relies on.

Plain frozen dataclasses cross every boundary inside the backend: the SQLite
store (``store.py``) returns them, the STS and IAM operations take and return
them, and the sealed session token (``tokens.py``) carries a ``Session``. The
``StsStore`` protocol is the narrow read/write surface that authentication and
the STS operations need; ``store.Store`` implements it (and much more for IAM).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal, Protocol

KeyStatus = Literal["Active", "Inactive", "Expired"]
PrincipalKind = Literal["root", "user", "assumed-role", "federated-user"]
SessionKind = Literal["GetSessionToken", "AssumeRole", "GetFederationToken", "AssumeRoleWithWebIdentity", "AssumeRoleWithSAML"]


@dataclass(frozen=True, slots=True)
class User:
    user_name: str
    user_id: str          # AIDA + 17
    arn: str
    path: str
    create_date: dt.datetime


@dataclass(frozen=True, slots=True)
class AccessKey:
    access_key_id: str    # AKIA + 16
    user_name: str        # "" for the account root (not minted by this backend today)
    secret_access_key: str = field(repr=False)
    status: KeyStatus
    create_date: dt.datetime


@dataclass(frozen=True, slots=True)
class Role:
    role_name: str
    role_id: str          # AROA + 17
    arn: str
    path: str
    assume_role_policy: str
    max_session_duration: int
    description: str
    create_date: dt.datetime


@dataclass(frozen=True, slots=True)
class MfaDevice:
    serial_number: str    # arn:aws:iam::ACCT:mfa/PATHNAME
    user_name: str | None  # None until enabled (assigned)
    seed_base32: str = field(repr=False)
    enable_date: dt.datetime | None
    last_timecode: int    # highest TOTP timecode ever accepted; codes must be newer


@dataclass(frozen=True, slots=True)
class Session:
    """What a sealed session token carries: everything authorization needs.

    Verifying a request signed with temporary credentials needs only this (no
    database read); revocation is checked separately against a small cached set.
    """

    kind: SessionKind
    access_key_id: str                    # ASIA + 16
    secret_access_key: str = field(repr=False)
    account_id: str
    principal_arn: str                    # assumed-role / federated-user / user ARN
    user_id: str                          # GetCallerIdentity UserId (AROA...:session, AIDA..., ACCT:name)
    source_user_name: str | None          # the IAM user at the root of the chain ("" for root)
    source_access_key_id: str             # the long-term key the chain started from
    role_name: str | None                 # AssumeRole*: the role
    role_id: str | None
    session_name: str | None
    source_identity: str | None
    mfa_authenticated: bool
    mfa_auth_time: dt.datetime | None
    issued_at: dt.datetime
    expires_at: dt.datetime
    chained: bool                         # minted from temporary credentials (1 h cap applied)
    session_policy: str | None = None
    policy_arns: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    transitive_tag_keys: tuple[str, ...] = ()   # session tags that carry through role chaining
    mfa_serial: str | None = None         # the MFA device that authenticated the chain
    role_path: str | None = None          # AssumeRole*: the role's path (aws:PrincipalArn keeps it)


class StsStore(Protocol):
    """What the STS operations and request authentication read and write."""

    def account_id(self) -> str: ...
    def access_key(self, access_key_id: str) -> AccessKey | None: ...
    def user(self, user_name: str) -> User | None: ...
    def role(self, role_name: str) -> Role | None: ...
    def mfa_device(self, serial_number: str) -> MfaDevice | None: ...

    def consume_totp(self, serial_number: str, timecode: int) -> bool:
        """Atomically record ``timecode`` as used if it is newer than the last one.

        Returns False when the device already accepted this or a later code, so a
        code is accepted at most once even by two processes on one data dir.
        """

    def mfa_failures(self, serial_number: str):
        """The device's failed codes and lockouts (``sts_backend.mfa.FailureState``), or None."""

    def record_mfa_failure(self, serial_number: str, now) -> bool:
        """Count one failed code for the device, durably; True when it locks the device."""

    def clear_mfa_failures(self, serial_number: str) -> None:
        """Forget the device's failed codes and lockouts (a good code came)."""

    def identity_policies(self, kind: Literal["user", "role"], name: str) -> list[str]:
        """Policy documents (JSON text) granting to the entity: inline, attached managed
        (default versions), and for users those of their groups."""

    def tags_of_id(self, kind: Literal["user", "role"], owner_id: str) -> list[tuple[str, str]]:
        """The tags of the user or role with unique id ``owner_id`` ([] when there is none)."""

    def boundary_document(self, kind: Literal["user", "role"], name: str) -> tuple[str | None, str | None]:
        """(ARN, default version's document) of the entity's permissions boundary: (None, None)
        without one, (ARN, None) when its policy cannot be read (callers deny everything)."""

    def token_keys(self, fresh: bool = False) -> tuple[int, dict[int, bytes]]:
        """(current key id, all key ids -> 32-byte AES-GCM keys) for sealing session tokens;
        ``fresh``: read the database now, past any cache (a token under an unknown key)."""

    def revocation_epoch(self) -> int:
        """A counter bumped by every change that can revoke live sessions (role deleted,
        key deactivated or deleted, user deleted, sessions revoked); lets callers cache
        ``session_revoked`` answers cheaply."""

    def session_revoked(self, session: Session) -> bool:
        """True when the role or source key/user behind ``session`` was deleted or
        deactivated, or its sessions were revoked after ``session.issued_at``."""

    def record_key_use(self, access_key_id: str, service: str, region: str, when: dt.datetime) -> None:
        """Note the last use of a long-term key (GetAccessKeyLastUsed); may be lazy."""

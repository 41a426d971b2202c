"""Records the IAM side needs beyond ``records.py``: groups, managed policies, key use.

Frozen, slotted dataclasses, returned by ``store.Store`` and rendered by the IAM
operations. (``User``, ``AccessKey``, ``Role`` and ``MfaDevice`` live in
``records.py`` because the STS side reads them too.)
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Group:
    group_name: str
    group_id: str         # AGPA + 17
    arn: str
    path: str
    create_date: dt.datetime


@dataclass(frozen=True, slots=True)
class ManagedPolicy:
    policy_name: str
    policy_id: str        # ANPA + 17
    arn: str
    path: str
    description: str
    create_date: dt.datetime
    update_date: dt.datetime
    default_version_id: str   # "v1", "v2", ...
    attachment_count: int
    permissions_boundary_usage_count: int = 0   # users and roles whose boundary it is


@dataclass(frozen=True, slots=True)
class PolicyVersion:
    version_id: str
    document: str
    is_default: bool
    create_date: dt.datetime


@dataclass(frozen=True, slots=True)
class KeyLastUsed:
    access_key_id: str
    user_name: str
    last_used: dt.datetime | None
    service: str | None
    region: str | None


@dataclass(frozen=True, slots=True)
class AttachedPolicy:
    policy_name: str
    policy_arn: str


@dataclass(frozen=True, slots=True)
class OidcProvider:
    """An IAM OpenID Connect provider (AssumeRoleWithWebIdentity trusts its tokens)."""

    arn: str                          # arn:aws:iam::ACCT:oidc-provider/HOST[/PATH]
    url: str                          # as registered, with its scheme (https://HOST[/PATH])
    client_ids: tuple[str, ...]       # the audiences its tokens may carry
    thumbprints: tuple[str, ...]
    tags: tuple[tuple[str, str], ...]
    create_date: dt.datetime

    @property
    def host_path(self) -> str:
        """The URL without its scheme: IAM's ``Url``, the ARN's resource and the condition-key prefix."""
        return self.url.split("://", 1)[1]

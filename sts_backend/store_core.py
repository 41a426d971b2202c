"""What every store engine shares: quotas and their defaults, stored time, the store's error.

Nothing here knows SQL: the engines (``store_sqlite``, ``store_postgres``) and the repositories do.
"""

from __future__ import annotations

import datetime as dt

UTC = dt.timezone.utc

# Quotas (sts-iam.md §7; the product FAQ in shared/seed/iam-faq.txt where it differs:
# 250 roles per account, 5,120 characters per managed policy). Stored overrides live
# in the store's settings (``Store.set_quota``).
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


class StoreError(Exception):
    """The store cannot be used: not initialised, already initialised, unreadable, unknown schema."""


class StoreUnavailable(Exception):
    """The database cannot answer now (down, restarting, a lock held too long): the backend
    answers 503 ``ServiceUnavailable``, which SDKs retry. The message names no secret."""


def ts(when: dt.datetime) -> str:
    """Datetime → stored text (UTC, microseconds)."""
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def from_ts(text: str | None) -> dt.datetime | None:
    """Stored text → aware datetime (None stays None)."""
    return None if text is None else dt.datetime.fromisoformat(text)

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
class PolicySource:
    """One policy of an entity, as the policy simulator needs it (``Store.policy_sources``)."""

    name: str             # the inline or managed policy's name (the simulator's SourcePolicyId)
    kind: str             # "user", "group", "role" (inline, by owner), "user-managed", "permission-boundary"
    document: str
    arn: str = ""         # managed policies (and the boundary): the policy's ARN
    owner_kind: str = ""  # inline policies: "user", "group" or "role" ...
    owner_name: str = ""  # ... and the owner's name

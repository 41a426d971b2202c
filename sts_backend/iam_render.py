"""Shared pieces of the IAM operations: the caller, the call context, result shapes.

Results are plain dicts in the IAM model's member order and nesting, rendered by
``wire.query.render_result``: lists become ``<member>`` elements, datetimes the
``…Z`` form, bytes base64. Policy documents go out URL-encoded, as IAM sends them
(botocore's ``json_decode_policies`` handler URL-decodes and parses every
``policyDocumentType`` member).
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

from sts_backend import iam_errors as err
from sts_backend.errors import SenderError, ValidationError
from sts_backend.iam_records import Group, ManagedPolicy, PolicyVersion
from sts_backend.records import MfaDevice, PrincipalKind, Role, User
from wire.clock import WallClock

DEFAULT_MAX_ITEMS = 100


@dataclass(frozen=True, slots=True)
class Caller:
    """Who signed an IAM request.

    ``user_name`` is the IAM user whose identity the request carries — set for a
    user's long-term key and for its GetSessionToken sessions; None for root,
    assumed roles and federated users. Operations whose ``UserName`` is optional
    default to it.
    """

    account_id: str
    arn: str
    kind: PrincipalKind
    user_name: str | None = None


class Ctx(NamedTuple):
    """What every operation gets besides its parameters."""

    caller: Caller
    store: Any          # sts_backend.store.Store (Any: keeps this module import-light)
    clock: WallClock


Handler = Callable[[dict, Ctx], "dict | None"]


def url_doc(document: str) -> str:
    """A policy document as IAM returns it: URL-encoded JSON text."""
    return urllib.parse.quote(document, safe="")


def target_user(params: dict, ctx: Ctx) -> str:
    """``UserName`` if given, else the calling IAM user, else ValidationError."""
    name = params.get("UserName") or ctx.caller.user_name
    if not name:
        raise err.need_user_name()
    return name


def tags_out(tags: list[tuple[str, str]]) -> list[dict]:
    return [{"Key": k, "Value": v} for k, v in tags]


def tags_in(params: dict) -> list[tuple[str, str]]:
    """``Tags`` as (key, value) pairs; duplicate keys (case-insensitive) are InvalidInput."""
    pairs = [(t["Key"], t.get("Value", "")) for t in params.get("Tags") or []]
    keys = [k.casefold() for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise SenderError("InvalidInput", "Duplicate tag keys found. Please note that Tag keys are case insensitive.")
    return pairs


# AttachedPermissionsBoundary.PermissionsBoundaryType: the model's enum says
# "PermissionsBoundaryPolicy", but IAM answers "Policy", as the API reference's own text
# says ("This data type can only have a value of Policy"): awsdocs/iam-user-guide#82 (GetRole
# output), the AWS CLI's create-user example (aws/aws-cli awscli/examples/iam/create-user.rst).
# botocore does not check enums in responses.
BOUNDARY_TYPE = "Policy"


def boundary_out(arn: str) -> dict:
    """An ``AttachedPermissionsBoundary``."""
    return {"PermissionsBoundaryType": BOUNDARY_TYPE, "PermissionsBoundaryArn": arn}


def user_out(user: User, tags: list[tuple[str, str]] = (), boundary: str | None = None) -> dict:
    """A ``User``; the boundary and tags only where IAM shows them (not in ListUsers)."""
    out: dict[str, Any] = {"Path": user.path, "UserName": user.user_name, "UserId": user.user_id,
                           "Arn": user.arn, "CreateDate": user.create_date}
    if boundary:
        out["PermissionsBoundary"] = boundary_out(boundary)
    if tags:
        out["Tags"] = tags_out(tags)
    return out


def group_out(group: Group) -> dict:
    return {"Path": group.path, "GroupName": group.group_name, "GroupId": group.group_id,
            "Arn": group.arn, "CreateDate": group.create_date}


def role_out(role: Role, tags: list[tuple[str, str]] = (), last_used: bool = False,
             boundary: str | None = None) -> dict:
    """A ``Role``; the boundary, tags and last use only where IAM shows them (not in ListRoles)."""
    out: dict[str, Any] = {"Path": role.path, "RoleName": role.role_name, "RoleId": role.role_id,
                           "Arn": role.arn, "CreateDate": role.create_date,
                           "AssumeRolePolicyDocument": url_doc(role.assume_role_policy)}
    if role.description:
        out["Description"] = role.description
    out["MaxSessionDuration"] = role.max_session_duration
    if boundary:
        out["PermissionsBoundary"] = boundary_out(boundary)
    if tags:
        out["Tags"] = tags_out(tags)
    if last_used:
        out["RoleLastUsed"] = {}
    return out


def policy_out(policy: ManagedPolicy) -> dict:
    out: dict[str, Any] = {"PolicyName": policy.policy_name, "PolicyId": policy.policy_id, "Arn": policy.arn,
                           "Path": policy.path, "DefaultVersionId": policy.default_version_id,
                           "AttachmentCount": policy.attachment_count,
                           "PermissionsBoundaryUsageCount": policy.permissions_boundary_usage_count,
                           "IsAttachable": True}
    if policy.description:
        out["Description"] = policy.description
    out["CreateDate"] = policy.create_date
    out["UpdateDate"] = policy.update_date
    return out


def version_out(version: PolicyVersion, with_document: bool = True) -> dict:
    out: dict[str, Any] = {}
    if with_document:
        out["Document"] = url_doc(version.document)
    out.update(VersionId=version.version_id, IsDefaultVersion=version.is_default, CreateDate=version.create_date)
    return out


def mfa_out(device: MfaDevice) -> dict:
    return {"UserName": device.user_name, "SerialNumber": device.serial_number, "EnableDate": device.enable_date}


def _offset(marker: str | None) -> int:
    if marker is None:
        return 0
    if not marker.isdigit():
        raise ValidationError("Invalid Marker.")
    return int(marker)


def page(items: list, params: dict, key: str, render: Callable[[Any], Any] = lambda x: x) -> dict:
    """One page of ``items`` under ``key``, honouring ``Marker``/``MaxItems`` (default 100).

    Markers are opaque to clients; here they are the offset of the next item.
    """
    start = _offset(params.get("Marker"))
    size = params.get("MaxItems") or DEFAULT_MAX_ITEMS
    chunk = items[start:start + size]
    out: dict[str, Any] = {key: [render(item) for item in chunk]}
    truncated = start + size < len(items)
    out["IsTruncated"] = truncated
    if truncated:
        out["Marker"] = str(start + size)
    return out

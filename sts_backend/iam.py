"""The IAM Query API as pure functions over the store.

``handle_iam(action, params, caller, store, clock)`` runs one operation whose
parameters ``sts_backend.validation`` has already checked and typed, and returns
the ``<ActionResult>`` body as a dict for ``wire.query.render_result`` (None for
operations without a result). Errors are ``sts_backend.errors`` exceptions with
IAM's codes and messages (``iam_errors`` cites their sources).

``iam_resource_arn`` names the resource an action is authorised against (the
app evaluates ``iam:ACTION`` on it). Operations live in four modules: this one
(users, access keys, groups, account), ``iam_roles`` (roles, tags),
``iam_policies`` (inline and managed policies), ``iam_mfa`` (virtual MFA) and
``iam_boundaries`` (permissions boundaries), ``iam_oidc`` (OpenID Connect providers).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from sts_backend import iam_boundaries, iam_mfa, iam_oidc, iam_policies, iam_roles, ids
from sts_backend.iam_boundaries import boundary_param
from sts_backend.errors import SenderError
from sts_backend.iam_render import Caller, Ctx, Handler, group_out, page, tags_in, target_user, user_out
from sts_backend.policy_document import policy_size
from sts_backend.records import AccessKey, User
from sts_backend.store_core import DEFAULT_QUOTAS
from wire.clock import WallClock
from wire.query import XmlMap

if TYPE_CHECKING:
    from sts_backend.store import Store

__all__ = ["Caller", "handle_iam", "iam_resource_arn", "iam_request_tags", "iam_resource_tags", "bootstrap_admin",
           "ADMIN_POLICY"]

ADMIN_POLICY = json.dumps({"Version": "2012-10-17",
                           "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})


def handle_iam(action: str, params: dict, caller: Caller, store: Store, clock: WallClock) -> dict | None:
    """Run IAM operation ``action``.

    Args:
        action: the Query ``Action`` (e.g. ``CreateUser``).
        params: validated, typed parameters (``validation.validate``).
        caller: who signed the request.
        store: the backend's ``store.Store``.
        clock: the wall clock for TOTP checks.

    Returns:
        The result body in the IAM model's member names and order, or None.

    Raises:
        SenderError: ``InvalidAction`` for operations this backend does not serve,
            or the operation's IAM error.
    """
    handler = HANDLERS.get(action)
    if handler is None:
        raise SenderError("InvalidAction", f"Could not find operation {action} for version 2010-05-08")
    return handler(params, Ctx(caller, store, clock))


# ---- users ---------------------------------------------------------------------------------

def create_user(p: dict, ctx: Ctx) -> dict:
    """CreateUser, with its permissions boundary if given (both, or neither)."""
    boundary = boundary_param(p)
    with ctx.store.transaction():
        user = ctx.store.create_user(p["UserName"], p.get("Path") or "/", tags_in(p))
        if boundary is not None:
            ctx.store.set_permissions_boundary("user", user.user_name, boundary)
    return {"User": user_out(user, ctx.store.tags_of("user", user.user_name), boundary)}


def get_user(p: dict, ctx: Ctx) -> dict:
    """GetUser; without UserName the caller (root gets its account-level identity)."""
    if not p.get("UserName") and ctx.caller.kind == "root":
        return {"User": {"UserId": ctx.store.account_id(), "Arn": ids.root_arn(ctx.store.account_id()),
                         "CreateDate": ctx.store.account_created()}}
    user = ctx.store.get_user(target_user(p, ctx))
    return {"User": user_out(user, ctx.store.tags_of("user", user.user_name),
                             ctx.store.permissions_boundary("user", user.user_name))}


def list_users(p: dict, ctx: Ctx) -> dict:
    return page(ctx.store.list_users(p.get("PathPrefix") or "/"), p, "Users", user_out)


def delete_user(p: dict, ctx: Ctx) -> None:
    """DeleteUser: DeleteConflict while keys, MFA, policies or groups remain."""
    ctx.store.delete_user(p["UserName"])


# ---- access keys ---------------------------------------------------------------------------

def create_access_key(p: dict, ctx: Ctx) -> dict:
    """CreateAccessKey: the only time the secret is returned."""
    key = ctx.store.create_access_key(target_user(p, ctx))
    return {"AccessKey": {"UserName": key.user_name, "AccessKeyId": key.access_key_id, "Status": key.status,
                          "SecretAccessKey": key.secret_access_key, "CreateDate": key.create_date}}


def update_access_key(p: dict, ctx: Ctx) -> None:
    ctx.store.update_access_key(target_user(p, ctx), p["AccessKeyId"], p["Status"])


def delete_access_key(p: dict, ctx: Ctx) -> None:
    ctx.store.delete_access_key(target_user(p, ctx), p["AccessKeyId"])


def list_access_keys(p: dict, ctx: Ctx) -> dict:
    if not p.get("UserName") and ctx.caller.kind == "root":
        return page([], p, "AccessKeyMetadata")
    keys = ctx.store.access_keys_of(target_user(p, ctx))
    return page(keys, p, "AccessKeyMetadata", lambda k: {"UserName": k.user_name, "AccessKeyId": k.access_key_id,
                                                         "Status": k.status, "CreateDate": k.create_date})


def get_access_key_last_used(p: dict, ctx: Ctx) -> dict:
    """GetAccessKeyLastUsed; ``N/A`` service and region for a key never used."""
    used = ctx.store.key_last_used(p["AccessKeyId"])
    last: dict = {}
    if used.last_used is not None:
        last["LastUsedDate"] = used.last_used
    last["ServiceName"] = used.service or "N/A"
    last["Region"] = used.region or "N/A"
    return {"UserName": used.user_name, "AccessKeyLastUsed": last}


# ---- groups --------------------------------------------------------------------------------

def create_group(p: dict, ctx: Ctx) -> dict:
    return {"Group": group_out(ctx.store.create_group(p["GroupName"], p.get("Path") or "/"))}


def get_group(p: dict, ctx: Ctx) -> dict:
    group = ctx.store.get_group(p["GroupName"])
    result = {"Group": group_out(group)}
    result.update(page(ctx.store.members_of_group(group.group_name), p, "Users", user_out))
    return result


def list_groups(p: dict, ctx: Ctx) -> dict:
    return page(ctx.store.list_groups(p.get("PathPrefix") or "/"), p, "Groups", group_out)


def delete_group(p: dict, ctx: Ctx) -> None:
    ctx.store.delete_group(p["GroupName"])


def add_user_to_group(p: dict, ctx: Ctx) -> None:
    ctx.store.add_user_to_group(p["GroupName"], p["UserName"])


def remove_user_from_group(p: dict, ctx: Ctx) -> None:
    ctx.store.remove_user_from_group(p["GroupName"], p["UserName"])


def list_groups_for_user(p: dict, ctx: Ctx) -> dict:
    return page(ctx.store.groups_of_user(p["UserName"]), p, "Groups", group_out)


# ---- account -------------------------------------------------------------------------------

def create_account_alias(p: dict, ctx: Ctx) -> None:
    ctx.store.create_account_alias(p["AccountAlias"])


def delete_account_alias(p: dict, ctx: Ctx) -> None:
    ctx.store.delete_account_alias(p["AccountAlias"])


def list_account_aliases(p: dict, ctx: Ctx) -> dict:
    return page(ctx.store.account_aliases(), p, "AccountAliases")


# GetAccountSummary quota entries: SummaryMap key -> store quota name (or a fixed value).
_SUMMARY_QUOTAS = {
    "UsersQuota": "UsersPerAccount", "GroupsQuota": "GroupsPerAccount", "RolesQuota": "RolesPerAccount",
    "PoliciesQuota": "PoliciesPerAccount", "PolicySizeQuota": "PolicySize",
    "VersionsPerPolicyQuota": "VersionsPerPolicy", "AccessKeysPerUserQuota": "AccessKeysPerUser",
    "GroupsPerUserQuota": "GroupsPerUser", "AttachedPoliciesPerUserQuota": "PoliciesPerUser",
    "AttachedPoliciesPerGroupQuota": "PoliciesPerGroup", "AttachedPoliciesPerRoleQuota": "PoliciesPerRole",
    "UserPolicySizeQuota": "UserPolicySize", "GroupPolicySizeQuota": "GroupPolicySize",
    "RolePolicySizeQuota": "RolePolicySize", "AssumeRolePolicySizeQuota": "AssumeRolePolicySize",
}
_SUMMARY_FIXED = {
    "PolicyVersionsInUseQuota": 10000, "ServerCertificates": 0, "ServerCertificatesQuota": 20,
    "SigningCertificatesPerUserQuota": 2, "InstanceProfiles": 0, "InstanceProfilesQuota": 1000,
    "GlobalEndpointTokenVersion": 1,
}
assert set(_SUMMARY_QUOTAS.values()) <= set(DEFAULT_QUOTAS)


def get_account_summary(p: dict, ctx: Ctx) -> dict:
    """GetAccountSummary. ``SummaryMap`` is a Query map (``<entry>`` items, as JS v3 expects)."""
    summary = ctx.store.entity_counts()
    summary.update({key: ctx.store.quota(name) for key, name in _SUMMARY_QUOTAS.items()})
    summary.update(_SUMMARY_FIXED)
    return {"SummaryMap": XmlMap(sorted(summary.items()))}


HANDLERS: dict[str, Handler] = {
    "CreateUser": create_user, "GetUser": get_user, "ListUsers": list_users, "DeleteUser": delete_user,
    "CreateAccessKey": create_access_key, "UpdateAccessKey": update_access_key,
    "DeleteAccessKey": delete_access_key, "ListAccessKeys": list_access_keys,
    "GetAccessKeyLastUsed": get_access_key_last_used,
    "CreateGroup": create_group, "GetGroup": get_group, "ListGroups": list_groups, "DeleteGroup": delete_group,
    "AddUserToGroup": add_user_to_group, "RemoveUserFromGroup": remove_user_from_group,
    "ListGroupsForUser": list_groups_for_user,
    "CreateAccountAlias": create_account_alias, "DeleteAccountAlias": delete_account_alias,
    "ListAccountAliases": list_account_aliases, "GetAccountSummary": get_account_summary,
}
for _module in (iam_roles, iam_policies, iam_mfa, iam_boundaries, iam_oidc):
    HANDLERS.update(_module.HANDLERS)


# ---- authorization resource ----------------------------------------------------------------

_USER_ACTIONS = frozenset("""
    CreateUser GetUser DeleteUser CreateAccessKey UpdateAccessKey DeleteAccessKey ListAccessKeys
    ListGroupsForUser PutUserPolicy GetUserPolicy DeleteUserPolicy ListUserPolicies AttachUserPolicy
    DetachUserPolicy ListAttachedUserPolicies TagUser UntagUser ListUserTags EnableMFADevice
    ResyncMFADevice DeactivateMFADevice ListMFADevices PutUserPermissionsBoundary
    DeleteUserPermissionsBoundary""".split())
_GROUP_ACTIONS = frozenset("""
    CreateGroup GetGroup DeleteGroup AddUserToGroup RemoveUserFromGroup PutGroupPolicy GetGroupPolicy
    DeleteGroupPolicy ListGroupPolicies AttachGroupPolicy DetachGroupPolicy ListAttachedGroupPolicies""".split())
_ROLE_ACTIONS = frozenset("""
    CreateRole GetRole DeleteRole UpdateRole UpdateRoleDescription UpdateAssumeRolePolicy PutRolePolicy
    GetRolePolicy DeleteRolePolicy ListRolePolicies AttachRolePolicy DetachRolePolicy
    ListAttachedRolePolicies TagRole UntagRole ListRoleTags PutRolePermissionsBoundary
    DeleteRolePermissionsBoundary""".split())
_POLICY_ACTIONS = frozenset("""
    GetPolicy DeletePolicy CreatePolicyVersion GetPolicyVersion ListPolicyVersions DeletePolicyVersion
    SetDefaultPolicyVersion""".split())


def _entity_path(store, kind: str, name: str, params: dict) -> str:
    if "Path" in params and params["Path"]:
        return params["Path"]
    if store is None:
        return "/"
    lookup = {"user": store.user, "role": store.role}.get(kind)
    if lookup is not None:
        found = lookup(name)
        return found.path if found is not None else "/"
    try:
        return store.get_group(name).path
    except SenderError:
        return "/"


def _user_resource(action: str, p: dict, caller: Caller, account_id: str, store) -> str:
    name = p.get("UserName")
    if not name and action == "DeactivateMFADevice" and store is not None:
        device = store.mfa_device(p.get("SerialNumber", ""))
        name = device.user_name if device is not None else None
    name = name or caller.user_name
    if not name:
        return caller.arn
    return ids.user_arn(account_id, name, _entity_path(store, "user", name, p))


def iam_resource_arn(action: str, params: dict, caller: Caller, account_id: str,
                     store: Store | None = None) -> str:
    """The resource ARN that ``iam:<action>`` is authorised against.

    Users, groups and roles by ARN (with their path when ``store`` is given or the
    request names one), policies by ``PolicyArn``, virtual MFA devices by serial;
    operations without a UserName act on the caller. Account-wide operations
    (List*, GetAccountSummary, aliases) and unknown actions: ``*``.
    """
    p = params
    if action in _USER_ACTIONS:
        return _user_resource(action, p, caller, account_id, store)
    if action in _GROUP_ACTIONS:
        name = p.get("GroupName", "")
        return ids.group_arn(account_id, name, _entity_path(store, "group", name, p))
    if action in _ROLE_ACTIONS:
        name = p.get("RoleName", "")
        return ids.role_arn(account_id, name, _entity_path(store, "role", name, p))
    if action in _POLICY_ACTIONS:
        return p.get("PolicyArn", "*")
    if action == "CreatePolicy":
        return ids.policy_arn(account_id, p.get("PolicyName", ""), p.get("Path"))
    if action == "CreateVirtualMFADevice":
        return ids.mfa_arn(account_id, p.get("VirtualMFADeviceName", ""), p.get("Path"))
    if action == "DeleteVirtualMFADevice":
        return p.get("SerialNumber", "*")
    if "OpenIDConnectProvider" in action:
        return iam_oidc.resource_arn(action, p, account_id)
    if action == "GetAccessKeyLastUsed" and store is not None:
        key = store.access_key(p.get("AccessKeyId", ""))
        user = store.user(key.user_name) if key is not None else None
        return user.arn if user is not None else "*"
    return "*"


def iam_resource_tags(action: str, params: dict, caller: Caller, store: Store) -> list[tuple[str, str]]:
    """The tags of the user or role ``iam:<action>`` acts on (``aws:ResourceTag/*``,
    ``iam:ResourceTag/*``); [] for other resources, or when the entity does not exist yet."""
    if action in _USER_ACTIONS:
        name = params.get("UserName") or caller.user_name
        found = store.user(name) if name else None
        return store.tags_of_id("user", found.user_id) if found is not None else []
    if action in _ROLE_ACTIONS:
        found = store.role(params.get("RoleName", ""))
        return store.tags_of_id("role", found.role_id) if found is not None else []
    return []


def iam_request_tags(params: dict) -> dict[str, object]:
    """``aws:RequestTag/*`` and ``aws:TagKeys`` of a call that passes tags (Create*, Tag*) or tag
    keys (Untag*) [IUG:access_tags]."""
    keys: dict[str, object] = {}
    tags = [(t["Key"], t.get("Value", "")) for t in params.get("Tags") or []]
    if tags:
        keys.update({f"aws:RequestTag/{k}": v for k, v in tags})
        keys["aws:TagKeys"] = [k for k, _ in tags]
    elif params.get("TagKeys"):
        keys["aws:TagKeys"] = list(params["TagKeys"])
    return keys


# ---- bootstrap -----------------------------------------------------------------------------

def bootstrap_admin(store: Store, user_name: str = "admin") -> tuple[User, AccessKey]:
    """Create the first administrator for ``rolecall backend init``.

    A user with an inline ``AdministratorAccess`` policy (Allow ``*`` on ``*``) and
    one access key. Returns (user, key); the key's secret is shown once by the CLI.
    """
    user = store.create_user(user_name)
    store.put_inline_policy("user", user_name, "AdministratorAccess", ADMIN_POLICY, policy_size(ADMIN_POLICY))
    return user, store.create_access_key(user_name)

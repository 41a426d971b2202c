"""IAM operations on roles, and on user and role tags.

A role's trust policy (``AssumeRolePolicyDocument``) is parsed as a TRUST policy
(Principal required, no Resource) and limited to ``AssumeRolePolicySize`` (2,048)
non-whitespace characters — LimitExceeded "Cannot exceed quota for ACLSizePerRole:
2048". Deleting a role revokes its live sessions (the store bumps the revocation
epoch; a role recreated under the same name gets a new id, so old sessions stay dead).
Users and roles a trust policy names are resolved to their unique ids when it is
saved (``_checked_trust``); see ``store_identities.SqlIdentities.trust_as_shown`` for what that changes.
"""

from __future__ import annotations

from sts_backend import iam_errors as err
from sts_backend.iam_boundaries import boundary_param
from sts_backend.iam_render import Ctx, Handler, page, role_out, tags_in, tags_out
from sts_backend.errors import MalformedPolicyDocument
from sts_backend.policy_document import INVALID_PRINCIPAL, PolicyKind, parse_policy, policy_size


def _checked_trust(ctx: Ctx, document: str) -> dict[str, str]:
    """Validate a trust policy; returns the unique id of each user or role of this account it names.

    IAM resolves those principals when the policy is saved and refuses one that does not
    exist [IUG:reference_policies_elements_principal]; keeping the ids is what stops a
    user or role re-created under a deleted one's name from inheriting its trust.
    """
    policy = parse_policy(document, PolicyKind.TRUST)
    limit = ctx.store.quota("AssumeRolePolicySize")
    if policy_size(document) > limit:
        raise err.quota_exceeded("ACLSizePerRole", limit)
    prefix = f"arn:aws:iam::{ctx.caller.account_id}:"
    named = sorted({arn for st in policy.statements if st.principals is not None for arn in st.principals.arns
                    if arn.startswith((prefix + "user/", prefix + "role/"))})
    found = ctx.store.principal_ids(named)
    for arn in named:
        if found[arn] is None:
            raise MalformedPolicyDocument(INVALID_PRINCIPAL.format("AWS", arn))
    return {arn: uid for arn, uid in found.items() if uid is not None}


def create_role(p: dict, ctx: Ctx) -> dict:
    """CreateRole (MaxSessionDuration defaults to 3600), with its permissions boundary if given."""
    principal_ids = _checked_trust(ctx, p["AssumeRolePolicyDocument"])
    tags = tags_in(p)
    boundary = boundary_param(p)
    with ctx.store.transaction():
        role = ctx.store.create_role(p["RoleName"], p["AssumeRolePolicyDocument"], p.get("Path") or "/",
                                     p.get("MaxSessionDuration") or 3600, p.get("Description") or "", tags,
                                     principal_ids)
        if boundary is not None:
            ctx.store.set_permissions_boundary("role", role.role_name, boundary)
    return {"Role": role_out(role, ctx.store.tags_of("role", role.role_name), boundary=boundary)}


def get_role(p: dict, ctx: Ctx) -> dict:
    role = ctx.store.get_role(p["RoleName"])
    return {"Role": role_out(role, ctx.store.tags_of("role", role.role_name), last_used=True,
                             boundary=ctx.store.permissions_boundary("role", role.role_name))}


def list_roles(p: dict, ctx: Ctx) -> dict:
    return page(ctx.store.list_roles(p.get("PathPrefix") or "/"), p, "Roles", role_out)


def update_role(p: dict, ctx: Ctx) -> dict:
    """UpdateRole: Description and/or MaxSessionDuration; an empty result."""
    ctx.store.update_role(p["RoleName"], p.get("Description"), p.get("MaxSessionDuration"))
    return {}


def update_role_description(p: dict, ctx: Ctx) -> dict:
    role = ctx.store.update_role(p["RoleName"], description=p["Description"])
    return {"Role": role_out(role, ctx.store.tags_of("role", role.role_name))}


def update_assume_role_policy(p: dict, ctx: Ctx) -> None:
    principal_ids = _checked_trust(ctx, p["PolicyDocument"])
    ctx.store.update_trust_policy(p["RoleName"], p["PolicyDocument"], principal_ids)


def delete_role(p: dict, ctx: Ctx) -> None:
    ctx.store.delete_role(p["RoleName"])


# ---- tags ----------------------------------------------------------------------------------

def _tag(kind: str, param: str):
    def op(p: dict, ctx: Ctx) -> None:
        ctx.store.tag(kind, p[param], tags_in(p))
    return op


def _untag(kind: str, param: str):
    def op(p: dict, ctx: Ctx) -> None:
        ctx.store.untag(kind, p[param], list(p.get("TagKeys") or []))
    return op


def _list_tags(kind: str, param: str):
    def op(p: dict, ctx: Ctx) -> dict:
        return page(tags_out(ctx.store.tags_of(kind, p[param])), p, "Tags")
    return op


HANDLERS: dict[str, Handler] = {
    "CreateRole": create_role,
    "GetRole": get_role,
    "ListRoles": list_roles,
    "UpdateRole": update_role,
    "UpdateRoleDescription": update_role_description,
    "UpdateAssumeRolePolicy": update_assume_role_policy,
    "DeleteRole": delete_role,
    "TagUser": _tag("user", "UserName"),
    "UntagUser": _untag("user", "UserName"),
    "ListUserTags": _list_tags("user", "UserName"),
    "TagRole": _tag("role", "RoleName"),
    "UntagRole": _untag("role", "RoleName"),
    "ListRoleTags": _list_tags("role", "RoleName"),
}

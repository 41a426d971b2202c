"""IAM operations on permissions boundaries: Put/Delete{User,Role}PermissionsBoundary.

A boundary is a managed policy set on a user or role; it grants nothing and caps
what the entity's identity policies grant [IUG:access_policies_boundaries]. The
store keeps its ARN (``users``/``roles.permissions_boundary``); authorization reads
the policy's default version at each request (``auth.principal_policies``), so a
change applies at once to the user's keys and to live sessions.

``CreateUser``/``CreateRole`` take the same ``PermissionsBoundary`` parameter
(``boundary_param`` checks it; the entity and its boundary are created in one
transaction). Errors (``iam_errors`` cites them): an ARN that is not a managed
policy's is InvalidInput; an unknown policy or entity NoSuchEntity. Removing a
boundary that is not set succeeds (UNVERIFIED; AWS documents no error for it).

``condition_keys`` sets ``iam:PermissionsBoundary`` in the request context of the
actions that carry it [IUG:reference_policies_iam-condition-keys], so an
administrator can be allowed to create users and roles, and manage their
policies, only under a given boundary [IUG:access_policies_boundaries, "Delegating
responsibility"]: the boundary asked for when creating or setting one, else the
target entity's current boundary (absent when it has none, so a ``StringEquals``
on it does not match).
"""

from __future__ import annotations

import re

from sts_backend import iam_errors as err
from sts_backend.iam_render import Ctx, Handler

__all__ = ["HANDLERS", "boundary_param", "condition_keys"]

# arn:PARTITION:iam::ACCOUNT|aws:policy/[PATH/]NAME — what a managed policy's ARN looks like.
_POLICY_ARN = re.compile(r"arn:aws[a-z-]*:iam::(aws|[0-9]{12}):policy/(?:[\x21-\x7e]*/)?[\w+=,.@-]+")


def boundary_param(params: dict) -> str | None:
    """The request's ``PermissionsBoundary`` (None when absent); InvalidInput when it is
    not a managed policy's ARN. Whether the policy exists is the store's check."""
    arn = params.get("PermissionsBoundary")
    if arn is None:
        return None
    if not _POLICY_ARN.fullmatch(arn):
        raise err.invalid_boundary(arn)
    return arn


_KIND_PARAMS = {"user": "UserName", "role": "RoleName"}


def _put(kind: str) -> Handler:
    def op(p: dict, ctx: Ctx) -> None:
        arn = boundary_param(p)
        ctx.store.set_permissions_boundary(kind, p[_KIND_PARAMS[kind]], arn)
    return op


def _delete(kind: str) -> Handler:
    def op(p: dict, ctx: Ctx) -> None:
        ctx.store.delete_permissions_boundary(kind, p[_KIND_PARAMS[kind]])
    return op


# Actions that carry iam:PermissionsBoundary: the Service Authorization Reference's list for
# IAM; the IUG's delegation example uses CreateUser, Attach/DetachUserPolicy, DeleteUserPolicy
# and PutUserPermissionsBoundary with it.
_REQUESTED = {"CreateUser": "user", "PutUserPermissionsBoundary": "user",
              "CreateRole": "role", "PutRolePermissionsBoundary": "role"}
_CURRENT = {f"{verb}{title}{what}": kind for kind, title in (("user", "User"), ("role", "Role"))
            for verb, what in (("Attach", "Policy"), ("Detach", "Policy"), ("Put", "Policy"), ("Delete", "Policy"),
                               ("Delete", "PermissionsBoundary"))}


def condition_keys(action: str, params: dict, store) -> dict[str, str]:
    """``{"iam:PermissionsBoundary": ARN}`` for ``iam:<action>``'s request context, or {}."""
    if action in _REQUESTED:
        arn = params.get("PermissionsBoundary")
    elif action in _CURRENT:
        kind = _CURRENT[action]
        name = params.get(_KIND_PARAMS[kind])
        arn = store.boundary_document(kind, name)[0] if name else None
    else:
        return {}
    return {"iam:PermissionsBoundary": arn} if arn else {}


HANDLERS: dict[str, Handler] = {
    "PutUserPermissionsBoundary": _put("user"),
    "DeleteUserPermissionsBoundary": _delete("user"),
    "PutRolePermissionsBoundary": _put("role"),
    "DeleteRolePermissionsBoundary": _delete("role"),
}

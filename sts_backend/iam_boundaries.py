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
"""

from __future__ import annotations

import re

from sts_backend import iam_errors as err
from sts_backend.iam_render import Ctx, Handler

__all__ = ["HANDLERS", "boundary_param"]

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


HANDLERS: dict[str, Handler] = {
    "PutUserPermissionsBoundary": _put("user"),
    "DeleteUserPermissionsBoundary": _delete("user"),
    "PutRolePermissionsBoundary": _put("role"),
    "DeleteRolePermissionsBoundary": _delete("role"),
}

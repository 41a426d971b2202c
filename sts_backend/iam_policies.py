"""IAM operations on policies: inline (user/group/role), managed, attachments.

Documents are checked with ``policy_document.parse_policy`` (IDENTITY kind;
managed policies must say ``"Version": "2012-10-17"``) before anything is stored.
Sizes count characters other than whitespace (``policy_size``):

- inline policies: the aggregate per entity — user 2,048, group 5,120, role 10,240
  (LimitExceeded "Maximum policy size of N bytes exceeded for KIND NAME");
- managed policies: 5,120 per document, the figure of the product's FAQ
  (``shared/seed/iam-faq.txt``) that this work was specified from; AWS's current
  quota is 6,144 (sts-iam.md §7). Adjustable with ``Store.set_quota("PolicySize", …)``.
"""

from __future__ import annotations

from sts_backend import iam_errors as err
from sts_backend.iam_render import Ctx, Handler, page, policy_out, url_doc, version_out
from sts_backend.policy_document import PolicyKind, parse_policy, policy_size

_KIND_PARAMS = {"user": "UserName", "group": "GroupName", "role": "RoleName"}
_KIND_TITLES = {"user": "User", "group": "Group", "role": "Role"}


def _checked_identity(document: str, *, managed: bool = False) -> int:
    """Parse ``document`` as a permission policy; its counted size."""
    parse_policy(document, PolicyKind.IDENTITY, require_current_version=managed)
    return policy_size(document)


# ---- inline policies ---------------------------------------------------------------------

def _put_inline(kind: str):
    def op(p: dict, ctx: Ctx) -> None:
        size = _checked_identity(p["PolicyDocument"])
        ctx.store.put_inline_policy(kind, p[_KIND_PARAMS[kind]], p["PolicyName"], p["PolicyDocument"], size)
    return op


def _get_inline(kind: str):
    def op(p: dict, ctx: Ctx) -> dict:
        stored, document = ctx.store.get_inline_policy(kind, p[_KIND_PARAMS[kind]], p["PolicyName"])
        return {_KIND_PARAMS[kind]: stored, "PolicyName": p["PolicyName"], "PolicyDocument": url_doc(document)}
    return op


def _delete_inline(kind: str):
    def op(p: dict, ctx: Ctx) -> None:
        ctx.store.delete_inline_policy(kind, p[_KIND_PARAMS[kind]], p["PolicyName"])
    return op


def _list_inline(kind: str):
    def op(p: dict, ctx: Ctx) -> dict:
        return page(ctx.store.inline_policy_names(kind, p[_KIND_PARAMS[kind]]), p, "PolicyNames")
    return op


# ---- managed policies --------------------------------------------------------------------

def _managed_size_ok(ctx: Ctx, size: int) -> None:
    limit = ctx.store.quota("PolicySize")
    if size > limit:
        raise err.quota_exceeded("PolicySize", limit)


def create_policy(p: dict, ctx: Ctx) -> dict:
    """CreatePolicy: a customer managed policy, version v1 default."""
    _managed_size_ok(ctx, _checked_identity(p["PolicyDocument"], managed=True))
    policy = ctx.store.create_policy(p["PolicyName"], p["PolicyDocument"], p.get("Path") or "/",
                                     p.get("Description") or "")
    return {"Policy": policy_out(policy)}


def get_policy(p: dict, ctx: Ctx) -> dict:
    return {"Policy": policy_out(ctx.store.get_policy(p["PolicyArn"]))}


def delete_policy(p: dict, ctx: Ctx) -> None:
    ctx.store.delete_policy(p["PolicyArn"])


def list_policies(p: dict, ctx: Ctx) -> dict:
    """ListPolicies: Scope AWS lists nothing (no AWS managed policies here).

    ``PolicyUsageFilter``: ``PermissionsBoundary`` keeps the policies set as someone's
    boundary, ``PermissionsPolicy`` those attached as permissions policies (the model's
    wording; how AWS combines it with ``OnlyAttached`` is UNVERIFIED: both apply here).
    """
    scope = p.get("Scope") or "All"
    policies = [] if scope == "AWS" else ctx.store.list_policies(p.get("PathPrefix") or "/",
                                                                 bool(p.get("OnlyAttached")),
                                                                 p.get("PolicyUsageFilter"))
    return page(policies, p, "Policies", policy_out)


def create_policy_version(p: dict, ctx: Ctx) -> dict:
    _managed_size_ok(ctx, _checked_identity(p["PolicyDocument"], managed=True))
    version = ctx.store.create_policy_version(p["PolicyArn"], p["PolicyDocument"], bool(p.get("SetAsDefault")))
    return {"PolicyVersion": version_out(version)}


def get_policy_version(p: dict, ctx: Ctx) -> dict:
    return {"PolicyVersion": version_out(ctx.store.get_policy_version(p["PolicyArn"], p["VersionId"]))}


def list_policy_versions(p: dict, ctx: Ctx) -> dict:
    versions = ctx.store.policy_versions(p["PolicyArn"])
    return page(versions, p, "Versions", lambda v: version_out(v, with_document=False))


def delete_policy_version(p: dict, ctx: Ctx) -> None:
    ctx.store.delete_policy_version(p["PolicyArn"], p["VersionId"])


def set_default_policy_version(p: dict, ctx: Ctx) -> None:
    ctx.store.set_default_policy_version(p["PolicyArn"], p["VersionId"])


# ---- attachments -------------------------------------------------------------------------

def _attach(kind: str):
    def op(p: dict, ctx: Ctx) -> None:
        ctx.store.attach_policy(kind, p[_KIND_PARAMS[kind]], p["PolicyArn"])
    return op


def _detach(kind: str):
    def op(p: dict, ctx: Ctx) -> None:
        ctx.store.detach_policy(kind, p[_KIND_PARAMS[kind]], p["PolicyArn"])
    return op


def _list_attached(kind: str):
    def op(p: dict, ctx: Ctx) -> dict:
        attached = ctx.store.attached_policies(kind, p[_KIND_PARAMS[kind]], p.get("PathPrefix") or "/")
        return page(attached, p, "AttachedPolicies",
                    lambda a: {"PolicyName": a.policy_name, "PolicyArn": a.policy_arn})
    return op


HANDLERS: dict[str, Handler] = {
    "CreatePolicy": create_policy,
    "GetPolicy": get_policy,
    "DeletePolicy": delete_policy,
    "ListPolicies": list_policies,
    "CreatePolicyVersion": create_policy_version,
    "GetPolicyVersion": get_policy_version,
    "ListPolicyVersions": list_policy_versions,
    "DeletePolicyVersion": delete_policy_version,
    "SetDefaultPolicyVersion": set_default_policy_version,
}
for _kind, _title in _KIND_TITLES.items():
    HANDLERS.update({
        f"Put{_title}Policy": _put_inline(_kind),
        f"Get{_title}Policy": _get_inline(_kind),
        f"Delete{_title}Policy": _delete_inline(_kind),
        f"List{_title}Policies": _list_inline(_kind),
        f"Attach{_title}Policy": _attach(_kind),
        f"Detach{_title}Policy": _detach(_kind),
        f"ListAttached{_title}Policies": _list_attached(_kind),
    })

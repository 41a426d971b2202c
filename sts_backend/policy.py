"""Policy evaluation: a ``RequestContext`` and compiled policies in, a ``Decision`` out (no I/O).

Theory of operation
-------------------
``sts_backend.policy_document`` parses and compiles documents; what runs per
request is wildcard matching and policy variables (``sts_backend.policy_match``),
condition evaluation (``sts_backend.policy_conditions``), and, here, the request
context and AWS's decision logic [IUG:reference_policies_evaluation-logic;
reference/sts-iam.md §10]:

1. An explicit Deny in any policy that applies (identity, session, permissions
   boundary, resource) decides: denied.
2. Otherwise something must Allow. Identity policies allow; when session policies
   were passed, one of them must allow too (intersection); so must the permissions
   boundary when there is one. A resource policy in the same account allows on its
   own when it names the caller's exact ARN or "*"; naming the role of a role session
   it is limited by session policies and the boundary; naming the account it only
   delegates (the identity policies must allow). Across accounts both sides must allow.
3. Nothing allowed: implicitly denied ("no allow").

Trust policies are evaluated by ``evaluate_trust``: the role's trust policy is the
resource policy of sts:AssumeRole. Whether the caller's identity policy must allow
as well (AWS: yes when the trust names the account or "*", or across accounts) is
reported in ``Decision.needs_identity_allow``; the STS action decides what to do
with it. GetCallerIdentity being always allowed is the caller's rule, not ours.

Everything expensive (regex compilation, value parsing) happened at parse time;
here a statement costs a set lookup or one ``fullmatch`` per element, and only
statements whose Action lets the request's action in are tried at all
(``Policy.for_action``, worked out once per policy and action).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from sts_backend.policy_match import Keys

if TYPE_CHECKING:
    from sts_backend.policy_document import Policy, PrincipalSet, Statement

__all__ = [
    "ALLOWED", "EXPLICIT_DENY", "NO_ALLOW", "Decision", "PrincipalType", "RequestContext",
    "access_denied_message", "build_request_context", "evaluate", "evaluate_trust", "statement_applies",
]


# --- the request --------------------------------------------------------------------

class PrincipalType:
    """``aws:PrincipalType`` values [IUG:reference_policies_condition-keys], plus the
    non-AWS callers a trust policy can name (``Service``, ``Federated``)."""

    ACCOUNT = "Account"            # the root user
    USER = "User"
    ASSUMED_ROLE = "AssumedRole"
    FEDERATED_USER = "FederatedUser"
    ANONYMOUS = "Anonymous"
    SERVICE = "Service"            # principal_arn is the service name, ec2.amazonaws.com
    WEB_IDENTITY = "WebIdentity"   # principal_arn is the identity provider (ARN or name)
    SAML = "SAML"                  # principal_arn is the SAML provider ARN


@dataclass(frozen=True, slots=True)
class RequestContext:
    """One authorization question: may this principal do this action on this resource?

    ``keys`` holds the condition keys. Names are case-insensitive (stored lower-case),
    values are tuples of strings (one for most keys). A key with no entry is absent,
    which is not the same as "false": ``aws:MultiFactorAuthPresent`` is absent for
    long-term access keys. Build it with ``build_request_context``.
    """

    action: str                 # "sts:AssumeRole"
    resource: str               # the resource ARN
    principal_arn: str          # as GetCallerIdentity shows it (the session ARN for roles)
    principal_account: str
    principal_type: str = PrincipalType.USER
    keys: Keys = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        keys = {}
        for name, value in self.keys.items():
            values = (value,) if type(value) is str else _key_values(value)
            if values:
                keys[name.lower()] = values
        object.__setattr__(self, "keys", MappingProxyType(keys))

    def get(self, key: str) -> tuple[str, ...]:
        """The values of a condition key; () when absent."""
        return self.keys.get(key.lower(), ())


def _key_values(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, bool):
        return ("true" if value else "false",)
    if isinstance(value, (str, int, float)):
        return (str(value),)
    return tuple(s for v in value for s in _key_values(v))


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _describe_arn(arn: str) -> tuple[str, str]:
    """(account, principal type) read from a principal ARN; ("", "") for other names."""
    parts = arn.split(":", 5)
    if len(parts) < 6 or parts[0] != "arn":
        return "", ""
    account, rest = parts[4], parts[5]
    if parts[2] == "iam" and rest == "root":
        return account, PrincipalType.ACCOUNT
    kinds = {"user/": PrincipalType.USER, "assumed-role/": PrincipalType.ASSUMED_ROLE,
             "federated-user/": PrincipalType.FEDERATED_USER}
    for prefix, kind in kinds.items():
        if rest.startswith(prefix):
            return account, kind
    return account, ""


def build_request_context(
    action: str, resource: str, principal_arn: str, *,
    principal_account: str | None = None, principal_type: str | None = None,
    role_arn: str | None = None, user_id: str | None = None, now: dt.datetime | None = None,
    mfa_present: bool | None = None, mfa_age_seconds: int | None = None,
    token_issued_at: dt.datetime | None = None, external_id: str | None = None,
    source_identity: str | None = None, requested_region: str | None = None,
    principal_tags: Mapping[str, str] | None = None, extra: Mapping[str, Any] | None = None,
) -> RequestContext:
    """A ``RequestContext`` with the global condition keys AWS would set.

    Args:
        action, resource, principal_arn: what is asked, on what, by whom.
        principal_account, principal_type: read from ``principal_arn`` when omitted.
        role_arn: for a role session, the role's ARN (with its path); it becomes
            ``aws:PrincipalArn``, which AWS sets to the role, not the session.
        user_id: ``aws:userid`` (``AIDA...`` or ``AROA...:session``).
        now: sets ``aws:CurrentTime`` and ``aws:EpochTime`` (nothing reads a clock here).
        mfa_present: None for long-term keys (AWS leaves ``aws:MultiFactorAuthPresent``
            out), False for temporary credentials minted without MFA, True with MFA.
        mfa_age_seconds: ``aws:MultiFactorAuthAge``, only with ``mfa_present=True``.
        token_issued_at: ``aws:TokenIssueTime`` (temporary credentials only).
        external_id, source_identity, requested_region: ``sts:ExternalId``,
            ``aws:SourceIdentity``, ``aws:RequestedRegion``.
        principal_tags: become ``aws:PrincipalTag/<key>``.
        extra: any other keys (``aws:SourceIp``, ``aws:SecureTransport``...); they win.

    Returns:
        The frozen context.
    """
    account, kind = _describe_arn(principal_arn)
    account = principal_account if principal_account is not None else account
    kind = principal_type or kind or PrincipalType.ANONYMOUS
    keys: dict[str, Any] = {"aws:PrincipalType": kind, "aws:PrincipalAccount": account or None,
                            "aws:userid": user_id, "sts:ExternalId": external_id,
                            "aws:SourceIdentity": source_identity,
                            "aws:RequestedRegion": requested_region}
    if kind in (PrincipalType.USER, PrincipalType.ACCOUNT, PrincipalType.ASSUMED_ROLE,
                PrincipalType.FEDERATED_USER):
        keys["aws:PrincipalArn"] = role_arn or _session_role_arn(principal_arn) or principal_arn
    if kind == PrincipalType.USER:
        keys["aws:username"] = principal_arn.rsplit("/", 1)[-1]
    if now is not None:
        keys["aws:CurrentTime"] = _iso(now)
        keys["aws:EpochTime"] = str(int(now.timestamp()))
    if mfa_present is not None:
        keys["aws:MultiFactorAuthPresent"] = mfa_present
        if mfa_present and mfa_age_seconds is not None:
            keys["aws:MultiFactorAuthAge"] = int(mfa_age_seconds)
    if token_issued_at is not None:
        keys["aws:TokenIssueTime"] = _iso(token_issued_at)
    for tag, value in (principal_tags or {}).items():
        keys[f"aws:PrincipalTag/{tag}"] = value
    keys.update(extra or {})
    return RequestContext(action, resource, principal_arn, account, kind, keys)


def _session_role_arn(arn: str) -> str | None:
    """arn:aws:iam::A:role/R from arn:aws:sts::A:assumed-role/R/S (the path is unknown)."""
    parts = arn.split(":", 5)
    if len(parts) == 6 and parts[5].startswith("assumed-role/"):
        role = parts[5].split("/")[1]
        return f"arn:{parts[1]}:iam::{parts[4]}:role/{role}"
    return None


# --- decisions ------------------------------------------------------------------------

ALLOWED = "allowed"
EXPLICIT_DENY = "explicit deny"
NO_ALLOW = "no allow"


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer, with what decided it (for the audit log)."""

    allowed: bool
    reason: str                      # ALLOWED, EXPLICIT_DENY or NO_ALLOW
    sid: str | None = None           # the deciding statement: the Deny, or the Allow that granted
    source: str | None = None        # "identity", "session", "boundary", "resource", "trust";
    #                                  for NO_ALLOW, the layer that had no Allow
    needs_identity_allow: bool = False   # trust only: AWS also wants the caller's identity Allow
    via_role_arn: bool = False           # trust only: granted to the caller's role ARN (not the session's),
    #                                      which a session policy or boundary still limits


def access_denied_message(principal_arn: str, action: str, resource_arn: str) -> str:
    """The AccessDenied text, in the form STS sends for AssumeRole.

    "User: arn:... is not authorized to perform: sts:AssumeRole on resource: arn:..."
    (aws-vault#1252; still without a suffix in 2023-24: karpenter-provider-aws#4680,
    configure-aws-credentials#1219). Other services append "because no identity-based
    policy allows the X action" (aws-pdk#104) or "with an explicit deny in an
    identity-based policy" (terraform-aws-eks#2517); we do not, so that one form is
    used everywhere and a denial never discloses which policy refused.
    """
    return f"User: {principal_arn} is not authorized to perform: {action} on resource: {resource_arn}"


# How a statement's Principal names the caller; it decides which limits a resource
# policy's grant still has [IUG:reference_policies_evaluation-logic §Determining whether
# a request is allowed or denied within an account; reference_policies_elements_principal]:
#   _ACCOUNT  the account: "delegates authority to the account", so the caller's own
#             identity policies must allow too (§AWS account principals);
#   _ROLE     the role ARN of a role session: limited by session policies and the
#             boundary (§IAM role principals);
#   _EVERYONE "*": not limited by session policies or boundaries (§IAM role principals,
#             on aws:PrincipalArn with a wildcard Principal);
#   _EXACT    the caller's own ARN (user, role session, federated user), a service or
#             an identity provider: not limited by any implicit deny.
_NONE, _ACCOUNT, _ROLE, _EVERYONE, _EXACT = range(5)
# Which of several matching Allows counts: for permissions, the least limited; for a
# trust policy, one that needs no identity Allow (exact or role) before "*" or the account.
_EVALUATE_RANK = (0, 1, 2, 3, 3)
_TRUST_RANK = (0, 1, 2, 1, 3)
# Callers that are not IAM principals: services and identity providers' users.
_NOT_AWS_PRINCIPALS = frozenset({PrincipalType.SERVICE, PrincipalType.WEB_IDENTITY, PrincipalType.SAML})


def _principal_strength(ps: PrincipalSet, req: RequestContext) -> int:
    kind = req.principal_type
    if kind == PrincipalType.SERVICE:
        named = req.principal_arn in ps.services
    elif kind in (PrincipalType.WEB_IDENTITY, PrincipalType.SAML):
        named = req.principal_arn in ps.federated
    else:
        named = req.principal_arn in ps.arns
    if named:
        return _EXACT
    if ps.everyone:
        return _EVERYONE
    if kind in _NOT_AWS_PRINCIPALS:
        return _NONE
    if any(arn in ps.arns for arn in req.get("aws:PrincipalArn")):
        return _ROLE
    return _ACCOUNT if req.principal_account in ps.accounts else _NONE


def _exempt(ps: PrincipalSet, req: RequestContext) -> bool:
    """A Deny's NotPrincipal spares the caller only when it names every identity the
    caller acts as: the account, and the role of a role session, as well as the
    caller's own ARN; otherwise "the policy might deny access to the entire account"
    [IUG:reference_policies_elements_notprincipal §NotPrincipal With Deny]."""
    if ps.everyone:
        return True
    kind = req.principal_type
    if kind == PrincipalType.SERVICE:
        return req.principal_arn in ps.services
    if kind in (PrincipalType.WEB_IDENTITY, PrincipalType.SAML):
        return req.principal_arn in ps.federated
    if req.principal_account not in ps.accounts:
        return False
    if kind == PrincipalType.ACCOUNT:
        return True
    if kind == PrincipalType.ASSUMED_ROLE and not all(a in ps.arns for a in req.get("aws:PrincipalArn")):
        return False
    return req.principal_arn in ps.arns


def _applies(st: Statement, req: RequestContext, action: str | None = None, *, bounded: bool = False) -> int:
    """How strongly the statement applies to the request (_NONE: not at all).

    ``action`` (lower-case): check the Action element too; None when the statement
    came from ``Policy.for_action``, which already did. ``bounded``: the caller has a
    permissions boundary, and then a Deny with NotPrincipal "will always deny" it,
    whatever NotPrincipal names [IUG:access_policies_boundaries]."""
    keys = req.keys
    if action is not None and st.actions.matches(action, keys) is st.not_action:
        return _NONE
    if st.resources is not None and st.resources.matches(req.resource, keys) is st.not_resource:
        return _NONE
    strength = _EXACT
    if st.principals is not None:
        if not st.not_principal:
            strength = _principal_strength(st.principals, req)
        elif st.allow:   # allows everyone but those named [IUG:..._notprincipal §NotPrincipal With Allow]
            strength = _NONE if _principal_strength(st.principals, req) else _EVERYONE
        elif bounded or not _exempt(st.principals, req):
            strength = _EXACT
        else:
            strength = _NONE
        if not strength:
            return _NONE
    for condition in st.conditions:
        if not condition.holds(keys):
            return _NONE
    return strength


def _best_allow(policies: Iterable[Policy], req: RequestContext, action: str,
                rank: Sequence[int] = _EVALUATE_RANK) -> tuple[Statement | None, int]:
    best, strength = None, _NONE
    for policy in policies:
        for st in policy.for_action(action)[1]:
            found = _applies(st, req)
            if rank[found] > rank[strength]:
                best, strength = st, found
                if rank[found] == rank[_EXACT]:
                    return best, strength
    return best, strength


def evaluate(
    request: RequestContext, identity_policies: Sequence[Policy], *,
    session_policies: Sequence[Policy] = (), resource_policy: Policy | None = None,
    permissions_boundary: Policy | None = None,
) -> Decision:
    """AWS's allow/deny decision for one request (see the module docstring).

    Args:
        request: the question.
        identity_policies: the principal's permission policies (inline and attached;
            for a role session, the role's).
        session_policies: policies passed when the session was made; when any are
            given the result is their intersection with the identity policies.
        resource_policy: the resource's own policy, if it has one.
        permissions_boundary: the principal's boundary, if set.

    Returns:
        A ``Decision``; ``reason`` is "explicit deny", "no allow" or "allowed".
    """
    action = request.action.lower()
    boundary = (permissions_boundary,) if permissions_boundary is not None else ()
    resource = (resource_policy,) if resource_policy is not None else ()
    layers = (("identity", identity_policies), ("session", session_policies),
              ("boundary", boundary), ("resource", resource))
    bounded = permissions_boundary is not None
    for source, policies in layers:
        for policy in policies:
            for st in policy.for_action(action)[0]:
                if _applies(st, request, bounded=bounded):
                    return Decision(False, EXPLICIT_DENY, st.sid, source)
    granted, _ = _best_allow(identity_policies, request, action)
    limit = None
    if session_policies and _best_allow(session_policies, request, action)[0] is None:
        limit = "session"
    elif boundary and _best_allow(boundary, request, action)[0] is None:
        limit = "boundary"
    by_resource, strength = _best_allow(resource, request, action)
    parts = request.resource.split(":", 5)
    cross_account = len(parts) == 6 and parts[4] not in ("", request.principal_account)
    if cross_account:
        if granted is not None and limit is None and by_resource is not None:
            return Decision(True, ALLOWED, granted.sid, "identity")
        return Decision(False, NO_ALLOW, None, limit or ("identity" if granted is None else "resource"))
    if granted is not None and limit is None:
        return Decision(True, ALLOWED, granted.sid, "identity")
    if strength in (_EXACT, _EVERYONE) or (strength == _ROLE and limit is None):
        return Decision(True, ALLOWED, by_resource.sid, "resource")
    return Decision(False, NO_ALLOW, None, limit or "identity")


def evaluate_trust(request: RequestContext, trust_policy: Policy) -> Decision:
    """May the caller assume the role whose trust policy this is?

    ``request.action`` is "sts:AssumeRole" (or ...WithWebIdentity, ...WithSAML,
    "sts:TagSession", "sts:SetSourceIdentity"); ``request.resource`` the role ARN.

    Returns:
        A ``Decision`` with source "trust". ``needs_identity_allow`` is True when
        the grant came through the account or "*", or the caller is in another
        account: AWS then also requires the caller's identity policies to allow.
        Never for a service or an identity provider's user, which have none.
        ``via_role_arn`` is True when it came through the ARN of the role whose
        session calls: an implicit deny of the session's session policies or
        permissions boundary still refuses it, unlike a grant naming the session
        or a user itself [IUG:access_policies_boundaries, reference_policies_evaluation-logic].
    """
    action = request.action.lower()
    for st in trust_policy.for_action(action)[0]:
        if _applies(st, request):
            return Decision(False, EXPLICIT_DENY, st.sid, "trust")
    granted, strength = _best_allow((trust_policy,), request, action, _TRUST_RANK)
    if granted is None:
        return Decision(False, NO_ALLOW, None, "trust")
    if request.principal_type in _NOT_AWS_PRINCIPALS:
        return Decision(True, ALLOWED, granted.sid, "trust")   # no identity policies to consult
    parts = request.resource.split(":", 5)
    other_account = len(parts) == 6 and parts[4] not in ("", request.principal_account)
    return Decision(True, ALLOWED, granted.sid, "trust",
                    needs_identity_allow=strength in (_ACCOUNT, _EVERYONE) or other_account,
                    via_role_arn=strength == _ROLE)


def statement_applies(statement: Statement, request: RequestContext) -> bool:
    """Whether one statement applies to the request: its Action, Resource, Principal and
    Condition all match (``evaluate``'s test, for ``sts_backend.policy_explain``)."""
    return bool(_applies(statement, request, request.action.lower()))

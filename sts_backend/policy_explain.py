"""Why a request is allowed or denied: ``policy.evaluate``'s decision with the statements behind it.

The IAM policy simulator (``sts_backend.simulator``) reports which statements
decided, whether a permissions boundary allowed, and, across accounts, each
side's verdict. ``explain`` gets the decision from ``evaluate`` itself, so the two
never disagree, then tests every statement with ``policy.statement_applies``
(the same test ``evaluate`` uses). It is for the simulator, not the request path:
``evaluate`` stops at the first statement that settles the question, this looks
at them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping, Sequence

from sts_backend.policy import (
    ALLOWED, EXPLICIT_DENY, NO_ALLOW, Decision, RequestContext, evaluate, statement_applies,
)
from sts_backend.policy_document import Policy

__all__ = ["Explanation", "explain"]


@dataclass(frozen=True, slots=True)
class Explanation:
    """``evaluate``'s decision with the statements behind it, for the policy simulator.

    ``matched`` names statements as (layer, policy index, statement index) — layer
    "identity", "session", "boundary" or "resource", the indexes into the sequence
    given for that layer and into ``Policy.statements``: every Deny that applies when
    the decision is an explicit deny, every Allow that applies when it is allowed,
    nothing for an implicit deny. ``boundary_allows`` is None without a boundary.
    ``layers`` holds, for "identity" and "resource", that layer's own verdict
    (ALLOWED, EXPLICIT_DENY or NO_ALLOW; identity counts session and boundary
    limits), which the simulator reports for cross-account requests.
    """

    decision: Decision
    matched: tuple[tuple[str, int, int], ...]
    boundary_allows: bool | None
    layers: Mapping[str, str]
    cross_account: bool


def _applying(layer: str, policies: Sequence[Policy], req: RequestContext,
              allow: bool) -> list[tuple[str, int, int]]:
    return [(layer, p, s) for p, policy in enumerate(policies) for s, st in enumerate(policy.statements)
            if st.allow is allow and statement_applies(st, req)]


def _verdict(denied: bool, allowed: bool) -> str:
    return EXPLICIT_DENY if denied else ALLOWED if allowed else NO_ALLOW


def _owner_decision(decision: Decision, identity_allows: bool, resource_allows: bool) -> Decision:
    """The cross-account rule for a resource whose owner is known only from outside its ARN."""
    if decision.reason == EXPLICIT_DENY:
        return decision
    if identity_allows and resource_allows:
        return Decision(True, ALLOWED, None, "identity")
    return Decision(False, NO_ALLOW, None, "resource" if identity_allows else "identity")


def explain(
    request: RequestContext, identity_policies: Sequence[Policy], *,
    session_policies: Sequence[Policy] = (), resource_policy: Policy | None = None,
    permissions_boundary: Policy | None = None, resource_account: str | None = None,
) -> Explanation:
    """``evaluate`` and the statements that decided it (see ``Explanation``).

    Not for the request path: it looks at every statement, where ``evaluate``
    stops at the first that settles the question.

    Args:
        request, identity_policies, session_policies, resource_policy,
        permissions_boundary: as for ``evaluate``.
        resource_account: the owner of a resource whose ARN names no account
            (an S3 bucket); when it is not the caller's, the request is treated as
            cross-account: identity and resource policy must both allow.

    Returns:
        The ``Explanation``; its ``decision`` is ``evaluate``'s, except for the
        ``resource_account`` rule.
    """
    decision = evaluate(request, identity_policies, session_policies=session_policies,
                        resource_policy=resource_policy, permissions_boundary=permissions_boundary)
    layers = {"identity": identity_policies, "session": session_policies,
              "boundary": (permissions_boundary,) if permissions_boundary is not None else (),
              "resource": (resource_policy,) if resource_policy is not None else ()}
    denies = {name: _applying(name, policies, request, False) for name, policies in layers.items()}
    allows = {name: _applying(name, policies, request, True) for name, policies in layers.items()}
    limited = any(layers[n] and not allows[n] for n in ("session", "boundary"))
    identity_allows = bool(allows["identity"]) and not limited
    parts = request.resource.split(":", 5)
    in_arn = parts[4] if len(parts) == 6 else ""
    cross = (in_arn or resource_account or "") not in ("", request.principal_account)
    if cross and not in_arn:
        decision = _owner_decision(decision, identity_allows, bool(allows["resource"]))
    chosen = denies if decision.reason == EXPLICIT_DENY else allows if decision.allowed else {}
    matched = tuple(m for name in layers for m in chosen.get(name, ()))
    verdicts = {"identity": _verdict(any(denies[n] for n in ("identity", "session", "boundary")), identity_allows),
                "resource": _verdict(bool(denies["resource"]), bool(allows["resource"]))}
    boundary_allows = None if not layers["boundary"] else bool(allows["boundary"]) and not denies["boundary"]
    return Explanation(decision, matched, boundary_allows, MappingProxyType(verdicts), cross)

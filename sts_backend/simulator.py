"""The IAM policy simulator's core: policies, caller, actions and resources in, results out (no I/O).

Theory of operation
-------------------
``simulate(Simulation)`` asks ``policy_explain.explain`` one question per action and
resource and shapes the answers as IAM's ``EvaluationResult`` list (member order
from the model, for ``wire.query.render_result``) [IAM API: SimulatePrincipalPolicy,
SimulateCustomPolicy, EvaluationResult, ResourceSpecificResult]:

- one ``EvaluationResult`` per action, in the order asked. Its ``EvalResourceName``
  is the one resource asked about (as in a recorded 2026 AWS answer), else ``*``:
  the current model documents the ARN template of the action's resource type "or
  * if no ARN format is defined", and this backend has no table of ARN formats.
- with ``ResourceArns``, one ``ResourceSpecificResult`` per resource (its
  ``MissingContextValues`` left out when empty, as in that answer), and the top
  level aggregates them: the most restrictive decision (explicitDeny, then
  implicitDeny, then allowed), the union of the statements behind it, the union
  of missing context values. ``EvalDecisionDetails`` is an empty map for a
  same-account simulation with resources and is left out without them; across
  accounts it maps "IAM Policy" and "Resource Policy" (key names UNVERIFIED) to
  each side's decision.
- ``MatchedStatements``: the statements of identity and resource policies that
  decided (a boundary's never appear: its effect is ``PermissionsBoundaryDecisionDetail``,
  sent whenever a boundary took part). Each names its policy (``SourcePolicyId``:
  the inline or managed policy's name, ``PolicyInputList.N``, ``ResourcePolicy``;
  ``SourcePolicyType``: ``IAM Policy`` or ``Resource Policy``, the values AWS sends,
  though outside the model's enum) and its place in the text
  (``sts_backend.policy_positions``).
- ``MissingContextValues``: the keys (``sts_backend.policy_keys``) of every
  statement about the action and resource (a Resource holding policy variables
  counts), in identity, boundary and resource policies, that the
  ``ContextEntries`` did not supply. Only the given entries are context:
  nothing (not even ``aws:CurrentTime``) is filled in, so a simulation is a
  function of its inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from sts_backend.policy import ALLOWED, EXPLICIT_DENY, RequestContext
from sts_backend.policy_explain import Explanation, explain
from sts_backend.policy_document import Policy, PolicyKind, parse_policy
from sts_backend.policy_keys import statement_context_keys, unique_keys
from sts_backend.policy_positions import Span, statement_spans
from wire.query import XmlMap

if TYPE_CHECKING:
    from sts_backend.policy_document import Statement

__all__ = ["PolicyInput", "Simulation", "action_work", "policy_input", "simulate"]

_DECISIONS = {ALLOWED: "allowed", EXPLICIT_DENY: "explicitDeny"}
_STRICTNESS = {"explicitDeny": 2, "implicitDeny": 1, "allowed": 0}
_DETAIL_NAMES = {"identity": "IAM Policy", "resource": "Resource Policy"}
# What IAM sends as SourcePolicyType, whatever kind of identity policy it was (the AWS CLI's
# simulate-principal-policy example; answers recorded in public code, 2019-2026). The model's
# enum (user, group, role, aws-managed, user-managed, resource, none) is not what the wire carries.
_SOURCE_TYPES = {"resource": "Resource Policy"}


@dataclass(frozen=True, slots=True)
class PolicyInput:
    """One document in a simulation: where it came from, its text's statements, compiled."""

    source_id: str
    source_type: str
    policy: Policy
    spans: tuple[Span, ...]
    keys: tuple[tuple[str, ...], ...]


def policy_input(source_id: str, source_type: str, text: str,
                 kind: PolicyKind = PolicyKind.IDENTITY) -> PolicyInput:
    """Parse ``text`` (MalformedPolicyDocument when it is not a valid policy of ``kind``)."""
    policy = parse_policy(text, kind)
    return PolicyInput(source_id, source_type, policy, statement_spans(text), statement_context_keys(text))


@dataclass(frozen=True, slots=True)
class Simulation:
    """Everything one simulation depends on."""

    identity: tuple[PolicyInput, ...]
    actions: tuple[str, ...]
    resources: tuple[str, ...] | None        # None: ResourceArns not given ("*")
    caller_arn: str
    caller_account: str
    caller_type: str
    boundary: PolicyInput | None = None
    resource_policy: PolicyInput | None = None
    resource_owner: str | None = None
    context: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def _statement(source: PolicyInput, index: int) -> dict:
    span = source.spans[index]
    return {"SourcePolicyId": source.source_id, "SourcePolicyType": _SOURCE_TYPES.get(source.source_type, "IAM Policy"),
            "StartPosition": {"Line": span.start.line, "Column": span.start.column},
            "EndPosition": {"Line": span.end.line, "Column": span.end.column}}


def _relevant(st: Statement, action: str, resource: str, keys: Mapping[str, tuple[str, ...]]) -> bool:
    """The statement is about this action and resource; a Resource with policy variables counts
    (its variables may be the very keys that are missing)."""
    if st.actions.matches(action, keys) is st.not_action:
        return False
    patterns = st.resources
    return patterns is None or bool(patterns.templates) or patterns.matches(resource, keys) is not st.not_resource


def _missing(sim: Simulation, action: str, resource: str, keys: Mapping[str, tuple[str, ...]]) -> list[str]:
    sources = list(sim.identity) + [s for s in (sim.boundary, sim.resource_policy) if s is not None]
    wanted = []
    for source in sources:
        for st, st_keys in zip(source.policy.statements, source.keys):
            if st_keys and _relevant(st, action, resource, keys):
                wanted += [k for k in st_keys if k.lower() not in keys]
    return unique_keys(wanted)


def _one(sim: Simulation, action: str, resource: str) -> dict:
    """The ``ResourceSpecificResult``-like answer for one action on one resource."""
    req = RequestContext(action, resource, sim.caller_arn, sim.caller_account, sim.caller_type, dict(sim.context))
    found: Explanation = explain(
        req, [s.policy for s in sim.identity],
        resource_policy=sim.resource_policy.policy if sim.resource_policy else None,
        permissions_boundary=sim.boundary.policy if sim.boundary else None,
        resource_account=sim.resource_owner)
    by_layer = {"identity": sim.identity, "resource": (sim.resource_policy,)}
    matched = [_statement(by_layer[layer][p], s) for layer in ("resource", "identity")
               for name, p, s in found.matched if name == layer]
    out: dict[str, Any] = {"EvalResourceName": resource,
                           "EvalResourceDecision": _DECISIONS.get(found.decision.reason, "implicitDeny"),
                           "MatchedStatements": matched,
                           "MissingContextValues": _missing(sim, action.lower(), resource, req.keys) or None}
    if found.cross_account:
        out["EvalDecisionDetails"] = XmlMap((_DETAIL_NAMES[k], _DECISIONS.get(v, "implicitDeny"))
                                            for k, v in found.layers.items())
    if found.boundary_allows is not None:
        out["PermissionsBoundaryDecisionDetail"] = {"AllowedByPermissionsBoundary": found.boundary_allows}
    return out


def _unique(statements: list[dict]) -> list[dict]:
    """Matched statements without repeats (the same statement decides for many resources)."""
    seen: set[tuple] = set()
    out = []
    for st in statements:
        key = (st["SourcePolicyId"], st["SourcePolicyType"], tuple(st["StartPosition"].values()),
               tuple(st["EndPosition"].values()))
        if key not in seen:
            seen.add(key)
            out.append(st)
    return out


def _action_result(sim: Simulation, action: str) -> dict:
    per_resource = [_one(sim, action, r) for r in (sim.resources or ("*",))]
    decision = max((r["EvalResourceDecision"] for r in per_resource), key=_STRICTNESS.__getitem__)
    deciding = [r for r in per_resource if r["EvalResourceDecision"] == decision]
    out: dict[str, Any] = {
        "EvalActionName": action, "EvalResourceName": per_resource[0]["EvalResourceName"]
        if len(per_resource) == 1 else "*", "EvalDecision": decision,
        "MatchedStatements": _unique([m for r in deciding for m in r["MatchedStatements"]]),
        "MissingContextValues": unique_keys(k for r in per_resource for k in r["MissingContextValues"] or ()),
    }
    boundary = [r["PermissionsBoundaryDecisionDetail"]["AllowedByPermissionsBoundary"]
                for r in per_resource if "PermissionsBoundaryDecisionDetail" in r]
    if boundary:
        out["PermissionsBoundaryDecisionDetail"] = {"AllowedByPermissionsBoundary": all(boundary)}
    details = [r["EvalDecisionDetails"] for r in per_resource if "EvalDecisionDetails" in r]
    if details:
        out["EvalDecisionDetails"] = XmlMap(
            (name, max((d[name] for d in details), key=_STRICTNESS.__getitem__)) for name in details[0])
    elif sim.resources is not None:
        out["EvalDecisionDetails"] = XmlMap()
    if sim.resources is not None:
        out["ResourceSpecificResults"] = per_resource
    return out


def action_work(sim: Simulation) -> int:
    """What simulating one action costs: statements to test, times resources (for paging by cost)."""
    sources = list(sim.identity) + [s for s in (sim.boundary, sim.resource_policy) if s is not None]
    return sum(len(s.policy.statements) for s in sources) * len(sim.resources or ("*",))


def simulate(sim: Simulation, start: int = 0, count: int | None = None) -> list[dict]:
    """The ``EvaluationResult`` of each action of ``sim[start:start + count]`` (all by default).

    Returns:
        Dicts in the IAM model's member order, for ``render_result``.
    """
    stop = None if count is None else start + count
    return [_action_result(sim, action) for action in sim.actions[start:stop]]


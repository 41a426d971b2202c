"""IAM's policy simulator operations: the Query parameters in, ``sts_backend.simulator`` out.

``SimulatePrincipalPolicy`` and ``GetContextKeysForPrincipalPolicy`` read the
policies of a user (with its groups'), group or role from the store;
``SimulateCustomPolicy`` and ``GetContextKeysForCustomPolicy`` only those passed
in. All four are read-only. Errors [IAM API reference for the four actions]:

- a ``PolicySourceArn``/``CallerArn`` that is not an IAM user, group or role ARN:
  InvalidInput "Invalid Entity Arn: ARN does not clearly define entity type and
  name." (quoted from AWS in a public project's docs); a source in another
  account: InvalidInput "Invalid Policy Source Arn: caller's account A does not
  have access to policies in account B" (quoted likewise); an unknown entity:
  NoSuchEntity "The user|group|role with name X cannot be found.";
- a document that is not a valid policy: MalformedPolicyDocument, with IAM's text;
- ContextEntries whose values do not fit their ``ContextKeyType``, a second
  boundary, a ResourcePolicy without a caller to match its Principal against:
  InvalidInput (our wording; AWS's is not on record);
- a simulation whose one action would test more than ``ACTION_WORK_LIMIT``
  statement and resource pairs: InvalidInput. Pages hold fewer actions than
  MaxItems when they cost more than ``PAGE_WORK_BUDGET`` (IAM may return fewer).
  These calls run on the read lane's event loop; these bounds keep any one of
  them to a fraction of a second.

``ResourceHandlingOption`` (EC2 scenarios) is accepted and ignored: nothing here
depends on which EC2 resources a scenario names. ``PolicyExclusionList`` leaves
attached policies out (``sts_backend.simulator_exclusions``);
``OrderedOrganizationPolicyInputList`` (SCPs) is refused (InvalidInput) rather
than silently ignored. ``ResourceOwner`` makes resources whose ARN names no
account belong to that account.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import ipaddress
import re

from sts_backend.errors import NoSuchEntity, SenderError, ValidationError
from sts_backend.iam_records import PolicySource
from sts_backend.iam_render import DEFAULT_MAX_ITEMS, Ctx, Handler
from sts_backend.policy import PrincipalType
from sts_backend.policy_document import PolicyKind, parse_policy
from sts_backend.policy_keys import context_key_names
from sts_backend.simulator import PolicyInput, Simulation, action_work, policy_input, simulate
from sts_backend.simulator_exclusions import exclusion

__all__ = ["HANDLERS", "context_entries"]

_ENTITY_ARN = re.compile(r"arn:aws:iam::(\d{12}):(user|group|role)(/(?:[^/]+/)*)([\w+=,.@-]+)")
_OWNER = re.compile(r"(\d{12})|arn:aws:iam::(\d{12}):root")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")
# Work bounds, in statements tested times resources: the calls run inline on the read lane's
# event loop, which must never be held for long. 10,000 pairs cost 15-30 ms to simulate; the
# worst case, every statement matching for every resource, renders 10,000 matched statements
# (2.4 MB of XML) in about 0.3 s.
ACTION_WORK_LIMIT = 10_000   # one action's simulation; more is refused (InvalidInput)
PAGE_WORK_BUDGET = 10_000    # one page: fewer actions than MaxItems when they cost more
_CALLER_TYPES = {"user": PrincipalType.USER, "group": PrincipalType.USER, "role": PrincipalType.ASSUMED_ROLE}


def _invalid(message: str) -> SenderError:
    return SenderError("InvalidInput", message)


def _entity_arn(arn: str) -> tuple[str, str, str]:
    """(account, kind, name) of an IAM user, group or role ARN, or InvalidInput."""
    found = _ENTITY_ARN.fullmatch(arn)
    if found is None:
        raise _invalid(f"Invalid Entity Arn: {arn} does not clearly define entity type and name.")
    return found.group(1), found.group(2), found.group(4)


# ---- context entries -------------------------------------------------------------------------

def _boolean(value: str) -> str:
    if value.lower() not in ("true", "false"):
        raise ValueError(value)
    return value.lower()


def _numeric(value: str) -> str:
    if not _NUMBER.fullmatch(value.strip()):
        raise ValueError(value)
    return value


def _date(value: str) -> str:
    if not value.strip().isdigit():
        dt.datetime.fromisoformat(value.strip().replace("z", "Z"))
    return value


def _ip(value: str) -> str:
    ipaddress.ip_address(value.strip())
    return value


def _binary(value: str) -> str:
    base64.b64decode(value, validate=True)
    return value


_TYPES = {"string": str, "numeric": _numeric, "boolean": _boolean, "ip": _ip, "binary": _binary, "date": _date}


def context_entries(entries: list[dict]) -> dict[str, tuple[str, ...]]:
    """``ContextEntries`` as request-context keys (lower-case names), each value checked by its type.

    A scalar type takes exactly one value, a ``...List`` type any number; a missing
    ``ContextKeyType`` means ``string``.

    Raises:
        SenderError: InvalidInput for a missing or repeated name, or a value that
            does not fit its type.
    """
    keys: dict[str, tuple[str, ...]] = {}
    for entry in entries:
        name = entry.get("ContextKeyName")
        if not name:
            raise _invalid("Context entries must name a context key (ContextKeyName).")
        if name.lower() in keys:
            raise _invalid(f"Context key {name} is given more than once.")
        kind = entry.get("ContextKeyType") or "string"
        values = entry.get("ContextKeyValues") or []
        scalar = not kind.endswith("List")
        if scalar and len(values) != 1:
            raise _invalid(f"Context key {name} of type {kind} takes exactly one value.")
        check = _TYPES[kind.removesuffix("List")]
        try:
            keys[name.lower()] = tuple(check(v) for v in values)
        except (ValueError, binascii.Error):
            raise _invalid(f"A value of context key {name} is not a valid {kind.removesuffix('List')}.") from None
    return keys


# ---- building a simulation ------------------------------------------------------------------

def _refuse_unsupported(p: dict) -> None:
    if p.get("OrderedOrganizationPolicyInputList"):
        raise _invalid("OrderedOrganizationPolicyInputList is not supported by this backend: it has no "
                       "organizations, so no service control policies.")


def _inputs(p: dict) -> list[PolicyInput]:
    return [policy_input(f"PolicyInputList.{i}", "none", text)
            for i, text in enumerate(p.get("PolicyInputList") or [], 1)]


def _boundary(p: dict) -> PolicyInput | None:
    given = p.get("PermissionsBoundaryPolicyInputList") or []
    if len(given) > 1:
        raise _invalid("Only one permissions boundary policy can be simulated (PermissionsBoundaryPolicyInputList).")
    return policy_input("PermissionsBoundaryPolicyInputList.1", "none", given[0]) if given else None


def _simulation(p: dict, ctx: Ctx, identity: list[PolicyInput], boundary: PolicyInput | None,
                caller_arn: str | None) -> Simulation:
    account = ctx.store.account_id()
    if p.get("CallerArn"):
        caller_arn = p["CallerArn"]
        _entity_arn(caller_arn)
    resource_policy = None
    if p.get("ResourcePolicy"):
        if not caller_arn:
            raise _invalid("CallerArn is required to simulate a ResourcePolicy unless the PolicySourceArn is "
                           "an IAM user.")
        resource_policy = policy_input("ResourcePolicy", "resource", p["ResourcePolicy"], PolicyKind.RESOURCE)
    caller_account, caller_kind = (_entity_arn(caller_arn)[:2] if caller_arn else (account, "user"))
    resources = tuple(p["ResourceArns"]) if p.get("ResourceArns") else None
    return Simulation(tuple(identity), _actions(p["ActionNames"]), resources, caller_arn or "", caller_account,
                      _CALLER_TYPES[caller_kind], boundary, resource_policy, _owner(p.get("ResourceOwner")),
                      context_entries(p.get("ContextEntries") or []))


def _actions(names: list[str]) -> tuple[str, ...]:
    """ActionNames: one action each, "service:Action" without wildcards [SimulateCustomPolicy]."""
    for name in names:
        service, colon, action = name.partition(":")
        if not (service and colon and action) or ":" in action or any(c in name for c in "*?"):
            raise _invalid(f"Invalid action name {name}: give one action as service:Action, without wildcards.")
    return tuple(names)


def _owner(owner: str | None) -> str | None:
    """ResourceOwner: an account id, or its root ARN (``arn:aws:iam::123456789012:root``, the older docs' form)."""
    if owner is None:
        return None
    found = _OWNER.fullmatch(owner)
    if found is None:
        raise _invalid(f"Invalid ResourceOwner {owner}: give an account id.")
    return found.group(1) or found.group(2)


def _source(p: dict, ctx: Ctx) -> tuple[str, str, list[PolicySource], PolicySource | None]:
    """(kind, ARN, its policies, its boundary) of ``PolicySourceArn``."""
    arn = p["PolicySourceArn"]
    account, kind, name = _entity_arn(arn)
    own = ctx.store.account_id()
    if account != own:
        raise _invalid(f"Invalid Policy Source Arn: caller's account {own} does not have access to policies "
                       f"in account {account}")
    sources, boundary = ctx.store.policy_sources(kind, name)
    stored = {"user": ctx.store.user, "role": ctx.store.role}.get(kind, ctx.store.get_group)(name)
    if stored is None or stored.arn.lower() != arn.lower():
        raise NoSuchEntity(f"The {kind} with name {name} cannot be found.")
    return kind, arn, sources, boundary


def _paged(sim: Simulation, p: dict) -> dict:
    """One page of results: at most MaxItems (100) actions, fewer when their work would pass
    ``PAGE_WORK_BUDGET`` ("IAM might return fewer results, even when there are more results
    available" [SimulateCustomPolicy]); the Marker is the index of the next action."""
    marker = p.get("Marker")
    if marker is not None and not marker.isdigit():
        raise ValidationError("Invalid Marker.")
    start = int(marker or 0)
    work = action_work(sim)
    if work > ACTION_WORK_LIMIT:
        raise _invalid(f"The simulation is too large: {work} statement and resource pairs per action "
                       f"exceed this backend's limit of {ACTION_WORK_LIMIT}; simulate fewer resources at once.")
    count = max(1, min(p.get("MaxItems") or DEFAULT_MAX_ITEMS, PAGE_WORK_BUDGET // max(work, 1)))
    results = simulate(sim, start, count)
    out: dict = {"EvaluationResults": results, "IsTruncated": start + count < len(sim.actions)}
    if out["IsTruncated"]:
        out["Marker"] = str(start + count)
    return out


# ---- the operations --------------------------------------------------------------------------

def simulate_principal_policy(p: dict, ctx: Ctx) -> dict:
    """SimulatePrincipalPolicy: the entity's policies plus those passed in; a passed boundary replaces its own."""
    _refuse_unsupported(p)
    kind, arn, sources, stored_boundary = _source(p, ctx)
    excluded = exclusion(p.get("PolicyExclusionList") or [])
    identity = [policy_input(s.name, s.kind, s.document) for s in sources if not excluded(s)] + _inputs(p)
    boundary = _boundary(p)
    if boundary is None and stored_boundary is not None and not excluded(stored_boundary):
        boundary = policy_input(stored_boundary.name, stored_boundary.kind, stored_boundary.document)
    sim = _simulation(p, ctx, identity, boundary, arn if kind == "user" else None)
    return _paged(sim, p)


def simulate_custom_policy(p: dict, ctx: Ctx) -> dict:
    """SimulateCustomPolicy: only the policies passed in."""
    _refuse_unsupported(p)
    sim = _simulation(p, ctx, _inputs(p), _boundary(p), None)
    return _paged(sim, p)


def _checked(texts: list[str]) -> list[str]:
    for text in texts:
        parse_policy(text, PolicyKind.IDENTITY)
    return texts


def get_context_keys_for_custom_policy(p: dict, ctx: Ctx) -> dict:
    return {"ContextKeyNames": context_key_names(_checked(p["PolicyInputList"]))}


def get_context_keys_for_principal_policy(p: dict, ctx: Ctx) -> dict:
    """The keys of the entity's policies (a user's groups' included), then of those passed in."""
    _, _, sources, _ = _source(p, ctx)
    texts = [s.document for s in sources] + list(p.get("PolicyInputList") or [])
    return {"ContextKeyNames": context_key_names(_checked(texts))}


HANDLERS: dict[str, Handler] = {
    "SimulatePrincipalPolicy": simulate_principal_policy,
    "SimulateCustomPolicy": simulate_custom_policy,
    "GetContextKeysForCustomPolicy": get_context_keys_for_custom_policy,
    "GetContextKeysForPrincipalPolicy": get_context_keys_for_principal_policy,
}

"""IAM policy documents: JSON text in, an immutable compiled ``Policy`` out (no I/O).

Theory of operation
-------------------
``parse_policy(text, kind)`` validates a document the way IAM does and compiles it
once: wildcards become regular expressions, condition values are parsed into the
form their operator compares, principals become sets. ``sts_backend.policy``
evaluates the result on every request, so everything costly happens here, and
parsed policies are cached by their text.

Validation runs in IAM's order, each stage with the message IAM gives for it (the
stage order and most texts follow moto 5.2.5 ``moto/iam/policy_validation.py``,
which models AWS; every text seen from real AWS is cited where it is defined):

1. JSON shape (no key twice in one object), element names and value types
   -> ``Syntax errors in policy.``
2. Version, when the caller demands the current one (managed policies)
3. "legacy parsing": Effect case, Date/Numeric/IP condition values
4. Sid format and uniqueness
5. Action present; Resource present (identity) or absent (trust); Principal
   absent (identity) or present (trust, resource)
6. Resource ARN format, action vendors, principal values

Kinds: IDENTITY (user/group/role permission policies and session policies),
TRUST (a role's AssumeRolePolicyDocument), RESOURCE (other resource policies).

Condition operators (the table validation checks against, how values are parsed,
compiling a Condition) live in ``sts_backend.policy_conditions``; wildcards and
policy variables (``${aws:username}``..., expanded when Version is 2012-10-17) in
``sts_backend.policy_match``. The names imported from them stay importable here.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sts_backend.errors import MalformedPolicyDocument
from sts_backend.policy_conditions import (
    OPERATORS, Condition, compile_condition, condition_syntax_ok, condition_values,
    split_operator,
)
from sts_backend.policy_match import Patterns

__all__ = [
    "INVALID_PRINCIPAL", "Policy", "PolicyKind", "PrincipalSet", "Statement", "parse_policy", "policy_size",
]

# --- messages (MalformedPolicyDocument, HTTP 400) -------------------------------
# Observed from AWS: cfn-lint#2021, 99designs/iamy#74, checkr/s3-sync#1.
SYNTAX_ERROR = "Syntax errors in policy."
# Meteor-CollectionFS#630 (console, CreatePolicy); moto applies it to managed policies.
VERSION_REQUIRED = "Policy document must be version 2012-10-17 or greater."
# hashicorp/terraform#10057 (Effect "allow"); moto: bad Date condition values.
LEGACY_PARSING = "The policy failed legacy parsing"
# kubernetes/kops#4951, magenx/Magento-2-aws-cluster-terraform#18.
SID_NOT_UNIQUE = "Statement IDs (SID) in a single policy must be unique."
# aws-cloudformation/cfn-lint#1376, Wolox/carthage_cache#22.
SID_NOT_ALNUM = ("Statement IDs (SID) must be alpha-numeric. Check that your input "
                 "satisfies the regular expression [0-9A-Za-z]*")
# aws/aws-cdk#7615; trussworks/terraform-aws-s3-anti-virus#28.
NO_ACTIONS = "Policy statement must contain actions."
NO_RESOURCES = "Policy statement must contain resources."
# hashicorp/terraform-provider-aws#10419, hashicorp/terraform#13449 (API form; the
# console says "Has prohibited field Principal", re:Post knowledge-center/iam-principal-policy).
PRINCIPAL_FORBIDDEN = "Policy document should not specify a principal."
# hashicorp/terraform#34231, terraform-aws-eks-pod-identity#34 (no final period;
# moto adds one). The NotPrincipal variant is inferred from it: IUG
# reference_policies_elements_notprincipal forbids NotPrincipal in trust policies.
PROHIBITED_FIELD = "Has prohibited field {}"
# terraform-aws-modules/terraform-aws-iam#47 (CreateRole, trust statement without principals).
NO_PRINCIPALS = ("Invalid principal in policy: com.amazon.balsa.error.InvalidPolicyException: "
                 "The passed in policy has a statement with no principals!")
# S3 bucket policies (humanmade/S3-Uploads#191); used for RESOURCE-kind documents.
PRINCIPAL_MISSING = "Missing required field Principal"
# aws-actions/configure-aws-credentials#332, databrickslabs/ucx#2269; "SERVICE" upper-cased
# in aws/aws-cdk ServicePrincipal report (Invalid principal in policy: "SERVICE":"").
INVALID_PRINCIPAL = 'Invalid principal in policy: "{}":"{}"'
# moto (modelled on AWS); garnaat/kappa#111 observed the colon one.
NO_VENDOR = "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc."
ONE_COLON = "Actions/Condition can contain only one colon."
BAD_VENDOR = "Vendor {} is not valid"
# boogy/iam-policy-validator#172 quoting AWS for "*:Untag*".
WILDCARD_VENDOR = "Action vendors (e.g., aws, ec2, etc.) must not contain wildcards"
# cattle-ops/terraform-aws-gitlab-runner#1257 (Resource ""); moto for the vendor one.
RESOURCE_NOT_ARN = 'Resource {} must be in ARN format or "*".'
RESOURCE_VENDOR = "Resource vendor must be fully qualified and cannot contain regexes."

VERSIONS = ("2012-10-17", "2008-10-17")
_TOP = frozenset({"Version", "Id", "Statement"})
_ELEMENTS = frozenset({"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource",
                       "Principal", "NotPrincipal", "Condition"})
_PRINCIPAL_TYPES = frozenset({"AWS", "Service", "Federated", "CanonicalUser"})
_SID = re.compile(r"[0-9A-Za-z]*")
_ACCOUNT = re.compile(r"\d{12}")
# A user's or role's unique id: how IAM shows a principal deleted since the policy was saved.
# It names nobody alive, so it matches no caller (sts_backend.store_identities.SqlIdentities.trust_as_shown).
_UNIQUE_ID = re.compile(r"A(?:IDA|ROA)[A-Z0-9]{16,}")
_AWS_PRINCIPAL_ARN = re.compile(
    r"arn:aws[a-z-]*:(?:iam::(\d{12}):(?:root|user/.+|role/.+)"
    r"|sts::(\d{12}):(?:assumed-role/[^/]+/.+|federated-user/.+))", re.DOTALL)
_VENDOR_OK = re.compile(r"[a-zA-Z0-9.-]+")


class PolicyKind(enum.Enum):
    IDENTITY = "identity"   # permission policies and session policies: no Principal
    TRUST = "trust"         # a role's trust policy: Principal, no Resource
    RESOURCE = "resource"   # other resource-based policies: Principal and Resource


def policy_size(text: str) -> int:
    """Characters that count against IAM's size quotas.

    "IAM doesn't count white space when calculating the size of a policy"
    [IUG:reference_iam-quotas]; every Unicode whitespace character is skipped.
    """
    return len("".join(text.split()))


# --- compiled documents -----------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PrincipalSet:
    """A Principal/NotPrincipal element: who it names, by kind."""

    everyone: bool                   # "*" or {"AWS": "*"}
    accounts: frozenset[str]         # "123456789012" or "arn:aws:iam::123456789012:root"
    arns: frozenset[str]             # user, role, assumed-role session, federated-user ARNs
    services: frozenset[str]         # {"Service": "ec2.amazonaws.com"}
    federated: frozenset[str]        # {"Federated": provider ARN or name}


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement, compiled; the ``not_*`` flags invert their element."""

    sid: str | None
    allow: bool
    actions: Patterns
    not_action: bool
    resources: Patterns | None       # None: trust policies name no resource
    not_resource: bool
    principals: PrincipalSet | None  # None: identity policies name no principal
    not_principal: bool
    conditions: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Policy:
    """A parsed, validated, compiled policy document; immutable and shareable."""

    kind: PolicyKind
    version: str | None
    id: str | None
    statements: tuple[Statement, ...]
    denies: tuple[Statement, ...]
    allows: tuple[Statement, ...]
    size: int
    _by_action: dict = field(default_factory=dict, compare=False, repr=False)

    def for_action(self, action: str) -> tuple[tuple[Statement, ...], tuple[Statement, ...]]:
        """(denies, allows) whose Action/NotAction element lets ``action`` (lower-case) in.

        Action matching needs nothing from the request but the action (no policy
        variables there), so it is done once per action and remembered; a request
        then only tries the statements that can apply to it. Bounded: a policy sees
        few distinct actions, and the memo starts over when it holds too many.
        """
        found = self._by_action.get(action)
        if found is None:
            if len(self._by_action) >= _ACTION_MEMO:
                self._by_action.clear()
            found = self._by_action[action] = (
                tuple(st for st in self.denies if st.actions.matches(action, _NO_KEYS) is not st.not_action),
                tuple(st for st in self.allows if st.actions.matches(action, _NO_KEYS) is not st.not_action))
        return found


_ACTION_MEMO = 256
_NO_KEYS: dict = {}


def parse_policy(text: str, kind: PolicyKind = PolicyKind.IDENTITY, *,
                 require_current_version: bool = False) -> Policy:
    """Validate and compile a policy document (cached by text).

    Args:
        text: the JSON document as sent.
        kind: IDENTITY (permission and session policies), TRUST, or RESOURCE.
        require_current_version: demand Version 2012-10-17, as CreatePolicy does.

    Returns:
        The compiled ``Policy``.

    Raises:
        MalformedPolicyDocument: with IAM's message for the first problem found.
    """
    return _parse(text, kind, require_current_version)


@lru_cache(maxsize=1024)
def _parse(text: str, kind: PolicyKind, require_current_version: bool) -> Policy:
    doc, statements = _load(text)
    version = doc.get("Version")
    if require_current_version and version != "2012-10-17":
        raise MalformedPolicyDocument(VERSION_REQUIRED)
    for st in statements:
        _legacy_checks(st)
    _check_sids(statements)
    for st in statements:
        _check_elements(st, kind)
    for st in statements:
        _check_values(st)
    compiled = tuple(_compile_statement(st, variables=version == "2012-10-17") for st in statements)
    return Policy(kind, version, doc.get("Id"), compiled,
                  tuple(s for s in compiled if not s.allow), tuple(s for s in compiled if s.allow),
                  policy_size(text))


# --- stage 1: syntax ------------------------------------------------------------------

def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    """An object hook: "Individual elements must not contain multiple instances of the
    same key" [IUG:reference_policies_grammar §Policy grammar notes]; json.loads
    would silently keep the last one (two Effects, two StringEquals blocks...)."""
    found = dict(pairs)
    if len(found) != len(pairs):
        raise ValueError("duplicate key")
    return found


def _load(text: str) -> tuple[dict, list[dict]]:
    try:
        doc = json.loads(text, object_pairs_hook=_unique_keys)
    except (ValueError, TypeError, RecursionError):
        raise MalformedPolicyDocument(SYNTAX_ERROR) from None
    statements = doc.get("Statement") if isinstance(doc, dict) else None
    if isinstance(statements, dict):
        statements = [statements]
    if (not isinstance(doc, dict) or not set(doc) <= _TOP or not isinstance(statements, list)
            or not statements or doc.get("Version", VERSIONS[0]) not in VERSIONS
            or not isinstance(doc.get("Id", ""), str)
            or not all(isinstance(s, dict) and _statement_syntax_ok(s) for s in statements)):
        raise MalformedPolicyDocument(SYNTAX_ERROR)
    return doc, statements


def _statement_syntax_ok(st: dict) -> bool:
    if not set(st) <= _ELEMENTS:
        return False
    for a, b in (("Action", "NotAction"), ("Resource", "NotResource"), ("Principal", "NotPrincipal")):
        if a in st and b in st:
            return False
    effect = st.get("Effect")
    if not isinstance(effect, str) or effect.lower() not in ("allow", "deny"):
        return False
    if not isinstance(st.get("Sid", ""), str):
        return False
    if not all(_strings(st[k]) for k in ("Action", "NotAction", "Resource", "NotResource") if k in st):
        return False
    principal = st.get("Principal", st.get("NotPrincipal", "*"))
    if principal != "*" and not (isinstance(principal, dict) and set(principal) <= _PRINCIPAL_TYPES
                                 and all(_strings(v) for v in principal.values())):
        return False
    return condition_syntax_ok(st.get("Condition", {}))


def _strings(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))


# --- stages 3-6: legacy parsing, Sids, required/forbidden elements, value formats -------

def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _legacy_checks(st: dict) -> None:
    if st["Effect"] not in ("Allow", "Deny"):
        raise MalformedPolicyDocument(LEGACY_PARSING)
    for operator, body in st.get("Condition", {}).items():
        op = OPERATORS.get(split_operator(operator)[1])
        if op is None or op.variables:
            continue
        for values in body.values():
            for value in condition_values(values):
                try:
                    op.parse(value)
                except (ValueError, OverflowError):
                    raise MalformedPolicyDocument(LEGACY_PARSING) from None


def _check_sids(statements: list[dict]) -> None:
    sids = [st["Sid"] for st in statements if st.get("Sid")]
    if not all(_SID.fullmatch(s) for s in sids):
        raise MalformedPolicyDocument(SID_NOT_ALNUM)
    if len(sids) != len(set(sids)):
        raise MalformedPolicyDocument(SID_NOT_UNIQUE)


def _check_elements(st: dict, kind: PolicyKind) -> None:
    if not _present(st, "Action", "NotAction"):
        raise MalformedPolicyDocument(NO_ACTIONS)
    has_resource = _present(st, "Resource", "NotResource")
    if kind is PolicyKind.IDENTITY:
        if "Principal" in st or "NotPrincipal" in st:
            raise MalformedPolicyDocument(PRINCIPAL_FORBIDDEN)
        if not has_resource:
            raise MalformedPolicyDocument(NO_RESOURCES)
        return
    if kind is PolicyKind.TRUST:
        for name in ("Resource", "NotResource", "NotPrincipal"):
            if name in st:
                raise MalformedPolicyDocument(PROHIBITED_FIELD.format(name))
        if not st.get("Principal") or not any(_as_list(v) for v in _principal_items(st["Principal"])):
            raise MalformedPolicyDocument(NO_PRINCIPALS)
        return
    if not (st.get("Principal") or st.get("NotPrincipal")):
        raise MalformedPolicyDocument(PRINCIPAL_MISSING)
    if not has_resource:
        raise MalformedPolicyDocument(NO_RESOURCES)


def _present(st: dict, name: str, not_name: str) -> bool:
    """The element is there and, when a list, not empty (moto's rule)."""
    return any(f in st and st[f] != [] for f in (name, not_name))


def _principal_items(principal: Any) -> list:
    return ["*"] if principal == "*" else list(principal.values())


def _check_values(st: dict) -> None:
    for name in ("Resource", "NotResource"):
        for resource in _as_list(st.get(name, [])):
            _check_resource(resource)
    for name in ("Action", "NotAction"):
        for action in _as_list(st.get(name, [])):
            _check_action(action)
    for condition in st.get("Condition", {}).values():
        for key in condition:
            if ":" not in key:
                raise MalformedPolicyDocument(NO_VENDOR)
    principal = st.get("Principal", st.get("NotPrincipal"))
    if isinstance(principal, dict):
        for kind, values in principal.items():
            for value in _as_list(values):
                _check_principal(kind, value)


def _check_resource(resource: str) -> None:
    if resource == "*":
        return
    parts = resource.split(":")
    if len(parts) < 2 or parts[0] != "arn":   # the "arn" prefix test is ours (inferred)
        raise MalformedPolicyDocument(RESOURCE_NOT_ARN.format(resource))
    if len(parts) < 3 or not parts[2] or "*" in parts[2] or "?" in parts[2]:
        raise MalformedPolicyDocument(RESOURCE_VENDOR)
    if "::" in resource and resource.count(":") < 5:   # moto's legacy-parsing rule
        raise MalformedPolicyDocument(LEGACY_PARSING)


def _check_action(action: str) -> None:
    if action == "*":
        return
    parts = action.split(":")
    if len(parts) == 1:
        raise MalformedPolicyDocument(NO_VENDOR)
    if len(parts) > 2:
        raise MalformedPolicyDocument(ONE_COLON)
    if "*" in parts[0] or "?" in parts[0]:
        raise MalformedPolicyDocument(WILDCARD_VENDOR)
    if not _VENDOR_OK.fullmatch(parts[0]):
        raise MalformedPolicyDocument(BAD_VENDOR.format(parts[0]))


def _check_principal(kind: str, value: str) -> None:
    if kind == "AWS":
        ok = (value == "*" or _ACCOUNT.fullmatch(value) or _AWS_PRINCIPAL_ARN.fullmatch(value)
              or _UNIQUE_ID.fullmatch(value))
        ok = ok and ("*" not in value or value == "*") and "?" not in value
    else:
        ok = bool(value.strip()) and not any(c.isspace() for c in value)
    if not ok:
        raise MalformedPolicyDocument(INVALID_PRINCIPAL.format(kind.upper(), value))


# --- compile --------------------------------------------------------------------------

def _compile_statement(st: dict, *, variables: bool) -> Statement:
    action_field = "Action" if "Action" in st else "NotAction"
    actions = Patterns.compile(tuple(_as_list(st[action_field])), fold_case=True, variables=False)
    resources = None
    resource_field = "Resource" if "Resource" in st else "NotResource"
    if resource_field in st:
        resources = Patterns.compile(tuple(_as_list(st[resource_field])), fold_case=False,
                                     variables=variables)
    principal_field = "Principal" if "Principal" in st else "NotPrincipal"
    principals = _principal_set(st[principal_field]) if principal_field in st else None
    conditions = tuple(compile_condition(operator, key, values, variables)
                       for operator, body in st.get("Condition", {}).items()
                       if split_operator(operator)[1] in OPERATORS
                       for key, values in body.items())
    return Statement(st.get("Sid") or None, st["Effect"] == "Allow", actions,
                     "NotAction" in st, resources, "NotResource" in st,
                     principals, "NotPrincipal" in st, conditions)


def _principal_set(principal: Any) -> PrincipalSet:
    if principal == "*":
        return PrincipalSet(True, frozenset(), frozenset(), frozenset(), frozenset())
    aws = set(_as_list(principal.get("AWS", [])))
    accounts = {a for a in aws if _ACCOUNT.fullmatch(a)}
    for arn in aws:
        if arn.endswith(":root") and arn.startswith("arn:"):
            accounts.add(arn.split(":")[4])
    arns = {a for a in aws if a.startswith("arn:") and not a.endswith(":root")}
    return PrincipalSet("*" in aws, frozenset(accounts), frozenset(arns),
                        frozenset(_as_list(principal.get("Service", []))),
                        frozenset(_as_list(principal.get("Federated", []))))

"""The policy engine's conformance table: the IAM User Guide's rules and examples as data.

Each ``Case`` holds the policies (JSON documents as dicts, by layer), the request (the
keyword arguments of ``build_request_context``), the expected decision with the deciding
statement's Sid and layer, and the rule it checks, cited as ``[IUG:page-name §heading]``
(pages of ``awsdocs/iam-user-guide`` ``doc_source/``; heading as written there). The
runner is ``tests/test_policy_conformance.py``.

Conventions: the caller is the IAM user alice in account 111122223333 unless a case
says otherwise; Sids name the statement a case expects to decide ("A" allows, "D"
denies); ``expect`` is (decision, sid, layer), the layer being the one whose statement
decided, or for "no allow" the one that had no Allow.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

ACCT = "111122223333"
OTHER = "444455556666"
ALICE = f"arn:aws:iam::{ACCT}:user/alice"
BOB = f"arn:aws:iam::{ACCT}:user/Bob"
EVE = f"arn:aws:iam::{OTHER}:user/eve"
ROOT = f"arn:aws:iam::{ACCT}:root"
ROLE = f"arn:aws:iam::{ACCT}:role/app"
SESSION = f"arn:aws:sts::{ACCT}:assumed-role/app/s1"
FED = f"arn:aws:sts::{ACCT}:federated-user/fred"
BUCKET = "arn:aws:s3:::mybucket"
OBJ = "arn:aws:s3:::mybucket/alice/notes.txt"
QUEUE = f"arn:aws:sqs:us-east-1:{ACCT}:queue1"
OTHER_QUEUE = f"arn:aws:sqs:us-east-1:{OTHER}:queue1"
NOW = "2026-01-01T00:00:00Z"
NOW_EPOCH = "1767225600"

ALLOW, DENY, NONE = "allowed", "explicit deny", "no allow"

P_EVAL = "reference_policies_evaluation-logic"
P_CROSS = "reference_policies_evaluation-logic-cross-account"
P_ACTION = "reference_policies_elements_action"
P_NOTACTION = "reference_policies_elements_notaction"
P_RESOURCE = "reference_policies_elements_resource"
P_NOTRESOURCE = "reference_policies_elements_notresource"
P_PRINCIPAL = "reference_policies_elements_principal"
P_NOTPRINCIPAL = "reference_policies_elements_notprincipal"
P_OPS = "reference_policies_elements_condition_operators"
P_CONDITION = "reference_policies_elements_condition"
P_MULTI = "reference_policies_multi-value-conditions"
P_VARS = "reference_policies_variables"
P_KEYS = "reference_policies_condition-keys"
P_VERSION = "reference_policies_elements_version"
P_BOUNDARIES = "access_policies_boundaries"
P_POLICIES = "access_policies"
P_REVOKE = "id_roles_use_revoke-sessions"
P_MFA = "id_credentials_mfa_configure-api-require"
P_EXTERNAL = "id_roles_create_for-user_externalid"

PAGES = frozenset({P_EVAL, P_CROSS, P_ACTION, P_NOTACTION, P_RESOURCE, P_NOTRESOURCE, P_PRINCIPAL,
                   P_NOTPRINCIPAL, P_OPS, P_CONDITION, P_MULTI, P_VARS, P_KEYS, P_VERSION,
                   P_BOUNDARIES, P_POLICIES, P_REVOKE, P_MFA, P_EXTERNAL})


@dataclass(frozen=True)
class Case:
    """One row: policies by layer, the request, the expected decision, the rule."""

    id: str
    cite: str
    request: dict[str, Any]
    expect: tuple[str, str | None, str | None]
    identity: tuple[dict, ...] = ()
    session: tuple[dict, ...] = ()
    boundary: dict | None = None
    resource: dict | None = None
    trust: dict | None = None                   # evaluated with evaluate_trust
    needs_identity_allow: bool = False          # trust cases only


def cite(page: str, heading: str) -> str:
    return f"[IUG:{page} §{heading}]"


def policy(*statements: dict, version: str | None = "2012-10-17") -> dict:
    doc: dict[str, Any] = {"Statement": list(statements)}
    if version is not None:
        doc["Version"] = version
    return doc


def statement(effect: str, action: Any = "s3:GetObject", resource: Any = "*", sid: str | None = None,
              condition: dict | None = None, **elements: Any) -> dict:
    st: dict[str, Any] = {"Effect": effect}
    if sid:
        st["Sid"] = sid
    if action is not None:
        st["Action"] = action
    if resource is not None:
        st["Resource"] = resource
    if condition:
        st["Condition"] = condition
    st.update(elements)
    return st


def allow(action: Any = "s3:GetObject", resource: Any = "*", sid: str | None = "A", **kw: Any) -> dict:
    return statement("Allow", action, resource, sid, **kw)


def deny(action: Any = "s3:GetObject", resource: Any = "*", sid: str | None = "D", **kw: Any) -> dict:
    return statement("Deny", action, resource, sid, **kw)


def req(action: str = "s3:GetObject", resource: str = OBJ, principal: str = ALICE, **kw: Any) -> dict:
    return {"action": action, "resource": resource, "principal_arn": principal, **kw}


def keys(**values: Any) -> dict:
    """Request condition keys, given with ``__`` for ``:`` and ``_S_`` for ``/``."""
    return {"extra": {k.replace("__", ":").replace("_S_", "/"): v for k, v in values.items()}}


_ACTION_TITLE = "IAM JSON Policy Elements: Action"
_RESOURCE_TITLE = "IAM JSON policy elements: Resource"
_NOTRESOURCE_TITLE = "IAM JSON Policy Elements: NotResource"
_EXTERNAL_TITLE = "How to use an external ID when granting access to your AWS resources to a third party"

YES = (ALLOW, "A", "identity")
NO = (NONE, None, "identity")


# --- 1. the decision: default deny, explicit deny overrides -----------------------------

EVALUATION = [
    Case("no-policies-implicit-deny", cite(P_EVAL, "Determining whether a request is allowed or denied within an account"),
         req(), NO),
    Case("allow-grants", cite(P_EVAL, "Determining whether a request is allowed or denied within an account"),
         req(), YES, identity=(policy(allow()),)),
    Case("allow-other-action-implicit-deny", cite(P_EVAL, "Determining whether a request is allowed or denied within an account"),
         req("s3:PutObject"), NO, identity=(policy(allow()),)),
    Case("deny-overrides-allow-same-policy", cite(P_EVAL, "Determining whether a request is allowed or denied within an account"),
         req(), (DENY, "D", "identity"), identity=(policy(allow(), deny()),)),
    Case("deny-overrides-allow-other-policy", cite(P_EVAL, "Determining whether a request is allowed or denied within an account"),
         req(), (DENY, "D", "identity"), identity=(policy(allow("s3:*")), policy(deny()))),
    Case("deny-before-allow-in-order-irrelevant", cite(P_EVAL, "Determining whether a request is allowed or denied within an account"),
         req(), (DENY, "D", "identity"), identity=(policy(deny(), allow("*")),)),
    Case("deny-other-action-no-effect", cite(P_EVAL, "Determining whether a request is allowed or denied within an account"),
         req(), YES, identity=(policy(allow(), deny("s3:PutObject")),)),
    Case("deny-other-resource-no-effect", cite(P_EVAL, "Determining whether a request is allowed or denied within an account"),
         req(), YES, identity=(policy(allow(), deny(resource="arn:aws:s3:::logs/*")),)),
    Case("deny-condition-false-no-effect", cite(P_EVAL, "Determining whether a request is allowed or denied within an account"),
         req(**keys(aws__SecureTransport="true")), YES,
         identity=(policy(allow(), deny(condition={"Bool": {"aws:SecureTransport": "false"}})),)),
    Case("deny-condition-true-denies", cite(P_OPS, "Boolean condition operators"),
         req(**keys(aws__SecureTransport="false")), (DENY, "BooleanExample", "identity"),
         identity=(policy(allow(), deny("s3:*", [BUCKET, BUCKET + "/*"], "BooleanExample",
                                        condition={"Bool": {"aws:SecureTransport": "false"}})),)),
    Case("deny-in-session-policy", cite(P_EVAL, "Determining whether a request is allowed or denied within an account"),
         req(principal=SESSION, role_arn=ROLE), (DENY, "D", "session"),
         identity=(policy(allow("s3:*")),), session=(policy(allow("*", sid="S"), deny()),)),
    Case("deny-in-boundary", cite(P_BOUNDARIES, "Evaluating effective permissions with boundaries"),
         req(), (DENY, "D", "boundary"), identity=(policy(allow("s3:*")),), boundary=policy(allow("*", sid="B"), deny())),
    Case("deny-in-resource-policy", cite(P_EVAL, "Determining whether a request is allowed or denied within an account"),
         req(), (DENY, "D", "resource"), identity=(policy(allow("s3:*")),),
         resource=policy(deny(Principal="*"))),
    Case("identity-deny-beats-resource-allow", cite(P_EVAL, "Determining whether a request is allowed or denied within an account"),
         req(), (DENY, "D", "identity"), identity=(policy(deny()),),
         resource=policy(allow(Principal={"AWS": ALICE}, sid="R"))),
    Case("first-matching-allow-reported", cite(P_EVAL, "Determining whether a request is allowed or denied within an account"),
         req(), (ALLOW, "First", "identity"), identity=(policy(allow(sid="First"), allow("s3:*", sid="Second")),)),
    Case("explicit-and-implicit-denies-example", cite(P_EVAL, "The difference between explicit and implicit denies"),
         req("iam:GetOrganizationsAccessReport"), (DENY, "DenyReports", "identity"),
         identity=(policy(allow(["iam:Get*", "iam:List*"], sid="AllowGetList"),
                          deny("iam:*Report", sid="DenyReports")),)),
    Case("explicit-and-implicit-denies-get-allowed", cite(P_EVAL, "The difference between explicit and implicit denies"),
         req("iam:GetUser"), (ALLOW, "AllowGetList", "identity"),
         identity=(policy(allow(["iam:Get*", "iam:List*"], sid="AllowGetList"),
                          deny("iam:*Report", sid="DenyReports")),)),
    Case("explicit-and-implicit-denies-create-implicit", cite(P_EVAL, "The difference between explicit and implicit denies"),
         req("iam:CreatePolicy"), NO,
         identity=(policy(allow(["iam:Get*", "iam:List*"], sid="AllowGetList"),
                          deny("iam:*Report", sid="DenyReports")),)),
]


# --- 2. Action / NotAction --------------------------------------------------------------

def _action(id_, pattern, action, allowed, page=P_ACTION, heading=_ACTION_TITLE):
    return Case(f"action-{id_}", cite(page, heading), req(action), YES if allowed else NO,
                identity=(policy(allow(pattern)),))


ACTIONS = [
    _action("exact", "iam:ListAccessKeys", "iam:ListAccessKeys", True),
    _action("case-insensitive-request", "iam:ListAccessKeys", "IAM:listaccesskeys", True),
    _action("case-insensitive-policy", "IAM:LISTACCESSKEYS", "iam:ListAccessKeys", True),
    _action("service-star", "s3:*", "s3:PutObject", True),
    _action("service-star-other-service", "s3:*", "sqs:SendMessage", False),
    _action("prefix-star", "s3:Get*", "s3:GetObject", True),
    _action("prefix-star-mismatch", "s3:Get*", "s3:PutObject", False),
    _action("infix-stars", "iam:*AccessKey*", "iam:CreateAccessKey", True),
    _action("infix-stars-mismatch", "iam:*AccessKey*", "iam:GetUser", False),
    _action("question-mark", "s3:?etObject", "s3:GetObject", True),
    _action("question-mark-one-char", "s3:?etObject", "s3:GGetObject", False),
    _action("no-implicit-prefix", "s3:GetObject", "s3:GetObjectAcl", False),
    _action("star-everything", "*", "ec2:StartInstances", True),
    Case("action-list", cite(P_ACTION, _ACTION_TITLE), req("ec2:StopInstances"), YES,
         identity=(policy(allow(["ec2:StartInstances", "ec2:StopInstances"])),)),
    Case("action-list-mismatch", cite(P_ACTION, _ACTION_TITLE), req("ec2:TerminateInstances"), NO,
         identity=(policy(allow(["ec2:StartInstances", "ec2:StopInstances"])),)),
    Case("action-same-name-other-service", cite(P_ACTION, _ACTION_TITLE), req("sns:GetTopicAttributes"), NO,
         identity=(policy(allow("sqs:Get*")),)),
    Case("notaction-allow-other-service", cite(P_NOTACTION, "NotAction with Allow"), req("s3:GetObject"), YES,
         identity=(policy(statement("Allow", None, "*", "A", NotAction="iam:*")),)),
    Case("notaction-allow-excluded", cite(P_NOTACTION, "NotAction with Allow"), req("iam:GetUser"), NO,
         identity=(policy(statement("Allow", None, "*", "A", NotAction="iam:*")),)),
    Case("notaction-allow-list-excluded", cite(P_NOTACTION, "NotAction with Allow"), req("sts:GetSessionToken"), NO,
         identity=(policy(statement("Allow", None, "*", "A", NotAction=["iam:*", "sts:Get*"])),)),
    Case("notaction-allow-scoped-resource", cite(P_NOTACTION, "NotAction with Allow"),
         req("ec2:DescribeInstances", resource="arn:aws:ec2:us-east-1:111122223333:instance/i-1"), NO,
         identity=(policy(statement("Allow", None, BUCKET, "A", NotAction="s3:DeleteBucket")),)),
    Case("notaction-allow-scoped-resource-match", cite(P_NOTACTION, "NotAction with Allow"),
         req("s3:ListBucket", resource=BUCKET), YES,
         identity=(policy(statement("Allow", None, BUCKET, "A", NotAction="s3:DeleteBucket")),)),
    Case("notaction-deny-spares-listed", cite(P_NOTACTION, "NotAction with Deny"), req("iam:GetUser"), YES,
         identity=(policy(allow("*"), statement("Deny", None, "*", "D", NotAction="iam:*")),)),
    Case("notaction-deny-denies-rest", cite(P_NOTACTION, "NotAction with Deny"), req("s3:GetObject"), (DENY, "D", "identity"),
         identity=(policy(allow("*"), statement("Deny", None, "*", "D", NotAction="iam:*")),)),
    Case("notaction-deny-all-users-not-using-mfa", cite(P_NOTACTION, "NotAction with Deny"),
         req("s3:GetObject", mfa_present=False), (DENY, "DenyAllUsersNotUsingMFA", "identity"),
         identity=(policy(allow("*")), policy(statement("Deny", None, "*", "DenyAllUsersNotUsingMFA",
                                                      {"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}},
                                                      NotAction="iam:*")))),
    Case("notaction-deny-mfa-signed-in", cite(P_NOTACTION, "NotAction with Deny"),
         req("s3:GetObject", mfa_present=True), YES,
         identity=(policy(allow("*")), policy(statement("Deny", None, "*", "DenyAllUsersNotUsingMFA",
                                                      {"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}},
                                                      NotAction="iam:*")))),
    Case("notaction-case-insensitive", cite(P_ACTION, _ACTION_TITLE), req("IAM:GetUser"), YES,
         identity=(policy(allow("*"), statement("Deny", None, "*", "D", NotAction="iam:*")),)),
]


# --- 3. Resource / NotResource ----------------------------------------------------------

def _resource(id_, pattern, resource, allowed):
    return Case(f"resource-{id_}", cite(P_RESOURCE, _RESOURCE_TITLE), req("s3:GetObject", resource),
                YES if allowed else NO, identity=(policy(allow("s3:*", pattern)),))


RESOURCES = [
    _resource("exact", OBJ, OBJ, True),
    _resource("case-sensitive", "arn:aws:s3:::MyBucket/*", OBJ, False),
    _resource("star", "*", OBJ, True),
    _resource("star-spans-slash", "arn:aws:s3:::mybucket/*", "arn:aws:s3:::mybucket/a/b/c.txt", True),
    _resource("prefix-does-not-match-bucket", "arn:aws:s3:::mybucket/*", BUCKET, False),
    _resource("question-mark", "arn:aws:s3:::mybucket/alice/notes.tx?", OBJ, True),
    _resource("question-mark-one-char", "arn:aws:s3:::mybucket/alice/notes.t?", OBJ, False),
    _resource("bucket-star-other-bucket", "arn:aws:s3:::mybucket*", "arn:aws:s3:::mybucket-logs/x", True),
    Case("resource-account-wildcard", cite(P_RESOURCE, _RESOURCE_TITLE),
         req("iam:GetUser", BOB), YES, identity=(policy(allow("iam:*", "arn:aws:iam::*:user/Bob")),)),
    Case("resource-other-account", cite(P_RESOURCE, _RESOURCE_TITLE),
         req("iam:GetUser", BOB), NO, identity=(policy(allow("iam:*", f"arn:aws:iam::{OTHER}:user/*")),)),
    Case("resource-region-wildcard", cite(P_RESOURCE, _RESOURCE_TITLE),
         req("ec2:StartInstances", "arn:aws:ec2:us-east-1:111122223333:instance/i-1"), YES,
         identity=(policy(allow("ec2:*", "arn:aws:ec2:*:*:instance/*")),)),
    Case("resource-list", cite(P_RESOURCE, _RESOURCE_TITLE), req("s3:ListBucket", BUCKET), YES,
         identity=(policy(allow("s3:*", [BUCKET, BUCKET + "/*"])),)),
    Case("resource-path-wildcard", cite(P_RESOURCE, _RESOURCE_TITLE),
         req("iam:GetUser", f"arn:aws:iam::{ACCT}:user/division_abc/subdivision_xyz/Bob"), YES,
         identity=(policy(allow("iam:*", f"arn:aws:iam::{ACCT}:user/division_abc/*")),)),
    Case("notresource-allow-other", cite(P_NOTRESOURCE, _NOTRESOURCE_TITLE), req("s3:GetObject", "arn:aws:s3:::other/x"), YES,
         identity=(policy(statement("Allow", "s3:*", None, "A", NotResource=[BUCKET, BUCKET + "/*"])),)),
    Case("notresource-allow-excluded", cite(P_NOTRESOURCE, _NOTRESOURCE_TITLE), req(), NO,
         identity=(policy(statement("Allow", "s3:*", None, "A", NotResource=[BUCKET, BUCKET + "/*"])),)),
    Case("notresource-deny-outside-bucket", cite(P_NOTRESOURCE, _NOTRESOURCE_TITLE),
         req("s3:GetObject", "arn:aws:s3:::other/x"), (DENY, "D", "identity"),
         identity=(policy(allow("s3:*"), statement("Deny", "s3:*", None, "D", NotResource=[BUCKET, BUCKET + "/*"])),)),
    Case("notresource-deny-inside-bucket", cite(P_NOTRESOURCE, _NOTRESOURCE_TITLE), req(), YES,
         identity=(policy(allow("s3:*"), statement("Deny", "s3:*", None, "D", NotResource=[BUCKET, BUCKET + "/*"])),)),
    Case("notresource-hrpayroll-outside-denied", cite(P_NOTRESOURCE, _NOTRESOURCE_TITLE),
         req("s3:GetObject", "arn:aws:s3:::HRBucket/Other/x"), (DENY, None, "identity"),
         identity=(policy(allow("s3:*")), policy({"Effect": "Deny", "Action": "s3:*", "NotResource": [
             "arn:aws:s3:::HRBucket/Payroll", "arn:aws:s3:::HRBucket/Payroll/*"]}))),
    Case("notresource-hrpayroll-inside-not-denied", cite(P_NOTRESOURCE, _NOTRESOURCE_TITLE),
         req("s3:GetObject", "arn:aws:s3:::HRBucket/Payroll/2026.csv"), YES,
         identity=(policy(allow("s3:*")), policy({"Effect": "Deny", "Action": "s3:*", "NotResource": [
             "arn:aws:s3:::HRBucket/Payroll", "arn:aws:s3:::HRBucket/Payroll/*"]}))),
    Case("notresource-wildcard", cite(P_NOTRESOURCE, _NOTRESOURCE_TITLE), req("s3:GetObject", "arn:aws:s3:::mybucket-2/x"), NO,
         identity=(policy(statement("Allow", "s3:*", None, "A", NotResource="arn:aws:s3:::mybucket*")),)),
]


# --- 4. condition operators: (operator, policy value, request value or None, matches) ----

_CONDITION_ROWS: list[tuple[str, str, str, Any, Any, bool]] = [
    # heading, key, operator, policy value, request value (None: absent), holds
    ("String condition operators", "aws:PrincipalTag/team", "StringEquals", "blue", "blue", True),
    ("String condition operators", "aws:PrincipalTag/team", "StringEquals", "blue", "Blue", False),
    ("String condition operators", "aws:PrincipalTag/team", "StringEquals", "blue", None, False),
    ("String condition operators", "aws:PrincipalTag/team", "StringEquals", ["red", "blue"], "blue", True),
    ("String condition operators", "aws:PrincipalTag/team", "StringEquals", "blue", "blue2", False),
    ("String condition operators", "aws:PrincipalTag/team", "StringNotEquals", "blue", "red", True),
    ("String condition operators", "aws:PrincipalTag/team", "StringNotEquals", "blue", "blue", False),
    ("String condition operators", "aws:PrincipalTag/team", "StringNotEquals", "blue", None, True),
    ("String condition operators", "aws:PrincipalTag/team", "StringNotEquals", ["red", "blue"], "blue", False),
    ("String condition operators", "aws:PrincipalTag/team", "StringNotEquals", ["red", "blue"], "green", True),
    ("String condition operators", "aws:PrincipalTag/team", "StringEqualsIgnoreCase", "BLUE", "blue", True),
    ("String condition operators", "aws:PrincipalTag/team", "StringEqualsIgnoreCase", "blue", "red", False),
    ("String condition operators", "aws:PrincipalTag/team", "StringEqualsIgnoreCase", "blue", None, False),
    ("String condition operators", "aws:PrincipalTag/team", "StringNotEqualsIgnoreCase", "BLUE", "blue", False),
    ("String condition operators", "aws:PrincipalTag/team", "StringNotEqualsIgnoreCase", "BLUE", "red", True),
    ("String condition operators", "aws:PrincipalTag/team", "StringNotEqualsIgnoreCase", "BLUE", None, True),
    ("String condition operators", "aws:PrincipalTag/team", "StringLike", "bl*", "blue", True),
    ("String condition operators", "aws:PrincipalTag/team", "StringLike", "b?ue", "blue", True),
    ("String condition operators", "aws:PrincipalTag/team", "StringLike", "b?e", "blue", False),
    ("String condition operators", "aws:PrincipalTag/team", "StringLike", "Bl*", "blue", False),
    ("String condition operators", "aws:PrincipalTag/team", "StringLike", "blue", "blue-green", False),
    ("String condition operators", "aws:PrincipalTag/team", "StringLike", "*", None, False),
    ("String condition operators", "aws:PrincipalTag/team", "StringNotLike", "bl*", "blue", False),
    ("String condition operators", "aws:PrincipalTag/team", "StringNotLike", "bl*", "red", True),
    ("String condition operators", "aws:PrincipalTag/team", "StringNotLike", "bl*", None, True),
    ("...IfExists condition operators", "aws:PrincipalTag/team", "StringEqualsIfExists", "blue", None, True),
    ("...IfExists condition operators", "aws:PrincipalTag/team", "StringEqualsIfExists", "blue", "red", False),
    ("...IfExists condition operators", "aws:PrincipalTag/team", "StringEqualsIfExists", "blue", "blue", True),
    ("...IfExists condition operators", "aws:PrincipalTag/team", "StringNotEqualsIfExists", "blue", None, True),
    ("...IfExists condition operators", "aws:PrincipalTag/team", "StringNotEqualsIfExists", "blue", "blue", False),
    ("...IfExists condition operators", "ec2:InstanceType", "StringLikeIfExists", ["t1.*", "t2.*", "m3.*"], None, True),
    ("...IfExists condition operators", "ec2:InstanceType", "StringLikeIfExists", ["t1.*", "t2.*", "m3.*"], "t2.micro", True),
    ("...IfExists condition operators", "ec2:InstanceType", "StringLikeIfExists", ["t1.*", "t2.*", "m3.*"], "m5.large", False),
    ("...IfExists condition operators", "ec2:InstanceType", "StringLike", ["t1.*", "t2.*", "m3.*"], None, False),
    ("...IfExists condition operators", "aws:PrincipalTag/team", "StringNotLikeIfExists", "bl*", None, True),
    ("Numeric condition operators", "s3:max-keys", "NumericEquals", "10", "10", True),
    ("Numeric condition operators", "s3:max-keys", "NumericEquals", "10", "10.0", True),
    ("Numeric condition operators", "s3:max-keys", "NumericEquals", "10", "11", False),
    ("Numeric condition operators", "s3:max-keys", "NumericEquals", "10", None, False),
    ("Numeric condition operators", "s3:max-keys", "NumericEquals", "10", "ten", False),
    ("Numeric condition operators", "s3:max-keys", "NumericNotEquals", "10", "10", False),
    ("Numeric condition operators", "s3:max-keys", "NumericNotEquals", "10", "9", True),
    ("Numeric condition operators", "s3:max-keys", "NumericNotEquals", "10", None, True),
    ("Numeric condition operators", "s3:max-keys", "NumericLessThan", "10", "9", True),
    ("Numeric condition operators", "s3:max-keys", "NumericLessThan", "10", "10", False),
    ("Numeric condition operators", "s3:max-keys", "NumericLessThan", "10", None, False),
    ("Numeric condition operators", "s3:max-keys", "NumericLessThanEquals", "10", "10", True),
    ("Numeric condition operators", "s3:max-keys", "NumericLessThanEquals", "10", "11", False),
    ("Numeric condition operators", "s3:max-keys", "NumericGreaterThan", "10", "11", True),
    ("Numeric condition operators", "s3:max-keys", "NumericGreaterThan", "10", "10", False),
    ("Numeric condition operators", "s3:max-keys", "NumericGreaterThanEquals", "10", "10", True),
    ("Numeric condition operators", "s3:max-keys", "NumericGreaterThanEquals", "10", "9", False),
    ("Numeric condition operators", "s3:max-keys", "NumericLessThan", "2.5", "2.25", True),
    ("...IfExists condition operators", "s3:max-keys", "NumericLessThanEqualsIfExists", "10", None, True),
    ("...IfExists condition operators", "s3:max-keys", "NumericLessThanEqualsIfExists", "10", "11", False),
    ("...IfExists condition operators", "s3:max-keys", "NumericGreaterThanIfExists", "10", None, True),
    ("Date condition operators", "aws:CurrentTime", "DateEquals", NOW, NOW, True),
    ("Date condition operators", "aws:CurrentTime", "DateEquals", NOW_EPOCH, NOW, True),
    ("Date condition operators", "aws:CurrentTime", "DateEquals", "2026-01-01T01:00:00+01:00", NOW, True),
    ("Date condition operators", "aws:CurrentTime", "DateEquals", "2026-01-02T00:00:00Z", NOW, False),
    ("Date condition operators", "aws:CurrentTime", "DateEquals", NOW, None, False),
    ("Date condition operators", "aws:CurrentTime", "DateNotEquals", NOW, NOW, False),
    ("Date condition operators", "aws:CurrentTime", "DateNotEquals", "2026-01-02T00:00:00Z", NOW, True),
    ("Date condition operators", "aws:CurrentTime", "DateNotEquals", NOW, None, True),
    ("Date condition operators", "aws:CurrentTime", "DateLessThan", "2026-06-01T00:00:00Z", NOW, True),
    ("Date condition operators", "aws:CurrentTime", "DateLessThan", NOW, NOW, False),
    ("Date condition operators", "aws:CurrentTime", "DateLessThan", "2025-06-01T00:00:00Z", NOW, False),
    ("Date condition operators", "aws:CurrentTime", "DateLessThanEquals", NOW, NOW, True),
    ("Date condition operators", "aws:CurrentTime", "DateGreaterThan", "2025-12-31T23:59:59Z", NOW, True),
    ("Date condition operators", "aws:CurrentTime", "DateGreaterThan", NOW, NOW, False),
    ("Date condition operators", "aws:CurrentTime", "DateGreaterThanEquals", NOW, NOW, True),
    ("Date condition operators", "aws:CurrentTime", "DateGreaterThanEquals", "2026-01-01T00:00:01Z", NOW, False),
    ("Date condition operators", "aws:TokenIssueTime", "DateGreaterThan", "2020-01-01T00:00:01Z", None, False),
    ("Date condition operators", "aws:EpochTime", "DateLessThan", "2026-06-01", NOW_EPOCH, True),
    ("...IfExists condition operators", "aws:TokenIssueTime", "DateLessThanIfExists", NOW, None, True),
    ("Boolean condition operators", "aws:SecureTransport", "Bool", "true", "true", True),
    ("Boolean condition operators", "aws:SecureTransport", "Bool", "true", "false", False),
    ("Boolean condition operators", "aws:SecureTransport", "Bool", "true", None, False),
    ("Boolean condition operators", "aws:SecureTransport", "Bool", "false", "false", True),
    ("Boolean condition operators", "aws:SecureTransport", "Bool", True, "true", True),
    ("...IfExists condition operators", "aws:SecureTransport", "BoolIfExists", "true", None, True),
    ("...IfExists condition operators", "aws:SecureTransport", "BoolIfExists", "true", "false", False),
    ("Binary condition operators", "rolecall:Blob", "BinaryEquals", "QmluYXJ5VmFsdWVJbkJhc2U2NA==",
     "QmluYXJ5VmFsdWVJbkJhc2U2NA==", True),
    ("Binary condition operators", "rolecall:Blob", "BinaryEquals", "QmluYXJ5VmFsdWVJbkJhc2U2NA==", "AAAA", False),
    ("Binary condition operators", "rolecall:Blob", "BinaryEquals", "QmluYXJ5VmFsdWVJbkJhc2U2NA==", None, False),
    ("IP address condition operators", "aws:SourceIp", "IpAddress", "203.0.113.0/24", "203.0.113.7", True),
    ("IP address condition operators", "aws:SourceIp", "IpAddress", "203.0.113.0/24", "198.51.100.1", False),
    ("IP address condition operators", "aws:SourceIp", "IpAddress", "203.0.113.0/24", None, False),
    ("IP address condition operators", "aws:SourceIp", "IpAddress", "203.0.113.7", "203.0.113.7", True),
    ("IP address condition operators", "aws:SourceIp", "IpAddress", "203.0.113.7", "203.0.113.8", False),
    ("IP address condition operators", "aws:SourceIp", "IpAddress", ["203.0.113.0/24", "2001:DB8:1234:5678::/64"],
     "2001:db8:1234:5678::1", True),
    ("IP address condition operators", "aws:SourceIp", "IpAddress", "2001:DB8:1234:5678::/64", "2001:db8:1234:5679::1", False),
    ("IP address condition operators", "aws:SourceIp", "NotIpAddress", "203.0.113.0/24", "203.0.113.7", False),
    ("IP address condition operators", "aws:SourceIp", "NotIpAddress", "203.0.113.0/24", "198.51.100.1", True),
    ("IP address condition operators", "aws:SourceIp", "NotIpAddress", "203.0.113.0/24", None, True),
    ("IP address condition operators", "aws:SourceIp", "IpAddress", "203.0.113.0/24", "not-an-address", False),
    ("IP address condition operators", "aws:SourceIp", "IpAddress", "0.0.0.0/0", "2001:db8::1", False),
    ("IP address condition operators", "aws:SourceIp", "NotIpAddress", "2001:DB8::/32", "203.0.113.7", True),
    ("IP address condition operators", "aws:SourceIp", "IpAddress", "::/0", "2001:db8::1", True),
    ("...IfExists condition operators", "aws:SourceIp", "IpAddressIfExists", "203.0.113.0/24", None, True),
    ("Amazon Resource Name (ARN) condition operators", "aws:SourceArn", "ArnEquals",
     f"arn:aws:sns:us-east-2:{ACCT}:topic", f"arn:aws:sns:us-east-2:{ACCT}:topic", True),
    ("Amazon Resource Name (ARN) condition operators", "aws:SourceArn", "ArnEquals",
     f"arn:aws:sns:us-east-2:{ACCT}:topic", f"arn:aws:sns:us-east-2:{ACCT}:other", False),
    ("Amazon Resource Name (ARN) condition operators", "aws:SourceArn", "ArnEquals",
     f"arn:aws:sns:us-east-2:{ACCT}:topic", None, False),
    ("Amazon Resource Name (ARN) condition operators", "aws:SourceArn", "ArnEquals",
     f"arn:aws:sns:*:{ACCT}:topic", f"arn:aws:sns:us-east-2:{ACCT}:topic", True),
    ("Amazon Resource Name (ARN) condition operators", "aws:SourceArn", "ArnLike",
     f"arn:aws:sns:*:{ACCT}:*", f"arn:aws:sns:us-east-2:{ACCT}:topic", True),
    ("Amazon Resource Name (ARN) condition operators", "aws:SourceArn", "ArnLike",
     f"arn:aws:sns:*:{ACCT}:*", f"arn:aws:SNS:us-east-2:{ACCT}:topic", False),
    ("Amazon Resource Name (ARN) condition operators", "aws:SourceArn", "ArnLike",
     f"arn:aws:someservice:*:{ACCT}:finance/*",
     f"arn:aws:someservice:us-east-2:{OTHER}:store/abc:{ACCT}:finance/document.txt", False),
    ("Amazon Resource Name (ARN) condition operators", "aws:SourceArn", "StringLike",
     f"arn:aws:someservice:*:{ACCT}:finance/*",
     f"arn:aws:someservice:us-east-2:{OTHER}:store/abc:{ACCT}:finance/document.txt", True),
    ("Amazon Resource Name (ARN) condition operators", "aws:SourceArn", "ArnLike",
     "arn:aws:sns:us-east-?:*:topic", f"arn:aws:sns:us-east-2:{ACCT}:topic", True),
    ("Amazon Resource Name (ARN) condition operators", "aws:SourceArn", "ArnNotEquals",
     f"arn:aws:sns:us-east-2:{ACCT}:topic", f"arn:aws:sns:us-east-2:{ACCT}:topic", False),
    ("Amazon Resource Name (ARN) condition operators", "aws:SourceArn", "ArnNotEquals",
     f"arn:aws:sns:us-east-2:{ACCT}:topic", f"arn:aws:sns:us-east-2:{ACCT}:other", True),
    ("Amazon Resource Name (ARN) condition operators", "aws:SourceArn", "ArnNotEquals",
     f"arn:aws:sns:us-east-2:{ACCT}:topic", None, True),
    ("Amazon Resource Name (ARN) condition operators", "aws:SourceArn", "ArnNotLike",
     "arn:aws:sns:*:*:*", f"arn:aws:sns:us-east-2:{ACCT}:topic", False),
    ("Amazon Resource Name (ARN) condition operators", "aws:SourceArn", "ArnNotLike",
     "arn:aws:sns:*:*:*", f"arn:aws:sqs:us-east-2:{ACCT}:queue", True),
    ("...IfExists condition operators", "aws:SourceArn", "ArnLikeIfExists", "arn:aws:sns:*:*:*", None, True),
    ("...IfExists condition operators", "rolecall:Blob", "BinaryEqualsIfExists", "QmluYXJ5VmFsdWVJbkJhc2U2NA==", None, True),
    ("...IfExists condition operators", "rolecall:Blob", "BinaryEqualsIfExists", "QmluYXJ5VmFsdWVJbkJhc2U2NA==", "AAAA", False),
    ("...IfExists condition operators", "s3:max-keys", "NumericNotEqualsIfExists", "10", "10", False),
    ("...IfExists condition operators", "s3:max-keys", "NumericNotEqualsIfExists", "10", None, True),
    ("...IfExists condition operators", "aws:CurrentTime", "DateNotEqualsIfExists", NOW, None, True),
    ("...IfExists condition operators", "aws:CurrentTime", "DateNotEqualsIfExists", NOW, NOW, False),
    ("...IfExists condition operators", "aws:SourceIp", "NotIpAddressIfExists", "203.0.113.0/24", None, True),
    ("...IfExists condition operators", "aws:SourceIp", "NotIpAddressIfExists", "203.0.113.0/24", "203.0.113.7", False),
    ("...IfExists condition operators", "aws:SourceArn", "ArnNotLikeIfExists", "arn:aws:sns:*:*:*", None, True),
    ("...IfExists condition operators", "aws:SourceArn", "ArnNotLikeIfExists", "arn:aws:sns:*:*:*",
     f"arn:aws:sns:us-east-2:{ACCT}:topic", False),
    ("...IfExists condition operators", "aws:SecureTransport", "BoolIfExists", "false", "false", True),
    ("...IfExists condition operators", "aws:PrincipalTag/team", "StringEqualsIgnoreCaseIfExists", "BLUE", "blue", True),
    ("...IfExists condition operators", "aws:PrincipalTag/team", "StringNotEqualsIgnoreCaseIfExists", "BLUE", None, True),
    ("Condition operator to check existence of condition keys", "aws:TokenIssueTime", "Null", "true", None, True),
    ("Condition operator to check existence of condition keys", "aws:TokenIssueTime", "Null", "true", NOW, False),
    ("Condition operator to check existence of condition keys", "aws:TokenIssueTime", "Null", "false", NOW, True),
    ("Condition operator to check existence of condition keys", "aws:TokenIssueTime", "Null", "false", None, False),
    ("Condition operator to check existence of condition keys", "aws:TokenIssueTime", "Null", True, None, True),
]


def _condition_case(row: tuple) -> Case:
    heading, key, operator, value, request_value, holds = row
    shown = "absent" if request_value is None else request_value
    value_text = "|".join(map(str, value)) if isinstance(value, list) else str(value)
    name = f"cond-{operator}-{key}-{value_text}-vs-{shown}"
    extra = {} if request_value is None else {key: request_value}
    return Case(name, cite(P_OPS, heading), req("s3:ListBucket", BUCKET, extra=extra), YES if holds else NO,
                identity=(policy(allow("s3:*", condition={operator: {key: value}})),))


CONDITIONS = [_condition_case(row) for row in _CONDITION_ROWS] + [
    Case("cond-ifexists-deny-negated-missing-key-denies", cite(P_OPS, "...IfExists condition operators"),
         req(), (DENY, "D", "identity"),
         identity=(policy(allow("s3:*"), deny(condition={"StringNotEqualsIfExists": {"aws:PrincipalTag/team": "blue"}})),)),
    Case("cond-keys-under-one-operator-and", cite(P_CONDITION, "IAM JSON policy elements: Condition"),
         req(**keys(aws__PrincipalTag_S_team="blue", aws__SourceIp="203.0.113.7")), NO,
         identity=(policy(allow(condition={"StringEquals": {"aws:PrincipalTag/team": "blue",
                                                            "aws:PrincipalTag/cost": "1"}})),)),
    Case("cond-operators-and", cite(P_CONDITION, "IAM JSON policy elements: Condition"),
         req(**keys(aws__PrincipalTag_S_team="blue", aws__SourceIp="198.51.100.1")), NO,
         identity=(policy(allow(condition={"StringEquals": {"aws:PrincipalTag/team": "blue"},
                                           "IpAddress": {"aws:SourceIp": "203.0.113.0/24"}})),)),
    Case("cond-operators-and-all-true", cite(P_CONDITION, "IAM JSON policy elements: Condition"),
         req(**keys(aws__PrincipalTag_S_team="blue", aws__SourceIp="203.0.113.9")), YES,
         identity=(policy(allow(condition={"StringEquals": {"aws:PrincipalTag/team": "blue"},
                                           "IpAddress": {"aws:SourceIp": "203.0.113.0/24"}})),)),
    Case("cond-key-name-case-insensitive", cite(P_VARS, "Information available in all requests"),
         req(**keys(aws__PrincipalTag_S_team="blue")), YES,
         identity=(policy(allow(condition={"StringEquals": {"AWS:PRINCIPALTAG/TEAM": "blue"}})),)),
    Case("cond-tag-value-list-example", cite(P_VARS, "Condition element"),
         req("iam:GetUser", BOB, **keys(iam__ResourceTag_S_costCenter="67890")), YES,
         identity=(policy(allow("iam:*user*", condition={"StringLike": {"iam:ResourceTag/costCenter": ["12345", "67890"]}})),)),
    Case("cond-tag-value-absent-example", cite(P_VARS, "Condition element"),
         req("iam:GetUser", BOB), NO,
         identity=(policy(allow("iam:*user*", condition={"StringLike": {"iam:ResourceTag/costCenter": ["12345", "67890"]}})),)),
]


# --- 5. multivalued keys: ForAnyValue / ForAllValues ------------------------------------

_ATTRS = "dynamodb:requestedAttributes"
_THREAD = "arn:aws:dynamodb:us-east-1:111122223333:table/Thread"


def _multi(id_, operator, values, request_values, holds, heading="Evaluation Logic for Condition Set Operators"):
    extra = {} if request_values is None else {_ATTRS: request_values}
    return Case(f"multi-{id_}", cite(P_MULTI, heading), req("dynamodb:GetItem", _THREAD, extra=extra),
                YES if holds else NO,
                identity=(policy(allow("dynamodb:GetItem", _THREAD, condition={operator: {_ATTRS: values}})),))


_ALLOWED_ATTRS = ["PostDateTime", "Message", "Tags"]
MULTIVALUE = [
    _multi("forall-all-listed", "ForAllValues:StringLike", _ALLOWED_ATTRS, ["PostDateTime", "Message"], True,
           "Examples of Condition Set Operators"),
    _multi("forall-one-unlisted", "ForAllValues:StringLike", _ALLOWED_ATTRS, ["PostDateTime", "UserName"], False),
    _multi("forall-with-id", "ForAllValues:StringLike", _ALLOWED_ATTRS, ["ID", "Message"], False,
           "Examples of Condition Set Operators"),
    _multi("forall-absent-true", "ForAllValues:StringLike", _ALLOWED_ATTRS, None, True, "Introduction"),
    _multi("forall-empty-true", "ForAllValues:StringLike", _ALLOWED_ATTRS, [], True, "Introduction"),
    _multi("forany-one-listed", "ForAnyValue:StringLike", _ALLOWED_ATTRS, ["UserName", "Message"], True),
    _multi("forany-none-listed", "ForAnyValue:StringLike", _ALLOWED_ATTRS, ["UserName", "ID"], False),
    _multi("forany-absent-false", "ForAnyValue:StringLike", _ALLOWED_ATTRS, None, False, "Introduction"),
    _multi("forany-empty-false", "ForAnyValue:StringLike", _ALLOWED_ATTRS, [], False, "Introduction"),
    _multi("forall-equals", "ForAllValues:StringEquals", ["a", "b"], ["a", "b"], True),
    _multi("forall-equals-extra", "ForAllValues:StringEquals", ["a", "b"], ["a", "c"], False),
    _multi("forall-equals-single", "ForAllValues:StringEquals", ["a", "b"], "a", True),
    _multi("forany-equals", "ForAnyValue:StringEquals", ["a", "b"], ["c", "b"], True),
    _multi("forany-wildcard", "ForAnyValue:StringLike", ["Post*"], ["ID", "PostDateTime"], True),
    _multi("forall-wildcard", "ForAllValues:StringLike", ["Post*", "Message"], ["PostDateTime", "Message"], True),
    _multi("forall-case-sensitive", "ForAllValues:StringEquals", ["Message"], ["message"], False),
    _multi("forall-ignore-case", "ForAllValues:StringEqualsIgnoreCase", ["MESSAGE"], ["message"], True),
    _multi("forany-notequals-one-unlisted", "ForAnyValue:StringNotEquals", ["ID"], ["ID", "Message"], True),
    _multi("forany-notequals-all-listed", "ForAnyValue:StringNotEquals", ["ID"], ["ID"], False),
    _multi("forall-notequals-none-listed", "ForAllValues:StringNotEquals", ["ID", "UserName"], ["Message", "Tags"], True),
    _multi("forall-notequals-one-listed", "ForAllValues:StringNotEquals", ["ID", "UserName"], ["Message", "ID"], False),
    _multi("forall-notequals-absent", "ForAllValues:StringNotEquals", ["ID"], None, True, "Introduction"),
    Case("multi-forany-deny-matches", cite(P_MULTI, "Examples of Condition Set Operators"),
         req("dynamodb:PutItem", _THREAD, extra={_ATTRS: ["UserName", "Message", "PostDateTime"]}), (DENY, "D", "identity"),
         identity=(policy(allow("dynamodb:*", _THREAD),
                          deny("dynamodb:PutItem", _THREAD, condition={"ForAnyValue:StringLike": {_ATTRS: ["ID", "PostDateTime"]}})),)),
    Case("multi-forany-deny-no-match", cite(P_MULTI, "Examples of Condition Set Operators"),
         req("dynamodb:PutItem", _THREAD, extra={_ATTRS: ["UserName"]}), YES,
         identity=(policy(allow("dynamodb:*", _THREAD),
                          deny("dynamodb:PutItem", _THREAD, condition={"ForAnyValue:StringLike": {_ATTRS: ["ID", "PostDateTime"]}})),)),
]


# --- 6. policy variables ----------------------------------------------------------------

def _home(version="2012-10-17"):
    return policy(allow(["s3:GetObject", "s3:PutObject"], "arn:aws:s3:::mybucket/${aws:username}/*"), version=version)


VARIABLES = [
    Case("var-username-own-home", cite(P_VARS, "Resource element"), req(), YES, identity=(_home(),)),
    Case("var-username-other-home", cite(P_VARS, "Resource element"), req(resource="arn:aws:s3:::mybucket/bob/x"), NO,
         identity=(_home(),)),
    Case("var-username-absent-for-role-session", cite(P_VARS, "Principal key values"),
         req(principal=SESSION, role_arn=ROLE, resource="arn:aws:s3:::mybucket/s1/x"), NO, identity=(_home(),)),
    Case("var-version-2008-literal", cite(P_VERSION, "IAM JSON policy elements: Version"), req(), NO, identity=(_home("2008-10-17"),)),
    Case("var-version-2008-matches-literal-text", cite(P_VERSION, "IAM JSON policy elements: Version"),
         req(resource="arn:aws:s3:::mybucket/${aws:username}/x"), YES, identity=(_home("2008-10-17"),)),
    Case("var-no-version-literal", cite(P_VERSION, "IAM JSON policy elements: Version"), req(), NO, identity=(_home(None),)),
    Case("var-prefix-condition", cite(P_VARS, "Resource element"),
         req("s3:ListBucket", BUCKET, extra={"s3:prefix": "home/alice/"}), YES,
         identity=(policy(allow("s3:ListBucket", BUCKET, condition={"StringLike": {"s3:prefix": ["", "home/", "home/${aws:username}/"]}})),)),
    Case("var-prefix-condition-other-user", cite(P_VARS, "Resource element"),
         req("s3:ListBucket", BUCKET, extra={"s3:prefix": "home/bob/"}), NO,
         identity=(policy(allow("s3:ListBucket", BUCKET, condition={"StringLike": {"s3:prefix": ["", "home/", "home/${aws:username}/"]}})),)),
    Case("var-prefix-condition-root", cite(P_OPS, "String condition operators"),
         req("s3:ListBucket", BUCKET, extra={"s3:prefix": "home/"}), YES,
         identity=(policy(allow("s3:ListBucket", BUCKET, condition={"StringLike": {"s3:prefix": ["", "home/", "home/${aws:username}/"]}})),)),
    Case("var-queue-suffix", cite(P_VARS, "Resource element"),
         req("sqs:SendMessage", f"arn:aws:sqs:us-east-2:{ACCT}:alice-queue"), (ALLOW, "AllQueueActions", "identity"),
         identity=(policy(allow("sqs:ListQueues", "*", "ListForConsole"),
                          allow("sqs:*", "arn:aws:sqs:us-east-2:*:${aws:username}-queue", "AllQueueActions")),)),
    Case("var-queue-suffix-other", cite(P_VARS, "Resource element"),
         req("sqs:SendMessage", f"arn:aws:sqs:us-east-2:{ACCT}:bob-queue"), NO,
         identity=(policy(allow("sqs:ListQueues", "*", "ListForConsole"),
                          allow("sqs:*", "arn:aws:sqs:us-east-2:*:${aws:username}-queue", "AllQueueActions")),)),
    Case("var-principal-tag", cite(P_VARS, "Resource element"),
         req(resource="arn:aws:s3:::bucket/hr", principal_tags={"department": "hr"}), YES,
         identity=(policy(allow(resource="arn:aws:s3:::bucket/${aws:PrincipalTag/department}")),)),
    Case("var-principal-tag-absent", cite(P_VARS, "Resource element"), req(resource="arn:aws:s3:::bucket/hr"), NO,
         identity=(policy(allow(resource="arn:aws:s3:::bucket/${aws:PrincipalTag/department}")),)),
    Case("var-default-used", cite(P_VARS, "Specifying default values"),
         req(resource="arn:aws:s3:::bucket/anonymous/x"), YES,
         identity=(policy(allow(resource="arn:aws:s3:::bucket/${aws:userid, 'anonymous'}/*")),)),
    Case("var-default-not-used-when-present", cite(P_VARS, "Specifying default values"),
         req(resource="arn:aws:s3:::bucket/anonymous/x", user_id="AIDAEXAMPLE"), NO,
         identity=(policy(allow(resource="arn:aws:s3:::bucket/${aws:userid, 'anonymous'}/*")),)),
    Case("var-default-value-present", cite(P_VARS, "Specifying default values"),
         req(resource="arn:aws:s3:::bucket/AIDAEXAMPLE/x", user_id="AIDAEXAMPLE"), YES,
         identity=(policy(allow(resource="arn:aws:s3:::bucket/${aws:userid, 'anonymous'}/*")),)),
    Case("var-default-in-condition", cite(P_VARS, "Specifying default values"),
         req(**keys(aws__Resource="arn:aws:s3:::/bucket/anonymous")), YES,
         identity=(policy(allow(condition={"StringEquals": {"aws:Resource": "arn:aws:s3:::/bucket/${aws:userid, 'anonymous'}"}})),)),
    Case("var-special-star", cite(P_VARS, "Special characters"), req(resource="arn:aws:s3:::bucket/*"), YES,
         identity=(policy(allow(resource="arn:aws:s3:::bucket/${*}")),)),
    Case("var-special-star-is-literal", cite(P_VARS, "Special characters"), req(resource="arn:aws:s3:::bucket/x"), NO,
         identity=(policy(allow(resource="arn:aws:s3:::bucket/${*}")),)),
    Case("var-special-question", cite(P_VARS, "Special characters"), req(resource="arn:aws:s3:::bucket/what?"), YES,
         identity=(policy(allow(resource="arn:aws:s3:::bucket/what${?}")),)),
    Case("var-special-question-is-literal", cite(P_VARS, "Special characters"), req(resource="arn:aws:s3:::bucket/whatx"), NO,
         identity=(policy(allow(resource="arn:aws:s3:::bucket/what${?}")),)),
    Case("var-special-dollar", cite(P_VARS, "Special characters"), req(resource="arn:aws:s3:::bucket/${aws:username}"), YES,
         identity=(policy(allow(resource="arn:aws:s3:::bucket/${$}{aws:username}")),)),
    Case("var-special-dollar-not-expanded", cite(P_VARS, "Special characters"), req(resource="arn:aws:s3:::bucket/alice"), NO,
         identity=(policy(allow(resource="arn:aws:s3:::bucket/${$}{aws:username}")),)),
    Case("var-special-star-in-condition", cite(P_VARS, "Special characters"),
         req(**keys(s3__prefix="a*b")), YES,
         identity=(policy(allow(condition={"StringLike": {"s3:prefix": "a${*}b"}})),)),
    Case("var-special-star-in-condition-literal", cite(P_VARS, "Special characters"),
         req(**keys(s3__prefix="axxb")), NO,
         identity=(policy(allow(condition={"StringLike": {"s3:prefix": "a${*}b"}})),)),
    Case("var-key-name-case-insensitive", cite(P_VARS, "Information available in all requests"), req(), YES,
         identity=(policy(allow(resource="arn:aws:s3:::mybucket/${AWS:UserName}/*")),)),
    Case("var-arn-condition", cite(P_VARS, "Condition element"), req(), YES,
         identity=(policy(allow(condition={"ArnEquals": {"aws:PrincipalArn": f"arn:aws:iam::{ACCT}:user/${{aws:username}}"}})),)),
    Case("var-arn-condition-mismatch", cite(P_VARS, "Condition element"), req(principal=BOB, extra={"aws:username": "alice"}), NO,
         identity=(policy(allow(condition={"ArnEquals": {"aws:PrincipalArn": f"arn:aws:iam::{ACCT}:user/${{aws:username}}"}})),)),
    Case("var-notresource", cite(P_VARS, "Resource element"), req("iam:DeleteUser", ALICE), NO,
         identity=(policy(statement("Allow", "iam:*", None, "A", NotResource=f"arn:aws:iam::{ACCT}:user/${{aws:username}}")),)),
    Case("var-notresource-other", cite(P_VARS, "Resource element"), req("iam:DeleteUser", BOB), YES,
         identity=(policy(statement("Allow", "iam:*", None, "A", NotResource=f"arn:aws:iam::{ACCT}:user/${{aws:username}}")),)),
    Case("var-not-before-fifth-colon", cite(P_VARS, "Resource element"), req("iam:GetUser", ALICE), NO,
         identity=(policy(allow("iam:*", "arn:aws:iam::${aws:PrincipalAccount}:user/alice")),)),
    Case("var-after-fifth-colon-with-colons", cite(P_VARS, "Resource element"),
         req("logs:PutLogEvents", f"arn:aws:logs:us-east-1:{ACCT}:log-group:/home/alice:log-stream:x"), YES,
         identity=(policy(allow("logs:*", f"arn:aws:logs:*:{ACCT}:log-group:/home/${{aws:username}}:*")),)),
    Case("var-manage-own-keys", cite(P_VARS, "Introduction"), req("iam:CreateAccessKey", ALICE), YES,
         identity=(policy(allow("iam:*AccessKey*", f"arn:aws:iam::{ACCT}:user/${{aws:username}}")),)),
]


# --- 7. condition keys ------------------------------------------------------------------

CONDITION_KEYS = [
    Case("key-principaltype-user", cite(P_KEYS, "aws:PrincipalType"), req(), YES,
         identity=(policy(allow(condition={"StringEquals": {"aws:PrincipalType": "User"}})),)),
    Case("key-principaltype-assumed-role", cite(P_KEYS, "aws:PrincipalType"), req(principal=SESSION, role_arn=ROLE), YES,
         identity=(policy(allow(condition={"StringEquals": {"aws:PrincipalType": "AssumedRole"}})),)),
    Case("key-principalarn-role-not-session", cite(P_KEYS, "aws:PrincipalArn"), req(principal=SESSION, role_arn=ROLE), YES,
         identity=(policy(allow(condition={"ArnEquals": {"aws:PrincipalArn": ROLE}})),)),
    Case("key-principalarn-session-arn-no-match", cite(P_KEYS, "aws:PrincipalArn"), req(principal=SESSION, role_arn=ROLE), NO,
         identity=(policy(allow(condition={"ArnEquals": {"aws:PrincipalArn": SESSION}})),)),
    Case("key-principalaccount", cite(P_KEYS, "aws:PrincipalAccount"), req(), YES,
         identity=(policy(allow(condition={"StringEquals": {"aws:PrincipalAccount": ACCT}})),)),
    Case("key-username-user", cite(P_KEYS, "aws:username"), req(), YES,
         identity=(policy(allow(condition={"StringEquals": {"aws:username": "alice"}})),)),
    Case("key-username-absent-for-role", cite(P_KEYS, "aws:username"), req(principal=SESSION, role_arn=ROLE), NO,
         identity=(policy(allow(condition={"StringLike": {"aws:username": "*"}})),)),
    Case("key-userid-role-session", cite(P_KEYS, "aws:userid"),
         req(principal=SESSION, role_arn=ROLE, user_id="AROAEXAMPLE:s1"), YES,
         identity=(policy(allow(condition={"StringLike": {"aws:userid": "AROAEXAMPLE:*"}})),)),
    Case("key-principaltag", cite(P_KEYS, "aws:PrincipalTag/tag-key"), req(principal_tags={"job-category": "iamuser-admin"}), YES,
         identity=(policy(allow(condition={"StringEquals": {"aws:PrincipalTag/job-category": "iamuser-admin"}})),)),
    Case("key-principaltag-absent", cite(P_KEYS, "aws:PrincipalTag/tag-key"), req(), NO,
         identity=(policy(allow(condition={"StringEquals": {"aws:PrincipalTag/job-category": "iamuser-admin"}})),)),
    Case("key-requestedregion", cite(P_KEYS, "aws:RequestedRegion"), req(requested_region="eu-west-1"), (DENY, "D", "identity"),
         identity=(policy(allow("*"), deny("*", condition={"StringNotEquals": {"aws:RequestedRegion": ["us-east-1", "us-west-2"]}})),)),
    Case("key-requestedregion-allowed", cite(P_KEYS, "aws:RequestedRegion"), req(requested_region="us-west-2"), YES,
         identity=(policy(allow("*"), deny("*", condition={"StringNotEquals": {"aws:RequestedRegion": ["us-east-1", "us-west-2"]}})),)),
    Case("key-sourceidentity", cite(P_KEYS, "aws:SourceIdentity"),
         req(principal=SESSION, role_arn=ROLE, source_identity="alice-laptop"), YES,
         identity=(policy(allow(condition={"StringLike": {"aws:SourceIdentity": "alice-*"}})),)),
    Case("key-tokenissuetime-absent-long-term", cite(P_KEYS, "aws:TokenIssueTime"), req(), YES,
         identity=(policy(allow(condition={"Null": {"aws:TokenIssueTime": "true"}})),)),
    Case("key-currenttime-window", cite(P_KEYS, "aws:CurrentTime"), req(now=dt.datetime(2026, 1, 1, 12, tzinfo=dt.timezone.utc)), YES,
         identity=(policy(allow(condition={"DateGreaterThan": {"aws:CurrentTime": "2026-01-01T00:00:00Z"},
                                           "DateLessThan": {"aws:CurrentTime": "2026-12-31T23:59:59Z"}})),)),
    Case("key-epochtime", cite(P_KEYS, "aws:EpochTime"), req(now=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)), YES,
         identity=(policy(allow(condition={"DateEquals": {"aws:EpochTime": NOW_EPOCH}})),)),
]


# --- 8. MFA keys: absent for long-term keys, false without MFA ---------------------------

_MFA_TRUE = {"Bool": {"aws:MultiFactorAuthPresent": "true"}}
_MFA_FALSE = {"Bool": {"aws:MultiFactorAuthPresent": "false"}}
_MFA_FALSE_IFEXISTS = {"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}}

MFA = [
    Case("mfa-bool-true-with-mfa", cite(P_KEYS, "aws:MultiFactorAuthPresent"), req(mfa_present=True), YES,
         identity=(policy(allow(condition=_MFA_TRUE)),)),
    Case("mfa-bool-true-temp-without-mfa", cite(P_KEYS, "aws:MultiFactorAuthPresent"), req(mfa_present=False), NO,
         identity=(policy(allow(condition=_MFA_TRUE)),)),
    Case("mfa-bool-true-long-term-key", cite(P_KEYS, "aws:MultiFactorAuthPresent"), req(), NO,
         identity=(policy(allow(condition=_MFA_TRUE)),)),
    Case("mfa-deny-bool-false-misses-long-term-key", cite(P_KEYS, "aws:MultiFactorAuthPresent"), req(), YES,
         identity=(policy(allow(), deny(condition=_MFA_FALSE)),)),
    Case("mfa-deny-bool-false-temp-without-mfa", cite(P_KEYS, "aws:MultiFactorAuthPresent"), req(mfa_present=False),
         (DENY, "D", "identity"), identity=(policy(allow(), deny(condition=_MFA_FALSE)),)),
    Case("mfa-deny-boolifexists-long-term-key", cite(P_KEYS, "aws:MultiFactorAuthPresent"), req(), (DENY, "D", "identity"),
         identity=(policy(allow(), deny(condition=_MFA_FALSE_IFEXISTS)),)),
    Case("mfa-deny-boolifexists-temp-without-mfa", cite(P_KEYS, "aws:MultiFactorAuthPresent"), req(mfa_present=False),
         (DENY, "D", "identity"), identity=(policy(allow(), deny(condition=_MFA_FALSE_IFEXISTS)),)),
    Case("mfa-deny-boolifexists-with-mfa", cite(P_KEYS, "aws:MultiFactorAuthPresent"), req(mfa_present=True), YES,
         identity=(policy(allow(), deny(condition=_MFA_FALSE_IFEXISTS)),)),
    Case("mfa-null-true-long-term-key", cite(P_KEYS, "aws:MultiFactorAuthPresent"), req(), (DENY, "D", "identity"),
         identity=(policy(allow(), deny(condition={"Null": {"aws:MultiFactorAuthPresent": "true"}})),)),
    Case("mfa-age-fresh", cite(P_KEYS, "aws:MultiFactorAuthAge"), req(mfa_present=True, mfa_age_seconds=100), YES,
         identity=(policy(allow(condition={"NumericLessThan": {"aws:MultiFactorAuthAge": "3600"}})),)),
    Case("mfa-age-stale", cite(P_KEYS, "aws:MultiFactorAuthAge"), req(mfa_present=True, mfa_age_seconds=7200), NO,
         identity=(policy(allow(condition={"NumericLessThan": {"aws:MultiFactorAuthAge": "3600"}})),)),
    Case("mfa-age-absent-long-term", cite(P_KEYS, "aws:MultiFactorAuthAge"), req(), NO,
         identity=(policy(allow(condition={"NumericLessThan": {"aws:MultiFactorAuthAge": "3600"}})),)),
    Case("mfa-require-for-api-stop", cite(P_MFA, "Scenario: MFA protection for access to API operations in the current account"),
         req("ec2:StopInstances", "arn:aws:ec2:us-east-1:111122223333:instance/i-1", mfa_present=False), NO,
         identity=(policy(allow(["ec2:StopInstances", "ec2:TerminateInstances"], "*", "A", condition=_MFA_TRUE)),)),
    Case("mfa-require-for-api-with-mfa", cite(P_MFA, "Scenario: MFA protection for access to API operations in the current account"),
         req("ec2:StopInstances", "arn:aws:ec2:us-east-1:111122223333:instance/i-1", mfa_present=True), YES,
         identity=(policy(allow(["ec2:StopInstances", "ec2:TerminateInstances"], "*", "A", condition=_MFA_TRUE)),)),
    Case("mfa-self-service-allowed-without-mfa", cite(P_KEYS, "aws:MultiFactorAuthPresent"),
         req("iam:ListMFADevices", ALICE), YES,
         identity=(policy(allow("*"), statement("Deny", None, "*", "D", _MFA_FALSE_IFEXISTS,
                                                NotAction=["iam:*MFA*", "sts:GetSessionToken"])),)),
]


# --- 9. revoking sessions: the AWSRevokeOlderSessions policy ------------------------------

_REVOKE = policy({"Effect": "Deny", "Action": ["*"], "Resource": ["*"],
                  "Condition": {"DateLessThan": {"aws:TokenIssueTime": "2026-01-01T12:00:00Z"}}})
_ROLE_PERMS = policy(allow("*"))
_T = dt.timezone.utc

REVOCATION = [
    Case("revoke-older-session-denied", cite(P_REVOKE, "Revoking Session Permissions"),
         req(principal=SESSION, role_arn=ROLE, token_issued_at=dt.datetime(2026, 1, 1, 11, tzinfo=_T)),
         (DENY, None, "identity"), identity=(_ROLE_PERMS, _REVOKE)),
    Case("revoke-newer-session-allowed", cite(P_REVOKE, "Revoking Session Permissions"),
         req(principal=SESSION, role_arn=ROLE, token_issued_at=dt.datetime(2026, 1, 1, 13, tzinfo=_T)),
         YES, identity=(_ROLE_PERMS, _REVOKE)),
    Case("revoke-session-issued-at-revocation-allowed", cite(P_REVOKE, "Revoking Session Permissions"),
         req(principal=SESSION, role_arn=ROLE, token_issued_at=dt.datetime(2026, 1, 1, 12, tzinfo=_T)),
         YES, identity=(_ROLE_PERMS, _REVOKE)),
    Case("revoke-long-term-key-unaffected", cite(P_OPS, "Date condition operators"), req(), YES,
         identity=(_ROLE_PERMS, _REVOKE)),
    Case("revoke-user-temporary-credentials", cite(P_OPS, "Date condition operators"),
         req(token_issued_at=dt.datetime(2025, 12, 31, tzinfo=_T), mfa_present=False), (DENY, None, "identity"),
         identity=(_ROLE_PERMS, _REVOKE)),
]


# --- 10. session policies ----------------------------------------------------------------

_SESSION_REQ = {"principal": SESSION, "role_arn": ROLE}

SESSION_POLICIES = [
    Case("session-intersection-both-allow", cite(P_POLICIES, "Session policies"), req(**_SESSION_REQ), YES,
         identity=(policy(allow("s3:*")),), session=(policy(allow(sid="S")),)),
    Case("session-intersection-session-lacks", cite(P_POLICIES, "Session policies"), req("s3:PutObject", **_SESSION_REQ),
         (NONE, None, "session"), identity=(policy(allow("s3:*")),), session=(policy(allow(sid="S")),)),
    Case("session-never-widens", cite(P_POLICIES, "Session policies"), req("iam:GetUser", ALICE, **_SESSION_REQ), NO,
         identity=(policy(allow("s3:*")),), session=(policy(allow("*", sid="S")),)),
    Case("session-several-union", cite(P_POLICIES, "Session policies"), req("s3:PutObject", **_SESSION_REQ), YES,
         identity=(policy(allow("s3:*")),), session=(policy(allow(sid="S1")), policy(allow("s3:PutObject", sid="S2")))),
    Case("session-none-passed", cite(P_POLICIES, "Session policies"), req("s3:PutObject", **_SESSION_REQ), YES,
         identity=(policy(allow("s3:*")),)),
    Case("session-condition", cite(P_POLICIES, "Session policies"), req(**_SESSION_REQ, **keys(aws__SourceIp="198.51.100.1")),
         (NONE, None, "session"), identity=(policy(allow("s3:*")),),
         session=(policy(allow(condition={"IpAddress": {"aws:SourceIp": "203.0.113.0/24"}})),)),
    Case("session-resource-names-role-limited", cite(P_EVAL, "Determining whether a request is allowed or denied within an account"),
         req(**_SESSION_REQ), (NONE, None, "session"), session=(policy(allow("sqs:*", sid="S")),),
         resource=policy(allow(Principal={"AWS": ROLE}, sid="R"))),
    Case("session-resource-names-session-not-limited", cite(P_EVAL, "Determining whether a request is allowed or denied within an account"),
         req(**_SESSION_REQ), (ALLOW, "R", "resource"), session=(policy(allow("sqs:*", sid="S")),),
         resource=policy(allow(Principal={"AWS": SESSION}, sid="R"))),
    Case("session-federated-user-resource-names-session", cite(P_EVAL, "Determining whether a request is allowed or denied within an account"),
         req(principal=FED), (ALLOW, "R", "resource"), session=(policy(allow("sqs:*", sid="S")),),
         resource=policy(allow(Principal={"AWS": FED}, sid="R"))),
    Case("session-deny-wins-over-resource", cite(P_EVAL, "Determining whether a request is allowed or denied within an account"),
         req(**_SESSION_REQ), (DENY, "D", "session"), session=(policy(allow("*", sid="S"), deny()),),
         resource=policy(allow(Principal={"AWS": SESSION}, sid="R"))),
]


# --- 11. permissions boundaries ------------------------------------------------------------

_SHIRLEY = policy(allow(["s3:*", "cloudwatch:*", "ec2:*"], sid="B"))

BOUNDARIES = [
    Case("boundary-limits-identity", cite(P_BOUNDARIES, "Permissions boundaries for IAM entities"), req("iam:CreateUser", BOB),
         (NONE, None, "boundary"), identity=(policy(allow("iam:CreateUser", "*")),), boundary=_SHIRLEY),
    Case("boundary-and-identity-allow", cite(P_BOUNDARIES, "Permissions boundaries for IAM entities"), req(), YES,
         identity=(policy(allow("s3:*")),), boundary=_SHIRLEY),
    Case("boundary-grants-nothing-alone", cite(P_BOUNDARIES, "Permissions boundaries for IAM entities"), req(), NO,
         boundary=_SHIRLEY),
    Case("boundary-zhang-s3-list", cite(P_BOUNDARIES, "Delegating Responsibility to Others Using Permissions Boundaries"),
         req("s3:ListBucket", "arn:aws:s3:::ZhangBucket"), (NONE, None, "boundary"),
         identity=(policy(allow("s3:ListBucket", "arn:aws:s3:::ZhangBucket", "S3BucketContents")),),
         boundary=policy(allow(["iam:GetUser", "cloudwatch:*"], sid="B"))),
    Case("boundary-explicit-deny", cite(P_BOUNDARIES, "Delegating Responsibility to Others Using Permissions Boundaries"),
         req("s3:GetObject", "arn:aws:s3:::logs/x"), (DENY, "DenyS3Logs", "boundary"),
         identity=(policy(allow("s3:*")),),
         boundary=policy(allow(["s3:*"], sid="ServiceBoundaries"),
                         deny("s3:*", ["arn:aws:s3:::logs", "arn:aws:s3:::logs/*"], "DenyS3Logs"))),
    Case("boundary-resource-names-user-not-limited", cite(P_BOUNDARIES, "Evaluating effective permissions with boundaries"),
         req(), (ALLOW, "R", "resource"), boundary=policy(allow("sqs:*", sid="B")),
         resource=policy(allow(Principal={"AWS": ALICE}, sid="R"))),
    Case("boundary-resource-names-role-limited", cite(P_EVAL, "Determining whether a request is allowed or denied within an account"),
         req(**_SESSION_REQ), (NONE, None, "boundary"), boundary=policy(allow("sqs:*", sid="B")),
         resource=policy(allow(Principal={"AWS": ROLE}, sid="R"))),
    Case("boundary-resource-names-session-not-limited", cite(P_EVAL, "Determining whether a request is allowed or denied within an account"),
         req(**_SESSION_REQ), (ALLOW, "R", "resource"), boundary=policy(allow("sqs:*", sid="B")),
         resource=policy(allow(Principal={"AWS": SESSION}, sid="R"))),
    Case("boundary-star-principal-arn-condition-not-limited", cite(P_PRINCIPAL, "IAM role principals"),
         req(**_SESSION_REQ), (ALLOW, "R", "resource"), boundary=policy(allow("sqs:*", sid="B")),
         resource=policy(allow(Principal="*", sid="R", condition={"ArnEquals": {"aws:PrincipalArn": ROLE}}))),
    Case("boundary-session-and-boundary-both-limit", cite(P_BOUNDARIES, "Evaluating effective permissions with boundaries"),
         req(**_SESSION_REQ), YES, identity=(policy(allow("s3:*")),), session=(policy(allow(sid="S")),),
         boundary=_SHIRLEY),
    Case("boundary-with-session-boundary-lacks", cite(P_BOUNDARIES, "Evaluating effective permissions with boundaries"),
         req("iam:GetRole", ROLE, **_SESSION_REQ), (NONE, None, "boundary"), identity=(policy(allow("*")),),
         session=(policy(allow("*", sid="S")),), boundary=_SHIRLEY),
]


# --- 12. resource policies: same account and cross-account ---------------------------------

def _bucket_policy(principal: Any, sid: str = "R", **kw: Any) -> dict:
    return policy(allow("s3:*", [BUCKET, BUCKET + "/*"], sid, Principal=principal, **kw))


RESOURCE_POLICIES = [
    Case("res-same-account-user-arn-alone", cite(P_EVAL, "Evaluating identity-based policies with resource-based policies"),
         req(), (ALLOW, "R", "resource"), resource=_bucket_policy({"AWS": ALICE})),
    Case("res-same-account-other-user", cite(P_EVAL, "Evaluating identity-based policies with resource-based policies"),
         req(), NO, resource=_bucket_policy({"AWS": BOB})),
    Case("res-same-account-identity-alone", cite(P_EVAL, "Evaluating identity-based policies with resource-based policies"),
         req(), YES, identity=(policy(allow()),), resource=_bucket_policy({"AWS": BOB})),
    Case("res-same-account-account-principal-delegates", cite(P_PRINCIPAL, "AWS account principals"),
         req(), NO, resource=_bucket_policy({"AWS": ACCT})),
    Case("res-same-account-account-arn-delegates", cite(P_PRINCIPAL, "AWS account principals"),
         req(), NO, resource=_bucket_policy({"AWS": ROOT})),
    Case("res-same-account-account-plus-identity", cite(P_PRINCIPAL, "AWS account principals"),
         req(), YES, identity=(policy(allow()),), resource=_bucket_policy({"AWS": ROOT})),
    Case("res-everyone", cite(P_PRINCIPAL, "All principals"), req(), (ALLOW, "R", "resource"), resource=_bucket_policy("*")),
    Case("res-everyone-aws-star", cite(P_PRINCIPAL, "All principals"), req(), (ALLOW, "R", "resource"),
         resource=_bucket_policy({"AWS": "*"})),
    Case("res-role-arn-grants-session", cite(P_EVAL, "Determining whether a request is allowed or denied within an account"),
         req(**_SESSION_REQ), (ALLOW, "R", "resource"), resource=_bucket_policy({"AWS": ROLE})),
    Case("res-session-arn", cite(P_PRINCIPAL, "Assumed-role session principals"), req(**_SESSION_REQ), (ALLOW, "R", "resource"),
         resource=_bucket_policy({"AWS": SESSION})),
    Case("res-other-session-of-role", cite(P_PRINCIPAL, "Assumed-role session principals"),
         req(principal=f"arn:aws:sts::{ACCT}:assumed-role/app/s2", role_arn=ROLE), NO,
         resource=_bucket_policy({"AWS": SESSION})),
    Case("res-user-arn-case-sensitive", cite(P_PRINCIPAL, "IAM user principals"), req(principal=BOB), NO,
         resource=_bucket_policy({"AWS": f"arn:aws:iam::{ACCT}:user/bob"})),
    Case("res-principal-condition", cite(P_PRINCIPAL, "All principals"), req(principal=BOB), NO,
         resource=_bucket_policy("*", condition={"ArnEquals": {"aws:PrincipalArn": ALICE}})),
    Case("cross-identity-only", cite(P_CROSS, "Cross-account policy evaluation logic"), req("sqs:SendMessage", OTHER_QUEUE),
         (NONE, None, "resource"), identity=(policy(allow("sqs:*")),)),
    Case("cross-resource-only", cite(P_CROSS, "Cross-account policy evaluation logic"), req("sqs:SendMessage", OTHER_QUEUE),
         NO, resource=policy(allow("sqs:SendMessage", OTHER_QUEUE, "R", Principal={"AWS": ALICE}))),
    Case("cross-both", cite(P_CROSS, "Cross-account policy evaluation logic"), req("sqs:SendMessage", OTHER_QUEUE), YES,
         identity=(policy(allow("sqs:*")),), resource=policy(allow("sqs:SendMessage", OTHER_QUEUE, "R", Principal={"AWS": ALICE}))),
    Case("cross-account-principal-plus-identity", cite(P_CROSS, "Cross-account policy evaluation logic"),
         req("sqs:SendMessage", OTHER_QUEUE), YES,
         identity=(policy(allow("sqs:*")),), resource=policy(allow("sqs:SendMessage", OTHER_QUEUE, "R", Principal={"AWS": ACCT}))),
    Case("cross-resource-names-other-account", cite(P_CROSS, "Cross-account policy evaluation logic"),
         req("sqs:SendMessage", OTHER_QUEUE), (NONE, None, "resource"),
         identity=(policy(allow("sqs:*")),), resource=policy(allow("sqs:SendMessage", OTHER_QUEUE, "R", Principal={"AWS": "999999999999"}))),
    Case("cross-resource-deny", cite(P_CROSS, "Cross-account policy evaluation logic"), req("sqs:SendMessage", OTHER_QUEUE),
         (DENY, "D", "resource"), identity=(policy(allow("sqs:*")),),
         resource=policy(allow("sqs:*", OTHER_QUEUE, "R", Principal={"AWS": ALICE}), deny("sqs:SendMessage", OTHER_QUEUE, Principal="*"))),
    Case("cross-session-policy-limits", cite(P_CROSS, "Cross-account policy evaluation logic"),
         req("sqs:SendMessage", OTHER_QUEUE, **_SESSION_REQ), (NONE, None, "session"),
         identity=(policy(allow("sqs:*")),), session=(policy(allow("s3:*", sid="S")),),
         resource=policy(allow("sqs:SendMessage", OTHER_QUEUE, "R", Principal={"AWS": SESSION}))),
    Case("same-account-queue-resource-alone", cite(P_EVAL, "Evaluating identity-based policies with resource-based policies"),
         req("sqs:SendMessage", QUEUE), (ALLOW, "R", "resource"),
         resource=policy(allow("sqs:SendMessage", QUEUE, "R", Principal={"AWS": ALICE}))),
]


# --- 13. NotPrincipal ------------------------------------------------------------------------

_BOB_ONLY = policy(allow("s3:*", [BUCKET, BUCKET + "/*"], "R", Principal="*"),
                   statement("Deny", "s3:*", [BUCKET, BUCKET + "/*"], "D",
                             NotPrincipal={"AWS": [BOB, ROOT]}))
_AUDIT = f"arn:aws:sts::{ACCT}:assumed-role/cross-account-read-only-role/cross-account-audit-app"
_AUDIT_ROLE = f"arn:aws:iam::{ACCT}:role/cross-account-read-only-role"

NOT_PRINCIPAL = [
    Case("notprincipal-deny-spares-named-user", cite(P_NOTPRINCIPAL, "NotPrincipal With Deny"), req(principal=BOB),
         (ALLOW, "R", "resource"), resource=_BOB_ONLY),
    Case("notprincipal-deny-denies-others-in-account", cite(P_NOTPRINCIPAL, "NotPrincipal With Deny"), req(),
         (DENY, "D", "resource"), resource=_BOB_ONLY),
    Case("notprincipal-deny-denies-other-account", cite(P_NOTPRINCIPAL, "NotPrincipal With Deny"), req(principal=EVE),
         (DENY, "D", "resource"), identity=(policy(allow("s3:*")),), resource=_BOB_ONLY),
    Case("notprincipal-deny-without-account-denies-user", cite(P_NOTPRINCIPAL, "NotPrincipal With Deny"), req(principal=BOB),
         (DENY, "D", "resource"),
         resource=policy(allow("s3:*", "*", "R", Principal="*"), statement("Deny", "s3:*", "*", "D", NotPrincipal={"AWS": BOB}))),
    Case("notprincipal-deny-spares-fully-named-session", cite(P_NOTPRINCIPAL, "NotPrincipal With Deny"),
         req(principal=_AUDIT, role_arn=_AUDIT_ROLE), (ALLOW, "R", "resource"),
         resource=policy(allow("s3:*", "*", "R", Principal="*"),
                         statement("Deny", "s3:*", "*", "D", NotPrincipal={"AWS": [_AUDIT, _AUDIT_ROLE, ROOT]}))),
    Case("notprincipal-deny-session-without-role-denied", cite(P_NOTPRINCIPAL, "NotPrincipal With Deny"),
         req(principal=_AUDIT, role_arn=_AUDIT_ROLE), (DENY, "D", "resource"),
         resource=policy(allow("s3:*", "*", "R", Principal="*"),
                         statement("Deny", "s3:*", "*", "D", NotPrincipal={"AWS": [_AUDIT, ROOT]}))),
    Case("notprincipal-deny-other-session-denied", cite(P_NOTPRINCIPAL, "NotPrincipal With Deny"),
         req(principal=f"arn:aws:sts::{ACCT}:assumed-role/cross-account-read-only-role/other", role_arn=_AUDIT_ROLE),
         (DENY, "D", "resource"),
         resource=policy(allow("s3:*", "*", "R", Principal="*"),
                         statement("Deny", "s3:*", "*", "D", NotPrincipal={"AWS": [_AUDIT, _AUDIT_ROLE, ROOT]}))),
    Case("notprincipal-deny-with-boundary-always-denies", cite(P_BOUNDARIES, "Permissions boundaries for IAM entities"),
         req(principal=BOB), (DENY, "D", "resource"), identity=(policy(allow("s3:*")),),
         boundary=policy(allow("*", sid="B")), resource=_BOB_ONLY),
    Case("notprincipal-allow-everyone-but-named", cite(P_NOTPRINCIPAL, "NotPrincipal With Allow"), req(),
         (ALLOW, "R", "resource"), resource=policy(statement("Allow", "s3:*", "*", "R", NotPrincipal={"AWS": BOB}))),
    Case("notprincipal-allow-named-excluded", cite(P_NOTPRINCIPAL, "NotPrincipal With Allow"), req(principal=BOB), NO,
         resource=policy(statement("Allow", "s3:*", "*", "R", NotPrincipal={"AWS": BOB}))),
]


# --- 14. trust policies (evaluate_trust) ------------------------------------------------------

def _trust(principal: Any, sid: str = "T", action: Any = "sts:AssumeRole", **kw: Any) -> dict:
    return policy(statement("Allow", action, None, sid, Principal=principal, **kw))


def _assume(principal: str = ALICE, action: str = "sts:AssumeRole", **kw: Any) -> dict:
    return req(action, ROLE, principal, **kw)


_TRUSTED = (ALLOW, "T", "trust")
_UNTRUSTED = (NONE, None, "trust")
_CALLER_ROLE = f"arn:aws:iam::{ACCT}:role/ops/caller"
_CALLER_SESSION = f"arn:aws:sts::{ACCT}:assumed-role/caller/s1"

TRUST = [
    Case("trust-user-arn", cite(P_PRINCIPAL, "IAM user principals"), _assume(), _TRUSTED, trust=_trust({"AWS": ALICE})),
    Case("trust-other-user", cite(P_PRINCIPAL, "IAM user principals"), _assume(BOB), _UNTRUSTED, trust=_trust({"AWS": ALICE})),
    Case("trust-account-id", cite(P_PRINCIPAL, "AWS account principals"), _assume(), _TRUSTED,
         trust=_trust({"AWS": ACCT}), needs_identity_allow=True),
    Case("trust-account-arn", cite(P_PRINCIPAL, "AWS account principals"), _assume(), _TRUSTED,
         trust=_trust({"AWS": ROOT}), needs_identity_allow=True),
    Case("trust-account-list", cite(P_PRINCIPAL, "Specifying a principal"), _assume(), _TRUSTED,
         trust=_trust({"AWS": ["123456789012", ACCT]}), needs_identity_allow=True),
    Case("trust-other-account", cite(P_PRINCIPAL, "AWS account principals"), _assume(), _UNTRUSTED,
         trust=_trust({"AWS": OTHER})),
    Case("trust-cross-account-user", cite(P_PRINCIPAL, "AWS account principals"), _assume(EVE), _TRUSTED,
         trust=_trust({"AWS": OTHER}), needs_identity_allow=True),
    Case("trust-cross-account-user-exact", cite(P_CROSS, "Cross-account policy evaluation logic"), _assume(EVE), _TRUSTED,
         trust=_trust({"AWS": EVE}), needs_identity_allow=True),
    Case("trust-role-arn-trusts-its-sessions", cite(P_PRINCIPAL, "IAM role principals"),
         _assume(_CALLER_SESSION, role_arn=_CALLER_ROLE), _TRUSTED, trust=_trust({"AWS": _CALLER_ROLE})),
    Case("trust-session-arn", cite(P_PRINCIPAL, "Assumed-role session principals"),
         _assume(_CALLER_SESSION, role_arn=_CALLER_ROLE), _TRUSTED, trust=_trust({"AWS": _CALLER_SESSION})),
    Case("trust-other-session", cite(P_PRINCIPAL, "Assumed-role session principals"),
         _assume(_CALLER_SESSION, role_arn=_CALLER_ROLE), _UNTRUSTED,
         trust=_trust({"AWS": f"arn:aws:sts::{ACCT}:assumed-role/caller/other"})),
    Case("trust-everyone", cite(P_PRINCIPAL, "All principals"), _assume(EVE), _TRUSTED, trust=_trust("*"),
         needs_identity_allow=True),
    Case("trust-service", cite(P_PRINCIPAL, "AWS service principals"),
         _assume("ecs.amazonaws.com", principal_type="Service"), _TRUSTED,
         trust=_trust({"Service": ["ecs.amazonaws.com", "elasticloadbalancing.amazonaws.com"]})),
    Case("trust-service-other", cite(P_PRINCIPAL, "AWS service principals"),
         _assume("ec2.amazonaws.com", principal_type="Service"), _UNTRUSTED, trust=_trust({"Service": "ecs.amazonaws.com"})),
    Case("trust-service-not-by-account", cite(P_PRINCIPAL, "AWS service principals"),
         _assume("ec2.amazonaws.com", principal_type="Service"), _UNTRUSTED, trust=_trust({"AWS": ACCT})),
    Case("trust-user-not-by-service", cite(P_PRINCIPAL, "AWS service principals"), _assume(), _UNTRUSTED,
         trust=_trust({"Service": "ec2.amazonaws.com"})),
    Case("trust-web-identity", cite(P_PRINCIPAL, "Web identity session principals"),
         _assume("accounts.google.com", "sts:AssumeRoleWithWebIdentity", principal_type="WebIdentity"), _TRUSTED,
         trust=_trust({"Federated": "accounts.google.com"}, action="sts:AssumeRoleWithWebIdentity")),
    Case("trust-web-identity-other-provider", cite(P_PRINCIPAL, "Web identity session principals"),
         _assume("graph.facebook.com", "sts:AssumeRoleWithWebIdentity", principal_type="WebIdentity"), _UNTRUSTED,
         trust=_trust({"Federated": "accounts.google.com"}, action="sts:AssumeRoleWithWebIdentity")),
    Case("trust-saml", cite(P_PRINCIPAL, "SAML session principals"),
         _assume(f"arn:aws:iam::{ACCT}:saml-provider/corp", "sts:AssumeRoleWithSAML", principal_type="SAML"), _TRUSTED,
         trust=_trust({"Federated": f"arn:aws:iam::{ACCT}:saml-provider/corp"}, action="sts:AssumeRoleWithSAML")),
    Case("trust-action-mismatch", cite(P_ACTION, _ACTION_TITLE), _assume(action="sts:TagSession"), _UNTRUSTED,
         trust=_trust({"AWS": ALICE})),
    Case("trust-deny-statement", cite(P_EVAL, "Determining whether a request is allowed or denied within an account"),
         _assume(BOB), (DENY, "NoBob", "trust"),
         trust=policy(statement("Allow", "sts:AssumeRole", None, "T", Principal={"AWS": ACCT}),
                      statement("Deny", "sts:*", None, "NoBob", Principal={"AWS": BOB}))),
    Case("trust-external-id", cite(P_EXTERNAL, _EXTERNAL_TITLE), _assume(EVE, external_id="Unique1234"), _TRUSTED,
         trust=_trust({"AWS": OTHER}, condition={"StringEquals": {"sts:ExternalId": "Unique1234"}}), needs_identity_allow=True),
    Case("trust-external-id-wrong", cite(P_EXTERNAL, _EXTERNAL_TITLE), _assume(EVE, external_id="unique1234"), _UNTRUSTED,
         trust=_trust({"AWS": OTHER}, condition={"StringEquals": {"sts:ExternalId": "Unique1234"}})),
    Case("trust-external-id-absent", cite(P_EXTERNAL, _EXTERNAL_TITLE), _assume(EVE), _UNTRUSTED,
         trust=_trust({"AWS": OTHER}, condition={"StringEquals": {"sts:ExternalId": "Unique1234"}})),
    Case("trust-mfa-required-with-mfa", cite(P_MFA, "Scenario: MFA protection for cross-account delegation"),
         _assume(EVE, mfa_present=True, mfa_age_seconds=60), _TRUSTED,
         trust=_trust({"AWS": OTHER}, condition={"Bool": {"aws:MultiFactorAuthPresent": "true"}}), needs_identity_allow=True),
    Case("trust-mfa-required-long-term-key", cite(P_MFA, "Scenario: MFA protection for cross-account delegation"),
         _assume(EVE), _UNTRUSTED, trust=_trust({"AWS": OTHER}, condition={"Bool": {"aws:MultiFactorAuthPresent": "true"}})),
    Case("trust-prefers-exact-grant", cite(P_EVAL, "Determining whether a request is allowed or denied within an account"),
         _assume(), (ALLOW, "Alice", "trust"),
         trust=policy(statement("Allow", "sts:AssumeRole", None, "Acct", Principal={"AWS": ACCT}),
                      statement("Allow", "sts:AssumeRole", None, "Alice", Principal={"AWS": ALICE}))),
    Case("trust-principal-arn-condition", cite(P_PRINCIPAL, "IAM role principals"),
         _assume(_CALLER_SESSION, role_arn=_CALLER_ROLE), _TRUSTED,
         trust=_trust({"AWS": ACCT}, condition={"ArnLike": {"aws:PrincipalArn": f"arn:aws:iam::{ACCT}:role/ops/*"}}),
         needs_identity_allow=True),
]


ALL: list[Case] = (EVALUATION + ACTIONS + RESOURCES + CONDITIONS + MULTIVALUE + VARIABLES + CONDITION_KEYS
                   + MFA + REVOCATION + SESSION_POLICIES + BOUNDARIES + RESOURCE_POLICIES + NOT_PRINCIPAL + TRUST)

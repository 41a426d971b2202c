"""The IAM policy engine: parsing/validation (policy_document) and evaluation (policy)."""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sts_backend.errors import MalformedPolicyDocument
from sts_backend.policy import (
    ALLOWED, EXPLICIT_DENY, NO_ALLOW, Decision, PrincipalType, RequestContext,
    access_denied_message, build_request_context, evaluate, evaluate_trust,
)
from sts_backend.policy_document import PolicyKind, parse_policy, policy_size
from sts_backend.policy_match import Patterns, compile_glob

ACCT = "111122223333"
OTHER = "444455556666"
USER = f"arn:aws:iam::{ACCT}:user/alice"
ROLE = f"arn:aws:iam::{ACCT}:role/app"
CALLER_ROLE = f"arn:aws:iam::{ACCT}:role/ops/caller"
SESSION = f"arn:aws:sts::{ACCT}:assumed-role/caller/s1"
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def doc(*statements, version="2012-10-17") -> str:
    body = {"Statement": list(statements)}
    if version is not None:
        body["Version"] = version
    return json.dumps(body)


def allow(action="sts:AssumeRole", resource="*", **extra) -> dict:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action="sts:AssumeRole", resource="*", **extra) -> dict:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def identity(*statements, version="2012-10-17"):
    return parse_policy(doc(*statements, version=version))


def trust(*statements):
    return parse_policy(doc(*statements), PolicyKind.TRUST)


def trusting(principal, **extra) -> dict:
    return {"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole", **extra}


def ctx(action="sts:AssumeRole", resource=ROLE, principal=USER, **kw) -> RequestContext:
    return build_request_context(action, resource, principal, **kw)


# --- actions and resources ------------------------------------------------------------

@pytest.mark.parametrize("pattern, action, expected", [
    ("sts:AssumeRole", "sts:AssumeRole", True),
    ("sts:AssumeRole", "STS:assumerole", True),          # Action is case-insensitive
    ("STS:ASSUMEROLE", "sts:AssumeRole", True),
    ("sts:AssumeRole", "sts:AssumeRoleWithSAML", False),
    ("sts:*", "sts:GetSessionToken", True),
    ("sts:*", "iam:GetUser", False),
    ("iam:Get*", "iam:GetUser", True),
    ("iam:Get*", "iam:ListUsers", False),
    ("iam:*User", "iam:DeleteUser", True),
    ("iam:?etUser", "iam:GetUser", True),
    ("iam:?etUser", "iam:GGetUser", False),
    ("*", "anything:AtAll", True),
])
def test_action_matching(pattern, action, expected):
    decision = evaluate(ctx(action=action), [identity(allow(pattern))])
    assert decision.allowed is expected


@pytest.mark.parametrize("pattern, resource, expected", [
    (ROLE, ROLE, True),
    (ROLE, ROLE.upper(), False),                          # Resource is case-sensitive
    (f"arn:aws:iam::{ACCT}:role/*", f"arn:aws:iam::{ACCT}:role/team/deep/app", True),  # * spans /
    (f"arn:aws:iam::{ACCT}:role/ap?", ROLE, True),
    (f"arn:aws:iam::{ACCT}:role/ap?", f"{ROLE}p", False),
    ("arn:aws:iam::*:role/app", ROLE, True),
    (f"arn:aws:iam::{OTHER}:role/*", ROLE, False),
    ("*", ROLE, True),
])
def test_resource_matching(pattern, resource, expected):
    assert evaluate(ctx(resource=resource), [identity(allow(resource=pattern))]).allowed is expected


# --- decision logic -------------------------------------------------------------------

@pytest.mark.parametrize("statements, expected", [
    ([allow()], Decision(True, ALLOWED, None, "identity")),
    ([allow(Sid="Ok")], Decision(True, ALLOWED, "Ok", "identity")),
    ([], Decision(False, NO_ALLOW, None, "identity")),
    ([allow("iam:*")], Decision(False, NO_ALLOW, None, "identity")),
    ([allow(Sid="Ok"), deny(Sid="No")], Decision(False, EXPLICIT_DENY, "No", "identity")),
    ([deny("sts:*", Sid="No"), allow("*")], Decision(False, EXPLICIT_DENY, "No", "identity")),
    ([deny("iam:*"), allow()], Decision(True, ALLOWED, None, "identity")),
    ([deny(resource=f"arn:aws:iam::{ACCT}:role/other"), allow()], Decision(True, ALLOWED, None, "identity")),
])
def test_decisions(statements, expected):
    policies = [identity(s) for s in statements]     # one statement per policy: deny crosses policies
    assert evaluate(ctx(), policies) == expected


@pytest.mark.parametrize("statement, action, resource, expected", [
    ({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}, "sts:AssumeRole", ROLE, True),
    ({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}, "iam:GetUser", ROLE, False),
    ({"Effect": "Allow", "NotAction": ["iam:*", "sts:Get*"], "Resource": "*"},
     "sts:GetSessionToken", ROLE, False),
    ({"Effect": "Allow", "Action": "*", "NotResource": ROLE}, "sts:AssumeRole", ROLE, False),
    ({"Effect": "Allow", "Action": "*", "NotResource": ROLE}, "sts:AssumeRole", f"{ROLE}2", True),
    ({"Effect": "Allow", "Action": "*", "NotResource": [f"arn:aws:iam::{ACCT}:role/a*", "arn:aws:s3:::q"]},
     "sts:AssumeRole", ROLE, False),
])
def test_not_action_and_not_resource(statement, action, resource, expected):
    assert evaluate(ctx(action=action, resource=resource), [identity(statement)]).allowed is expected


def test_not_action_deny_overrides_broad_allow():
    # The AWS "deny everything but MFA self-service unless MFA" pattern.
    no_mfa = {"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}}
    policy = identity(allow("*"), {"Effect": "Deny", "NotAction": ["iam:*Mfa*", "sts:GetSessionToken"],
                                   "Resource": "*", "Condition": no_mfa})
    assert not evaluate(ctx(), [policy]).allowed
    assert evaluate(ctx(action="iam:ListMfaDevices"), [policy]).allowed
    assert evaluate(ctx(mfa_present=True), [policy]).allowed


# --- conditions -----------------------------------------------------------------------

# aws:MultiFactorAuthPresent is absent for long-term keys (mfa=None), "false" for
# temporary credentials made without MFA, "true" with MFA [reference/sts-iam.md §8].
@pytest.mark.parametrize("operator, value, mfa, expected", [
    ("Bool", "true", True, True),
    ("Bool", "true", False, False),
    ("Bool", "true", None, False),
    ("Bool", "false", False, True),
    ("Bool", "false", True, False),
    ("Bool", "false", None, False),          # the trap: Bool false does not catch long-term keys
    ("BoolIfExists", "true", True, True),
    ("BoolIfExists", "true", False, False),
    ("BoolIfExists", "true", None, True),    # IfExists: true when the key is absent
    ("BoolIfExists", "false", None, True),
    ("BoolIfExists", "false", False, True),
    ("BoolIfExists", "false", True, False),
    ("Bool", "TRUE", True, True),
    ("Bool", True, True, True),              # JSON true in a policy means "true"
])
def test_mfa_present(operator, value, mfa, expected):
    policy = identity(allow(Condition={operator: {"aws:MultiFactorAuthPresent": value}}))
    assert evaluate(ctx(mfa_present=mfa), [policy]).allowed is expected


@pytest.mark.parametrize("operator, mfa, expected_deny", [
    ("Bool", None, False), ("Bool", False, True), ("Bool", True, False),
    ("BoolIfExists", None, True), ("BoolIfExists", False, True), ("BoolIfExists", True, False),
])
def test_mfa_deny_pattern(operator, mfa, expected_deny):
    policy = identity(allow(), deny(Condition={operator: {"aws:MultiFactorAuthPresent": "false"}}))
    decision = evaluate(ctx(mfa_present=mfa), [policy])
    assert (decision.reason == EXPLICIT_DENY) is expected_deny


@pytest.mark.parametrize("operator, age, expected", [
    ("NumericLessThan", 3599, True),
    ("NumericLessThan", 3600, False),
    ("NumericLessThan", 3601, False),
    ("NumericLessThan", None, False),            # key absent: false
    ("NumericLessThanEquals", 3600, True),
    ("NumericLessThanEquals", 3601, False),
    ("NumericGreaterThan", 3601, True),
    ("NumericGreaterThan", 3600, False),
    ("NumericGreaterThanEquals", 3600, True),
    ("NumericEquals", 3600, True),
    ("NumericNotEquals", 3600, False),
    ("NumericNotEquals", 5, True),
    ("NumericNotEquals", None, True),            # negated operators are true when absent
    ("NumericLessThanIfExists", None, True),
    ("NumericLessThanIfExists", 4000, False),
    ("NumericGreaterThanIfExists", None, True),
])
def test_mfa_age(operator, age, expected):
    policy = identity(allow(Condition={operator: {"aws:MultiFactorAuthAge": "3600"}}))
    request = ctx(mfa_present=age is not None, mfa_age_seconds=age)
    assert evaluate(request, [policy]).allowed is expected


@pytest.mark.parametrize("condition, external_id, expected", [
    ({"StringEquals": {"sts:ExternalId": "abc"}}, "abc", True),
    ({"StringEquals": {"sts:ExternalId": "abc"}}, "ABC", False),    # values are case-sensitive
    ({"StringEquals": {"sts:ExternalId": "abc"}}, None, False),
    ({"StringEquals": {"sts:ExternalId": ["x", "abc"]}}, "abc", True),   # values: OR
    ({"StringNotEquals": {"sts:ExternalId": "abc"}}, "abd", True),
    ({"StringNotEquals": {"sts:ExternalId": "abc"}}, "abc", False),
    ({"StringNotEquals": {"sts:ExternalId": ["x", "abc"]}}, "abc", False),  # negated: AND
    ({"StringNotEquals": {"sts:ExternalId": "abc"}}, None, True),
    ({"StringLike": {"sts:ExternalId": "team-*"}}, "team-42", True),
    ({"StringLike": {"sts:ExternalId": "team-?"}}, "team-42", False),
    ({"StringNotLike": {"sts:ExternalId": "team-*"}}, "ops-1", True),
    ({"StringEqualsIgnoreCase": {"sts:ExternalId": "ABC"}}, "abc", True),
    ({"StringNotEqualsIgnoreCase": {"sts:ExternalId": "ABC"}}, "abc", False),
    ({"StringEqualsIfExists": {"sts:ExternalId": "abc"}}, None, True),
    ({"StringEquals": {"STS:EXTERNALID": "abc"}}, "abc", True),       # key names fold case
])
def test_external_id(condition, external_id, expected):
    policy = identity(allow(Condition=condition))
    assert evaluate(ctx(external_id=external_id), [policy]).allowed is expected


@pytest.mark.parametrize("condition, expected", [
    # several keys under one operator: AND
    ({"StringEquals": {"sts:ExternalId": "abc", "aws:username": "alice"}}, True),
    ({"StringEquals": {"sts:ExternalId": "abc", "aws:username": "bob"}}, False),
    # several operators: AND
    ({"StringEquals": {"sts:ExternalId": "abc"}, "Bool": {"aws:MultiFactorAuthPresent": "true"}}, True),
    ({"StringEquals": {"sts:ExternalId": "abc"}, "Bool": {"aws:MultiFactorAuthPresent": "false"}}, False),
    # unknown keys are absent: no match, negated operators match
    ({"StringEquals": {"rolecall:Nonsense": "x"}}, False),
    ({"StringNotEquals": {"rolecall:Nonsense": "x"}}, True),
    ({"StringEquals": {}}, True),                      # an empty block constrains nothing
    ({"FooBar": {}}, True),                            # unknown operator, empty: accepted, ignored
])
def test_condition_combination(condition, expected):
    request = ctx(external_id="abc", mfa_present=True)
    assert evaluate(request, [identity(allow(Condition=condition))]).allowed is expected


@pytest.mark.parametrize("condition, keys, expected", [
    ({"DateGreaterThan": {"aws:CurrentTime": "2025-12-31T23:59:59Z"}}, {}, True),
    ({"DateLessThan": {"aws:CurrentTime": "2026-01-01"}}, {}, False),
    ({"DateLessThan": {"aws:TokenIssueTime": "2026-06-01T00:00:00Z"}}, {}, False),   # absent
    ({"DateEquals": {"aws:EpochTime": str(int(NOW.timestamp()))}}, {}, True),
    ({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, {"aws:SourceIp": "10.1.2.3"}, True),
    ({"IpAddress": {"aws:SourceIp": ["192.168.0.0/16", "::1/128"]}}, {"aws:SourceIp": "::1"}, True),
    ({"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, {"aws:SourceIp": "10.1.2.3"}, False),
    ({"ArnLike": {"aws:PrincipalArn": f"arn:aws:iam::{ACCT}:user/*"}}, {}, True),
    ({"ArnEquals": {"aws:PrincipalArn": "arn:aws:iam::*:user/alice"}}, {}, True),
    ({"ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/*"}}, {}, True),
    ({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*"}}, {}, False),   # six parts each side
    ({"Null": {"aws:TokenIssueTime": "true"}}, {}, True),
    ({"Null": {"aws:TokenIssueTime": "false"}}, {}, False),
    ({"Null": {"aws:username": "false"}}, {}, True),
    ({"ForAnyValue:StringEquals": {"aws:TagKeys": ["a", "b"]}}, {"aws:TagKeys": ["c", "b"]}, True),
    ({"ForAnyValue:StringEquals": {"aws:TagKeys": ["a", "b"]}}, {}, False),
    ({"ForAllValues:StringEquals": {"aws:TagKeys": ["a", "b"]}}, {"aws:TagKeys": ["a", "b"]}, True),
    ({"ForAllValues:StringEquals": {"aws:TagKeys": ["a", "b"]}}, {"aws:TagKeys": ["a", "c"]}, False),
    ({"ForAllValues:StringEquals": {"aws:TagKeys": ["a"]}}, {}, True),    # absent: true
    ({"ForAnyValue:StringNotEquals": {"aws:TagKeys": ["a"]}}, {"aws:TagKeys": ["a", "z"]}, True),
    ({"ForAllValues:StringLike": {"aws:TagKeys": ["team-*"]}}, {"aws:TagKeys": ["team-a", "team-b"]}, True),
    # unqualified, several request values: positive operators want one match, negated ones none
    ({"StringEquals": {"aws:TagKeys": "a"}}, {"aws:TagKeys": ["a", "z"]}, True),
    ({"StringNotEquals": {"aws:TagKeys": "a"}}, {"aws:TagKeys": ["a", "z"]}, False),
    ({"StringNotEquals": {"aws:TagKeys": "a"}}, {"aws:TagKeys": ["y", "z"]}, True),
    ({"StringEquals": {"aws:PrincipalTag/Team": "blue"}}, {}, True),
    ({"StringEquals": {"aws:principaltag/team": "blue"}}, {}, True),
])
def test_operator_table(condition, keys, expected):
    request = ctx(now=NOW, principal_tags={"Team": "blue"}, extra=keys)
    assert evaluate(request, [identity(allow(Condition=condition))]).allowed is expected


# --- policy variables -----------------------------------------------------------------

@pytest.mark.parametrize("resource, principal, version, expected", [
    (f"arn:aws:iam::{ACCT}:user/${{aws:username}}", USER, "2012-10-17", True),
    (f"arn:aws:iam::{ACCT}:user/${{aws:username}}", f"arn:aws:iam::{ACCT}:user/bob", "2012-10-17", False),
    (f"arn:aws:iam::{ACCT}:user/${{aws:username}}", SESSION, "2012-10-17", False),   # no aws:username
    (f"arn:aws:iam::{ACCT}:user/${{aws:username, 'alice'}}", SESSION, "2012-10-17", True),
    (f"arn:aws:iam::{ACCT}:user/${{aws:username}}", USER, "2008-10-17", False),     # literal text then
    (f"arn:aws:iam::{ACCT}:user/${{aws:username}}", USER, None, False),
])
def test_policy_variables_in_resource(resource, principal, version, expected):
    policy = identity(allow("iam:GetUser", resource), version=version)
    assert evaluate(ctx("iam:GetUser", USER, principal), [policy]).allowed is expected


def test_policy_variables_in_conditions_and_not_resource():
    own_tag = identity(allow(Condition={"StringEquals": {"sts:ExternalId": "${aws:username}"}}))
    assert evaluate(ctx(external_id="alice"), [own_tag]).allowed
    assert not evaluate(ctx(external_id="bob"), [own_tag]).allowed
    negated = identity(allow(Condition={"StringNotEquals": {"sts:ExternalId": "${aws:userid}"}}))
    assert evaluate(ctx(external_id="x"), [negated]).allowed           # missing variable: matches nothing
    like = identity(allow(Condition={"StringLike": {"sts:ExternalId": "${aws:username}-*"}}))
    assert evaluate(ctx(external_id="alice-1"), [like]).allowed
    own_user = f"arn:aws:iam::{ACCT}:user/${{aws:username}}"
    not_mine = identity({"Effect": "Allow", "Action": "iam:*", "NotResource": own_user})
    assert not evaluate(ctx("iam:GetUser", USER), [not_mine]).allowed
    assert evaluate(ctx("iam:GetUser", f"arn:aws:iam::{ACCT}:user/bob"), [not_mine]).allowed
    # substituted values are literal text, never wildcards
    sneaky = ctx("iam:GetUser", USER, extra={"aws:username": "al*"})
    assert not evaluate(sneaky, [identity(allow("iam:GetUser", own_user))]).allowed
    star = identity(allow("iam:GetUser", f"arn:aws:iam::{ACCT}:user/${{*}}"))
    assert evaluate(ctx("iam:GetUser", f"arn:aws:iam::{ACCT}:user/*"), [star]).allowed
    assert not evaluate(ctx("iam:GetUser", USER), [star]).allowed     # ${*} is a literal star


# --- trust policies -------------------------------------------------------------------

@pytest.mark.parametrize("principal, caller, expected, needs_identity", [
    ({"AWS": f"arn:aws:iam::{ACCT}:root"}, USER, True, True),
    ({"AWS": ACCT}, USER, True, True),
    ({"AWS": ACCT}, SESSION, True, True),
    ({"AWS": [OTHER, ACCT]}, USER, True, True),
    ({"AWS": f"arn:aws:iam::{OTHER}:root"}, USER, False, False),
    ({"AWS": OTHER}, SESSION, False, False),
    ({"AWS": USER}, USER, True, False),
    ({"AWS": USER}, f"arn:aws:iam::{ACCT}:user/bob", False, False),
    ({"AWS": CALLER_ROLE}, SESSION, True, False),          # a role ARN trusts its sessions
    ({"AWS": SESSION}, SESSION, True, False),
    ({"AWS": f"arn:aws:sts::{ACCT}:assumed-role/caller/other"}, SESSION, False, False),
    ({"AWS": CALLER_ROLE}, USER, False, False),
    ("*", USER, True, True),
    ({"AWS": "*"}, f"arn:aws:iam::{OTHER}:user/eve", True, True),
    ({"Service": "ec2.amazonaws.com"}, USER, False, False),
])
def test_trust_principals(principal, caller, expected, needs_identity):
    request = ctx(principal=caller, role_arn=CALLER_ROLE if caller == SESSION else None)
    decision = evaluate_trust(request, trust(trusting(principal)))
    assert decision.allowed is expected
    assert decision.needs_identity_allow is needs_identity
    assert decision.source == "trust"


def test_trust_other_account_named_exactly_still_needs_identity_allow():
    caller = f"arn:aws:iam::{OTHER}:user/carol"
    decision = evaluate_trust(ctx(principal=caller), trust(trusting({"AWS": caller})))
    assert decision.allowed and decision.needs_identity_allow


@pytest.mark.parametrize("principal_type, name, principal, expected", [
    (PrincipalType.SERVICE, "ec2.amazonaws.com", {"Service": "ec2.amazonaws.com"}, True),
    (PrincipalType.SERVICE, "ec2.amazonaws.com", {"Service": ["lambda.amazonaws.com"]}, False),
    (PrincipalType.SERVICE, "ec2.amazonaws.com", {"AWS": ACCT}, False),
    (PrincipalType.WEB_IDENTITY, f"arn:aws:iam::{ACCT}:oidc-provider/token.example",
     {"Federated": f"arn:aws:iam::{ACCT}:oidc-provider/token.example"}, True),
    (PrincipalType.WEB_IDENTITY, "accounts.google.com",
     {"Federated": "cognito-identity.amazonaws.com"}, False),
])
def test_trust_service_and_federated(principal_type, name, principal, expected):
    request = ctx(principal=name, principal_type=principal_type)
    assert evaluate_trust(request, trust(trusting(principal))).allowed is expected


def test_trust_conditions_actions_and_deny():
    policy = trust(trusting({"AWS": ACCT}, Sid="Ext", Condition={"StringEquals": {"sts:ExternalId": "abc"}}),
                   {"Sid": "NoBob", "Effect": "Deny", "Principal": {"AWS": f"arn:aws:iam::{ACCT}:user/bob"},
                    "Action": "sts:*"})
    assert evaluate_trust(ctx(external_id="abc"), policy) == Decision(True, ALLOWED, "Ext", "trust", True)
    assert evaluate_trust(ctx(external_id="abd"), policy) == Decision(False, NO_ALLOW, None, "trust")
    assert not evaluate_trust(ctx(), policy).allowed
    assert not evaluate_trust(ctx("sts:TagSession", external_id="abc"), policy).allowed
    bob = ctx(principal=f"arn:aws:iam::{ACCT}:user/bob", external_id="abc")
    assert evaluate_trust(bob, policy) == Decision(False, EXPLICIT_DENY, "NoBob", "trust")


def test_trust_mfa_condition():
    policy = trust(trusting({"AWS": ACCT}, Condition={"Bool": {"aws:MultiFactorAuthPresent": "true"},
                                                      "NumericLessThan": {"aws:MultiFactorAuthAge": "900"}}))
    assert evaluate_trust(ctx(principal=SESSION, mfa_present=True, mfa_age_seconds=60), policy).allowed
    assert not evaluate_trust(ctx(principal=SESSION, mfa_present=True, mfa_age_seconds=901), policy).allowed
    assert not evaluate_trust(ctx(principal=SESSION, mfa_present=False), policy).allowed
    assert not evaluate_trust(ctx(mfa_present=None), policy).allowed


def test_trust_prefers_exact_grant():
    policy = trust(trusting({"AWS": ACCT}, Sid="Acct"), trusting({"AWS": USER}, Sid="Alice"))
    assert evaluate_trust(ctx(), policy) == Decision(True, ALLOWED, "Alice", "trust", False)


# --- session policies, boundaries, resource policies --------------------------------------

@pytest.mark.parametrize("action, expected", [
    ("sts:AssumeRole", Decision(False, NO_ALLOW, None, "session")),    # identity only
    ("sts:TagSession", Decision(True, ALLOWED, "Both", "identity")),   # both allow
    ("sts:GetCallerIdentity", Decision(False, NO_ALLOW, None, "identity")),  # session only
])
def test_session_policy_intersection(action, expected):
    identities = [identity(allow(["sts:AssumeRole", "sts:TagSession"], Sid="Both"))]
    sessions = [identity(allow(["sts:TagSession", "sts:GetCallerIdentity"]))]
    assert evaluate(ctx(action), identities, session_policies=sessions) == expected


def test_session_policies_union_and_deny():
    identities = [identity(allow("sts:*"))]
    sessions = [identity(allow("sts:AssumeRole")), identity(allow("sts:TagSession"))]
    assert evaluate(ctx("sts:TagSession"), identities, session_policies=sessions).allowed
    denying = [identity(allow("*"), deny("sts:TagSession", Sid="Cut"))]
    assert evaluate(ctx("sts:TagSession"), identities, session_policies=denying) == \
        Decision(False, EXPLICIT_DENY, "Cut", "session")
    assert evaluate(ctx(), identities, session_policies=()).allowed      # none passed: unrestricted


def test_permissions_boundary():
    identities = [identity(allow("*"))]
    boundary = identity(allow("sts:*"))
    assert evaluate(ctx(), identities, permissions_boundary=boundary).allowed
    assert evaluate(ctx("iam:GetUser"), identities, permissions_boundary=boundary) == \
        Decision(False, NO_ALLOW, None, "boundary")


@pytest.mark.parametrize("principal, caller, sessions, resource, expected", [
    ({"AWS": USER}, USER, (), ROLE, True),                      # same account: resource policy alone
    ({"AWS": ACCT}, USER, (), ROLE, False),     # the account only delegates: identity must allow
    ({"AWS": f"arn:aws:iam::{ACCT}:user/bob"}, USER, (), ROLE, False),
    ({"AWS": CALLER_ROLE}, SESSION, ("iam:*",), ROLE, False),   # role ARN: session policy still limits
    ({"AWS": SESSION}, SESSION, ("iam:*",), ROLE, True),        # exact session ARN: it does not
    ({"AWS": USER}, USER, (), f"arn:aws:iam::{OTHER}:role/x", False),   # cross-account: needs identity too
])
def test_resource_policy(principal, caller, sessions, resource, expected):
    res = parse_policy(doc({"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole",
                            "Resource": "*"}), PolicyKind.RESOURCE)
    request = ctx(resource=resource, principal=caller, role_arn=CALLER_ROLE if caller == SESSION else None)
    session_policies = [identity(allow(a)) for a in sessions]
    decision = evaluate(request, [], session_policies=session_policies, resource_policy=res)
    assert decision.allowed is expected


def test_cross_account_needs_both_sides():
    other_role = f"arn:aws:iam::{OTHER}:role/x"
    res = parse_policy(doc({"Effect": "Allow", "Principal": {"AWS": ACCT}, "Action": "sts:*",
                            "Resource": "*"}), PolicyKind.RESOURCE)
    mine = [identity(allow())]
    assert evaluate(ctx(resource=other_role), mine, resource_policy=res).allowed
    assert not evaluate(ctx(resource=other_role), mine).allowed
    denying = parse_policy(doc({"Effect": "Deny", "NotPrincipal": {"AWS": f"arn:aws:iam::{ACCT}:user/bob"},
                                "Action": "sts:*", "Resource": "*"}), PolicyKind.RESOURCE)
    assert evaluate(ctx(resource=other_role), mine, resource_policy=denying).reason == EXPLICIT_DENY


# --- malformed documents ------------------------------------------------------------------

STMT = {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}
TRUST_STMT = {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"AWS": ACCT}}


def raw(**top) -> str:
    return json.dumps({"Version": "2012-10-17", **top})


def with_stmt(**changes) -> str:
    statement = {**STMT, **changes}
    return raw(Statement=[{k: v for k, v in statement.items() if v is not None}])


def trust_with(**changes) -> str:
    statement = {**TRUST_STMT, **changes}
    return raw(Statement=[{k: v for k, v in statement.items() if v is not None}])


SYNTAX = "Syntax errors in policy."
NO_PRINCIPAL_HERE = "Policy document should not specify a principal."
MALFORMED = [
    # (document, kind, message)
    ("{not json", PolicyKind.IDENTITY, SYNTAX),
    ("null", PolicyKind.IDENTITY, SYNTAX),
    ("[]", PolicyKind.IDENTITY, SYNTAX),
    (raw(), PolicyKind.IDENTITY, SYNTAX),                                    # no Statement
    (raw(Statement=[]), PolicyKind.IDENTITY, SYNTAX),
    (raw(Statement="x"), PolicyKind.IDENTITY, SYNTAX),
    (raw(Statement=[STMT], Extra=1), PolicyKind.IDENTITY, SYNTAX),            # unknown top-level element
    (json.dumps({"Version": "2013-01-01", "Statement": [STMT]}), PolicyKind.IDENTITY, SYNTAX),
    (raw(Statement=[STMT], Id=5), PolicyKind.IDENTITY, SYNTAX),
    (with_stmt(Bogus=1), PolicyKind.IDENTITY, SYNTAX),                       # unknown element
    (with_stmt(Effect=None), PolicyKind.IDENTITY, SYNTAX),
    (with_stmt(Effect="Permit"), PolicyKind.IDENTITY, SYNTAX),
    (with_stmt(Effect=1), PolicyKind.IDENTITY, SYNTAX),
    (with_stmt(NotAction="iam:*"), PolicyKind.IDENTITY, SYNTAX),             # Action and NotAction
    (with_stmt(NotResource="*"), PolicyKind.IDENTITY, SYNTAX),
    (with_stmt(Action=["sts:AssumeRole", 3]), PolicyKind.IDENTITY, SYNTAX),
    (with_stmt(Resource={"Ref": "X"}), PolicyKind.IDENTITY, SYNTAX),
    (with_stmt(Resource=None), PolicyKind.IDENTITY, "Policy statement must contain resources."),
    (with_stmt(Sid=7), PolicyKind.IDENTITY, SYNTAX),
    (with_stmt(Condition=[]), PolicyKind.IDENTITY, SYNTAX),
    (with_stmt(Condition={"StringEquals": "x"}), PolicyKind.IDENTITY, SYNTAX),
    (with_stmt(Condition={"StringEquals": {"sts:ExternalId": None}}), PolicyKind.IDENTITY, SYNTAX),
    (with_stmt(Condition={"StringEquals": {"sts:ExternalId": {"a": 1}}}), PolicyKind.IDENTITY, SYNTAX),
    (with_stmt(Condition={"StringEqualz": {"sts:ExternalId": "x"}}), PolicyKind.IDENTITY, SYNTAX),
    (with_stmt(Condition={"ForSomeValues:StringEquals": {"a:b": "x"}}), PolicyKind.IDENTITY, SYNTAX),
    (with_stmt(Condition={"servicecatalog:accountLevel": "self"}), PolicyKind.IDENTITY, SYNTAX),
    (trust_with(Principal={"Bogus": "x"}), PolicyKind.TRUST, SYNTAX),
    (trust_with(Principal=[ACCT]), PolicyKind.TRUST, SYNTAX),
    (trust_with(Principal={"AWS": [ACCT, 1]}), PolicyKind.TRUST, SYNTAX),
    (trust_with(NotPrincipal={"AWS": ACCT}), PolicyKind.TRUST, SYNTAX),       # with Principal too
    (with_stmt(Effect="allow"), PolicyKind.IDENTITY, "The policy failed legacy parsing"),
    (with_stmt(Condition={"DateLessThan": {"aws:CurrentTime": "yesterday"}}), PolicyKind.IDENTITY,
     "The policy failed legacy parsing"),
    (with_stmt(Condition={"NumericLessThan": {"aws:MultiFactorAuthAge": "an hour"}}), PolicyKind.IDENTITY,
     "The policy failed legacy parsing"),
    (with_stmt(Condition={"IpAddress": {"aws:SourceIp": "10.0.0.300/8"}}), PolicyKind.IDENTITY,
     "The policy failed legacy parsing"),
    (with_stmt(Resource="arn:aws:s3::bucket"), PolicyKind.IDENTITY, "The policy failed legacy parsing"),
    (with_stmt(Sid="has-dash"), PolicyKind.IDENTITY,
     "Statement IDs (SID) must be alpha-numeric. Check that your input satisfies the regular "
     "expression [0-9A-Za-z]*"),
    (raw(Statement=[{**STMT, "Sid": "A"}, {**STMT, "Sid": "A"}]), PolicyKind.IDENTITY,
     "Statement IDs (SID) in a single policy must be unique."),
    (with_stmt(Action=None), PolicyKind.IDENTITY, "Policy statement must contain actions."),
    (with_stmt(Action=[]), PolicyKind.IDENTITY, "Policy statement must contain actions."),
    (with_stmt(Resource=[]), PolicyKind.IDENTITY, "Policy statement must contain resources."),
    (with_stmt(Principal={"AWS": ACCT}), PolicyKind.IDENTITY, NO_PRINCIPAL_HERE),
    (with_stmt(Principal="*"), PolicyKind.IDENTITY, NO_PRINCIPAL_HERE),
    (with_stmt(NotPrincipal={"AWS": ACCT}), PolicyKind.IDENTITY, NO_PRINCIPAL_HERE),
    (trust_with(Resource="*"), PolicyKind.TRUST, "Has prohibited field Resource"),
    (trust_with(NotResource="*"), PolicyKind.TRUST, "Has prohibited field NotResource"),
    (trust_with(Principal=None, NotPrincipal={"AWS": ACCT}), PolicyKind.TRUST,
     "Has prohibited field NotPrincipal"),
    (trust_with(Principal=None), PolicyKind.TRUST,
     "Invalid principal in policy: com.amazon.balsa.error.InvalidPolicyException: "
     "The passed in policy has a statement with no principals!"),
    (trust_with(Principal={"AWS": []}), PolicyKind.TRUST,
     "Invalid principal in policy: com.amazon.balsa.error.InvalidPolicyException: "
     "The passed in policy has a statement with no principals!"),
    (trust_with(Action=None), PolicyKind.TRUST, "Policy statement must contain actions."),
    (with_stmt(), PolicyKind.RESOURCE, "Missing required field Principal"),
    (trust_with(), PolicyKind.RESOURCE, "Policy statement must contain resources."),
    (trust_with(Principal={"AWS": "arn:aws:iam::111122223333:role/*"}), PolicyKind.TRUST,
     'Invalid principal in policy: "AWS":"arn:aws:iam::111122223333:role/*"'),
    (trust_with(Principal={"AWS": "alice"}), PolicyKind.TRUST, 'Invalid principal in policy: "AWS":"alice"'),
    (trust_with(Principal={"AWS": "12345"}), PolicyKind.TRUST, 'Invalid principal in policy: "AWS":"12345"'),
    (trust_with(Principal={"Service": ""}), PolicyKind.TRUST, 'Invalid principal in policy: "SERVICE":""'),
    (with_stmt(Action="AssumeRole"), PolicyKind.IDENTITY,
     "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc."),
    (with_stmt(Action=""), PolicyKind.IDENTITY,
     "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc."),
    (with_stmt(Condition={"Bool": {"MultiFactorAuthPresent": "true"}}), PolicyKind.IDENTITY,
     "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc."),
    (with_stmt(Action="sts:Assume:Role"), PolicyKind.IDENTITY,
     "Actions/Condition can contain only one colon."),
    (with_stmt(Action="*:Get*"), PolicyKind.IDENTITY,
     "Action vendors (e.g., aws, ec2, etc.) must not contain wildcards"),
    (with_stmt(Action="s_t s:Get"), PolicyKind.IDENTITY, "Vendor s_t s is not valid"),
    (with_stmt(Resource="bucket"), PolicyKind.IDENTITY, 'Resource bucket must be in ARN format or "*".'),
    (with_stmt(Resource=""), PolicyKind.IDENTITY, 'Resource  must be in ARN format or "*".'),
    (with_stmt(Resource="urn:aws:s3:::b"), PolicyKind.IDENTITY,
     'Resource urn:aws:s3:::b must be in ARN format or "*".'),
    (with_stmt(Resource="arn:aws:*:::b"), PolicyKind.IDENTITY,
     "Resource vendor must be fully qualified and cannot contain regexes."),
    (with_stmt(Resource="arn:aws"), PolicyKind.IDENTITY,
     "Resource vendor must be fully qualified and cannot contain regexes."),
]


@pytest.mark.parametrize("text, kind, message", MALFORMED)
def test_malformed(text, kind, message):
    with pytest.raises(MalformedPolicyDocument) as info:
        parse_policy(text, kind)
    assert info.value.message == message
    assert info.value.code == "MalformedPolicyDocument"
    assert info.value.http_status == 400


def test_version_required_only_on_request():
    no_version = json.dumps({"Statement": STMT})
    old = json.dumps({"Version": "2008-10-17", "Statement": STMT})
    assert parse_policy(no_version).version is None
    assert parse_policy(old).version == "2008-10-17"
    for text in (no_version, old):
        with pytest.raises(MalformedPolicyDocument, match="must be version 2012-10-17 or greater"):
            parse_policy(text, require_current_version=True)
    assert parse_policy(raw(Statement=STMT), require_current_version=True).version == "2012-10-17"


@pytest.mark.parametrize("text, kind", [
    (json.dumps({"Statement": STMT}), PolicyKind.IDENTITY),                  # Statement as object
    (raw(Statement=[STMT], Id="x"), PolicyKind.IDENTITY),
    (with_stmt(Sid=""), PolicyKind.IDENTITY),
    (raw(Statement=[{**STMT, "Sid": ""}, {**STMT, "Sid": ""}]), PolicyKind.IDENTITY),  # empty Sids repeat
    (with_stmt(Action="*", Resource=["*", "arn:aws:s3:::b/*", "arn:aws:ec2:*"]), PolicyKind.IDENTITY),
    (with_stmt(Condition={"NumericLessThan": {"aws:MultiFactorAuthAge": 3600}}), PolicyKind.IDENTITY),
    (with_stmt(Condition={"Bool": {"aws:SecureTransport": [False]}}), PolicyKind.IDENTITY),
    (with_stmt(Condition={"ForAllValues:StringLikeIfExists": {"aws:TagKeys": ["a*"]}}), PolicyKind.IDENTITY),
    (json.dumps({"Statement": [{**TRUST_STMT, "Action": ["sts:AssumeRole", "sts:TagSession"]}]}),
     PolicyKind.TRUST),
    (trust_with(Principal="*"), PolicyKind.TRUST),
    (trust_with(Principal={"AWS": [f"arn:aws:iam::{ACCT}:root", USER, ROLE, SESSION,
                                   f"arn:aws:sts::{ACCT}:federated-user/f", "*"]}), PolicyKind.TRUST),
    (trust_with(Principal={"Service": ["ec2.amazonaws.com"], "Federated": "accounts.google.com"}),
     PolicyKind.TRUST),
    (trust_with(Resource="*", Principal={"CanonicalUser": "abc"}), PolicyKind.RESOURCE),
    (raw(Statement=[{**STMT, "Effect": "Deny", "NotPrincipal": {"AWS": ACCT}}]), PolicyKind.RESOURCE),
])
def test_valid_documents(text, kind):
    policy = parse_policy(text, kind)
    assert policy.kind is kind and policy.statements


def test_parse_is_cached_and_split_by_effect():
    text = raw(Statement=[STMT, {**STMT, "Effect": "Deny", "Sid": "D"}])
    policy = parse_policy(text)
    assert parse_policy(text) is policy
    assert [s.sid for s in policy.denies] == ["D"] and len(policy.allows) == 1


# --- sizes and messages ---------------------------------------------------------------

@pytest.mark.parametrize("text, size", [
    ('{"a": 1}', 7),
    ('{\n  "a" :\t1\r\n}', 7),
    ('"a b"', 4),                        # whitespace inside strings is not counted either
    ("\u00a0x\u2003", 1),
    ("", 0),
])
def test_policy_size(text, size):
    assert policy_size(text) == size


def test_policy_records_its_size():
    compact = json.dumps({"Version": "2012-10-17", "Statement": STMT}, separators=(",", ":"))
    pretty = json.dumps({"Version": "2012-10-17", "Statement": STMT}, indent=4)
    assert parse_policy(pretty).size == parse_policy(compact).size == len(compact)


def test_access_denied_message():
    assert access_denied_message(USER, "sts:AssumeRole", ROLE) == (
        "User: arn:aws:iam::111122223333:user/alice is not authorized to perform: sts:AssumeRole "
        "on resource: arn:aws:iam::111122223333:role/app")


# --- the request context --------------------------------------------------------------

def test_build_request_context_keys():
    request = build_request_context(
        "sts:AssumeRole", ROLE, SESSION, role_arn=CALLER_ROLE, now=NOW, mfa_present=True,
        mfa_age_seconds=42, token_issued_at=NOW - dt.timedelta(hours=1), external_id="abc",
        source_identity="alice", requested_region="eu-west-1", principal_tags={"Team": "blue"},
        user_id="AROAEXAMPLE:s1", extra={"aws:SourceIp": "127.0.0.1"})
    assert (request.principal_account, request.principal_type) == (ACCT, PrincipalType.ASSUMED_ROLE)
    assert dict(request.keys) == {
        "aws:principaltype": ("AssumedRole",), "aws:principalaccount": (ACCT,),
        "aws:principalarn": (CALLER_ROLE,), "aws:userid": ("AROAEXAMPLE:s1",),
        "sts:externalid": ("abc",), "aws:sourceidentity": ("alice",),
        "aws:requestedregion": ("eu-west-1",), "aws:currenttime": ("2026-01-01T00:00:00Z",),
        "aws:epochtime": (str(int(NOW.timestamp())),), "aws:multifactorauthpresent": ("true",),
        "aws:multifactorauthage": ("42",), "aws:tokenissuetime": ("2025-12-31T23:00:00Z",),
        "aws:principaltag/team": ("blue",), "aws:sourceip": ("127.0.0.1",)}


@pytest.mark.parametrize("arn, account, kind, principal_arn_key", [
    (USER, ACCT, PrincipalType.USER, USER),
    (f"arn:aws:iam::{ACCT}:root", ACCT, PrincipalType.ACCOUNT, f"arn:aws:iam::{ACCT}:root"),
    (SESSION, ACCT, PrincipalType.ASSUMED_ROLE, f"arn:aws:iam::{ACCT}:role/caller"),   # path unknown
    (f"arn:aws:sts::{ACCT}:federated-user/f", ACCT, PrincipalType.FEDERATED_USER,
     f"arn:aws:sts::{ACCT}:federated-user/f"),
    ("ec2.amazonaws.com", "", PrincipalType.ANONYMOUS, None),
])
def test_principal_read_from_arn(arn, account, kind, principal_arn_key):
    request = build_request_context("sts:AssumeRole", ROLE, arn)
    assert (request.principal_account, request.principal_type) == (account, kind)
    assert request.get("aws:PrincipalArn") == ((principal_arn_key,) if principal_arn_key else ())


def test_mfa_keys_absent_for_long_term_keys():
    assert ctx().get("aws:MultiFactorAuthPresent") == ()
    assert ctx(mfa_present=False, mfa_age_seconds=5).get("aws:MultiFactorAuthAge") == ()
    assert ctx(mfa_present=False).get("AWS:MULTIFACTORAUTHPRESENT") == ("false",)


def test_request_context_normalises_keys():
    request = RequestContext("sts:AssumeRole", ROLE, USER, ACCT, keys={
        "AWS:SourceIp": "::1", "aws:TagKeys": ["a", "b"], "aws:SecureTransport": True,
        "aws:Gone": None, "aws:Empty": []})
    assert dict(request.keys) == {"aws:sourceip": ("::1",), "aws:tagkeys": ("a", "b"),
                                  "aws:securetransport": ("true",)}
    with pytest.raises(TypeError):
        request.keys["x"] = ("y",)


# --- properties -----------------------------------------------------------------------

def reference_glob(pattern: str, text: str) -> bool:
    """Plain dynamic-programming wildcard match: ``*`` any run, ``?`` one char."""
    row = [True] + [False] * len(text)
    for p in pattern:
        if p == "*":
            for j in range(1, len(row)):
                row[j] = row[j] or row[j - 1]
        else:
            row = [False] + [row[j] and (p == "?" or p == text[j]) for j in range(len(text))]
    return row[-1]


GLOB_ALPHABET = "ab*?:/\n."


@settings(max_examples=400, deadline=None)
@given(st.text(GLOB_ALPHABET, max_size=12), st.text("ab:/\n.*?", max_size=16))
def test_glob_matches_fnmatch(pattern, text):
    # fnmatchcase has the same * and ? semantics when the pattern holds no "[".
    assert (compile_glob(pattern).fullmatch(text) is not None) == fnmatch.fnmatchcase(text, pattern)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=10), st.text(max_size=14))
def test_glob_matches_reference_for_any_characters(pattern, text):
    assert (compile_glob(pattern).fullmatch(text) is not None) == reference_glob(pattern, text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text("aB*?:", max_size=8), min_size=1, max_size=4), st.text("abAB:", max_size=10))
def test_action_patterns_fold_case(patterns, action):
    compiled = Patterns.compile(tuple(patterns), fold_case=True, variables=False)
    expected = any(reference_glob(p.lower(), action.lower()) for p in patterns)
    assert compiled.matches(action.lower(), {}) is expected


FUZZ_POLICIES = [
    identity(allow(["sts:*", "iam:Get?ser"],
                   ["arn:aws:iam::*:role/*", "arn:aws:iam::*:user/${aws:username}"]),
             {"Effect": "Deny", "NotAction": "iam:*", "NotResource": "arn:aws:iam::*:*",
              "Condition": {"StringLike": {"sts:ExternalId": "*x*"},
                            "BoolIfExists": {"aws:MultiFactorAuthPresent": "false"},
                            "NumericLessThanIfExists": {"aws:MultiFactorAuthAge": "10"}}}),
]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40), st.text(max_size=80), st.text(max_size=40), st.none() | st.text(max_size=8))
def test_random_requests_never_crash(action, resource, principal, external_id):
    request = build_request_context(action, resource, principal, external_id=external_id,
                                    mfa_present=bool(external_id), mfa_age_seconds=3)
    decision = evaluate(request, FUZZ_POLICIES, session_policies=FUZZ_POLICIES)
    assert decision.reason in (ALLOWED, EXPLICIT_DENY, NO_ALLOW)
    assert evaluate_trust(request, trust({"Effect": "Allow", "Principal": "*", "Action": "*"})).allowed


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=6)
    | st.sampled_from(["Allow", "Deny", "*", "sts:AssumeRole", "arn:aws:iam::1:role/x", ACCT]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.sampled_from(["Version", "Statement", "Effect", "Action", "NotAction", "Resource", "Principal",
                         "AWS", "Condition", "StringEquals", "Bool", "Sid", "x:y", "2012-10-17"]),
        children, max_size=4),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(JSON, st.sampled_from(list(PolicyKind)))
def test_random_documents_parse_or_raise_malformed(document, kind):
    try:
        policy = parse_policy(json.dumps(document), kind)
    except MalformedPolicyDocument:
        return
    evaluate(ctx(), [policy]) if kind is PolicyKind.IDENTITY else evaluate_trust(ctx(), policy)


def test_many_stars_do_not_backtrack():
    pattern = "arn:" + "*a" * 40 + "*b"
    start = time.perf_counter()
    assert compile_glob(pattern).fullmatch("arn:" + "a" * 5000) is None
    assert compile_glob(pattern).fullmatch("arn:" + "a" * 5000 + "b") is not None
    assert time.perf_counter() - start < 0.5


# --- rules from the guide the engine once missed (tests/policy_cases.py has more) -------

def _resource(*statements):
    return parse_policy(doc(*statements), PolicyKind.RESOURCE)


def test_star_principal_grant_is_not_limited_by_boundary_or_session():
    # [IUG:reference_policies_elements_principal §IAM role principals]
    res = _resource({"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRole", "Resource": "*",
                     "Condition": {"ArnEquals": {"aws:PrincipalArn": CALLER_ROLE}}})
    request = ctx(principal=SESSION, role_arn=CALLER_ROLE)
    assert evaluate(request, [], session_policies=[identity(allow("iam:*"))], resource_policy=res).allowed
    assert evaluate(request, [], permissions_boundary=identity(allow("iam:*")), resource_policy=res).allowed


def test_not_principal_deny_spares_only_a_fully_named_caller():
    # [IUG:reference_policies_elements_notprincipal §NotPrincipal With Deny]
    bob = f"arn:aws:iam::{ACCT}:user/bob"
    res = _resource({"Effect": "Deny", "NotPrincipal": {"AWS": [bob, f"arn:aws:iam::{ACCT}:root"]},
                     "Action": "sts:*", "Resource": "*"})
    mine = [identity(allow())]
    assert evaluate(ctx(principal=bob), mine, resource_policy=res).allowed
    assert evaluate(ctx(principal=USER), mine, resource_policy=res).reason == EXPLICIT_DENY   # same account
    only_bob = _resource({"Effect": "Deny", "NotPrincipal": {"AWS": bob}, "Action": "sts:*", "Resource": "*"})
    assert evaluate(ctx(principal=bob), mine, resource_policy=only_bob).reason == EXPLICIT_DENY
    # a permissions boundary makes the NotPrincipal Deny apply whatever it names [IUG:access_policies_boundaries]
    assert evaluate(ctx(principal=bob), mine, resource_policy=res,
                    permissions_boundary=identity(allow("*"))).reason == EXPLICIT_DENY


def test_policy_variables_in_arn_conditions():
    # [IUG:reference_policies_variables §Condition element]: string and ARN operators
    policy = identity(allow(Condition={"ArnEquals": {"aws:PrincipalArn": f"arn:aws:iam::{ACCT}:user/${{aws:username}}"}}))
    assert evaluate(ctx(), [policy]).allowed
    assert not evaluate(ctx(extra={"aws:username": "bob"}), [policy]).allowed
    literal = identity(allow(Condition={"ArnLike": {"aws:PrincipalArn": f"arn:aws:iam::{ACCT}:user/${{*}}"}}))
    assert not evaluate(ctx(), [literal]).allowed          # ${*} is a literal star, not a wildcard


@pytest.mark.parametrize("text", [
    '{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Effect": "Deny", "Action": "*", "Resource": "*"}}',
    '{"Version": "2012-10-17", "Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}',
    '{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": '
    '{"StringEquals": {"aws:username": "a"}, "StringEquals": {"aws:username": "b"}}}}',
])
def test_duplicate_keys_are_syntax_errors(text):
    # [IUG:reference_policies_grammar §Policy grammar notes]
    with pytest.raises(MalformedPolicyDocument, match="^Syntax errors in policy.$"):
        parse_policy(text)


def test_trust_of_services_and_identity_providers_needs_no_identity_allow():
    # They have no identity policies; the role's account differs from their (empty) one.
    service = ctx(principal="ecs.amazonaws.com", principal_type=PrincipalType.SERVICE)
    decision = evaluate_trust(service, trust(trusting({"Service": "ecs.amazonaws.com"})))
    assert decision.allowed and not decision.needs_identity_allow
    web = ctx("sts:AssumeRoleWithWebIdentity", principal="accounts.google.com",
              principal_type=PrincipalType.WEB_IDENTITY)
    policy = trust({"Effect": "Allow", "Principal": {"Federated": "accounts.google.com"},
                    "Action": "sts:AssumeRoleWithWebIdentity"})
    assert evaluate_trust(web, policy) == Decision(True, ALLOWED, None, "trust", False)


def test_statements_for_an_action_are_remembered_within_bounds():
    policy = identity(allow("s3:Get*", Sid="Get"), deny("*", Sid="All"), allow("iam:*", Sid="Iam"),
                      {"Effect": "Allow", "NotAction": "s3:*", "Resource": "*", "Sid": "NotS3"})
    denies, allows = policy.for_action("s3:getobject")
    assert ([s.sid for s in denies], [s.sid for s in allows]) == (["All"], ["Get"])
    assert [s.sid for s in policy.for_action("iam:getuser")[1]] == ["Iam", "NotS3"]
    assert policy.for_action("s3:getobject") is policy.for_action("s3:getobject")
    for n in range(600):
        policy.for_action(f"svc:action{n}")
    assert len(policy._by_action) <= 256
    assert [s.sid for s in policy.for_action("s3:getobject")[1]] == ["Get"]

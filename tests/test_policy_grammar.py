"""``policy_document`` audited against the grammar of the IAM JSON policy language.

One test (or table) per rule of [IUG:reference_policies_grammar], in the order the page
gives them; each asserts the document is accepted, or refused with MalformedPolicyDocument
(HTTP 400) and IAM's exact message (the texts and their sources are in policy_document).
"""

from __future__ import annotations

import json

import pytest

from sts_backend.errors import MalformedPolicyDocument
from sts_backend.policy import build_request_context, evaluate
from sts_backend.policy_document import PolicyKind, parse_policy, policy_size

ACCT = "111122223333"
ALICE = f"arn:aws:iam::{ACCT}:user/alice"
STMT = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}
TRUST = {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"AWS": ACCT}}
SYNTAX = "Syntax errors in policy."
NO_PRINCIPAL_HERE = "Policy document should not specify a principal."
NO_PRINCIPALS = ("Invalid principal in policy: com.amazon.balsa.error.InvalidPolicyException: "
                 "The passed in policy has a statement with no principals!")


def refused(text: str, message: str, kind: PolicyKind = PolicyKind.IDENTITY, **kw) -> None:
    with pytest.raises(MalformedPolicyDocument) as info:
        parse_policy(text, kind, **kw)
    assert (info.value.code, info.value.http_status, info.value.message) == \
        ("MalformedPolicyDocument", 400, message)


def doc(*statements, **top) -> str:
    return json.dumps({"Version": "2012-10-17", **top, "Statement": list(statements)})


# <version_block> = "Version" : ("2008-10-17" | "2012-10-17") -----------------------------

@pytest.mark.parametrize("version", ["2012-10-17", "2008-10-17"])
def test_both_versions_are_accepted(version):
    assert parse_policy(json.dumps({"Version": version, "Statement": STMT})).version == version


@pytest.mark.parametrize("version", ["2012-10-18", "2012-10-17 ", "", 2012, None, ["2012-10-17"]])
def test_other_versions_are_syntax_errors(version):
    refused(json.dumps({"Version": version, "Statement": STMT}), SYNTAX)


def test_version_is_optional_but_managed_policies_require_the_current_one():
    # <version_block?>; CreatePolicy wants 2012-10-17 [IUG:reference_policies_elements_version]
    assert parse_policy(json.dumps({"Statement": STMT})).version is None
    for text in (json.dumps({"Statement": STMT}), json.dumps({"Version": "2008-10-17", "Statement": STMT})):
        refused(text, "Policy document must be version 2012-10-17 or greater.", require_current_version=True)


@pytest.mark.parametrize("version, allowed", [("2012-10-17", True), ("2008-10-17", False), (None, False)])
def test_policy_variables_only_in_2012_10_17(version, allowed):
    # "variables such as ${aws:username} aren't recognized as variables and are instead
    # treated as literal strings" [IUG:reference_policies_elements_version]
    body = {"Statement": {**STMT, "Resource": "arn:aws:s3:::b/${aws:username}/*"}}
    if version:
        body["Version"] = version
    request = build_request_context("s3:GetObject", "arn:aws:s3:::b/alice/k", ALICE)
    assert evaluate(request, [parse_policy(json.dumps(body))]).allowed is allowed
    literal = build_request_context("s3:GetObject", "arn:aws:s3:::b/${aws:username}/k", ALICE)
    assert evaluate(literal, [parse_policy(json.dumps(body))]).allowed is not allowed


# <id_block> = "Id" : <policy_id_string> --------------------------------------------------

def test_id_is_a_string_with_spaces_allowed():
    assert parse_policy(doc(STMT, Id="Admin Policy 1")).id == "Admin Policy 1"
    refused(doc(STMT, Id=7), SYNTAX)


# <statement_block> = "Statement" : [ <statement>, ... ] -----------------------------------

def test_statement_is_an_object_or_a_list_of_objects():
    single = parse_policy(json.dumps({"Version": "2012-10-17", "Statement": STMT}))
    listed = parse_policy(doc(STMT))
    assert single.statements == listed.statements and len(listed.statements) == 1
    assert len(parse_policy(doc(STMT, {**STMT, "Effect": "Deny"})).statements) == 2


@pytest.mark.parametrize("statement", [[], "x", [STMT, "x"], [[STMT]], None, {}])
def test_statement_must_hold_statements(statement):
    refused(json.dumps({"Version": "2012-10-17", "Statement": statement}), SYNTAX)


def test_statement_is_required_and_top_level_elements_are_known():
    refused(json.dumps({"Version": "2012-10-17"}), SYNTAX)
    refused(doc(STMT, Extra="x"), SYNTAX)
    refused("[]", SYNTAX)
    refused("{not json", SYNTAX)


# Notes: "Individual elements must not contain multiple instances of the same key" ------------

@pytest.mark.parametrize("text", [
    '{"Version": "2012-10-17", "Statement": [], "Statement": [%s]}' % json.dumps(STMT),
    '{"Statement": {"Effect": "Deny", "Effect": "Allow", "Action": "*", "Resource": "*"}}',
    '{"Statement": {"Effect": "Allow", "Action": "s3:GetObject", "Action": "*", "Resource": "*"}}',
    '{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"Bool": '
    '{"aws:SecureTransport": "true", "aws:SecureTransport": "false"}}}}',
])
def test_a_key_twice_in_one_object_is_a_syntax_error(text):
    refused(text, SYNTAX)


def test_a_key_twice_in_a_principal_map_is_a_syntax_error():
    text = '{"Statement": {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"AWS": "%s", "AWS": "*"}}}' % ACCT
    refused(text, SYNTAX, PolicyKind.TRUST)


# Notes: "Blocks can appear in any order" ------------------------------------------------------

def test_blocks_in_any_order():
    forward = json.dumps({"Version": "2012-10-17", "Id": "x", "Statement": [
        {"Sid": "A", "Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": "true"}}}]})
    backward = json.dumps({"Statement": [
        {"Condition": {"Bool": {"aws:SecureTransport": "true"}}, "Resource": "*", "Action": "s3:*", "Effect": "Allow", "Sid": "A"}],
        "Id": "x", "Version": "2012-10-17"})
    assert parse_policy(forward).statements == parse_policy(backward).statements


# <effect_block> = "Effect" : ("Allow" | "Deny") -------------------------------------------

@pytest.mark.parametrize("effect, message", [
    (None, SYNTAX), ("Permit", SYNTAX), (True, SYNTAX),
    ("allow", "The policy failed legacy parsing"), ("DENY", "The policy failed legacy parsing"),
])
def test_effect_is_allow_or_deny(effect, message):
    statement = {k: v for k, v in {**STMT, "Effect": effect}.items() if v is not None}
    refused(doc(statement), message)


# <sid_block> = "Sid" : <sid_string> ------------------------------------------------------------

def test_sids_are_alphanumeric_and_unique():
    refused(doc({**STMT, "Sid": "has space"}),
            "Statement IDs (SID) must be alpha-numeric. Check that your input satisfies the regular "
            "expression [0-9A-Za-z]*")
    refused(doc({**STMT, "Sid": "One"}, {**STMT, "Effect": "Deny", "Sid": "One"}),
            "Statement IDs (SID) in a single policy must be unique.")
    assert parse_policy(doc({**STMT, "Sid": "One"}, {**STMT, "Sid": "one"})).statements   # case-sensitive
    assert parse_policy(doc({**STMT, "Sid": ""}, {**STMT, "Sid": ""})).statements         # empty: no id
    refused(doc({**STMT, "Sid": 1}), SYNTAX)


# <principal_block> = ("Principal" | "NotPrincipal") : ("*" | <principal_map>) ----------------

@pytest.mark.parametrize("element", [{"Principal": "*"}, {"Principal": {"AWS": ACCT}}, {"NotPrincipal": {"AWS": ACCT}}])
def test_no_principal_in_identity_policies(element):
    refused(doc({**STMT, **element}), NO_PRINCIPAL_HERE)


def test_principal_required_in_trust_and_resource_policies():
    refused(doc({k: v for k, v in TRUST.items() if k != "Principal"}), NO_PRINCIPALS, PolicyKind.TRUST)
    refused(doc({**TRUST, "Principal": {"AWS": []}}), NO_PRINCIPALS, PolicyKind.TRUST)
    refused(doc(STMT), "Missing required field Principal", PolicyKind.RESOURCE)


def test_not_principal_in_resource_policies_not_in_trust_policies():
    resource = {**STMT, "Effect": "Deny", "NotPrincipal": {"AWS": ALICE}}
    assert parse_policy(doc(resource), PolicyKind.RESOURCE).statements[0].not_principal
    no_principal = {k: v for k, v in TRUST.items() if k != "Principal"}
    refused(doc({**no_principal, "NotPrincipal": {"AWS": ACCT}}), "Has prohibited field NotPrincipal", PolicyKind.TRUST)
    refused(doc({**resource, "Principal": "*"}), SYNTAX, PolicyKind.RESOURCE)     # not both


@pytest.mark.parametrize("principal", [
    "*", {"AWS": "*"}, {"AWS": [ACCT, f"arn:aws:iam::{ACCT}:root", ALICE]},
    {"Service": ["ecs.amazonaws.com", "elasticloadbalancing.amazonaws.com"]},
    {"Federated": "accounts.google.com"}, {"CanonicalUser": "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be"},
])
def test_principal_map_entries(principal):
    assert parse_policy(doc({**TRUST, "Principal": principal}), PolicyKind.TRUST).statements


@pytest.mark.parametrize("principal, message", [
    ({"Bogus": ACCT}, SYNTAX),
    ([ACCT], SYNTAX),
    ("everyone", SYNTAX),
    ({"AWS": f"arn:aws:iam::{ACCT}:user/*"}, f'Invalid principal in policy: "AWS":"arn:aws:iam::{ACCT}:user/*"'),
    ({"AWS": "arn:aws:sts::111122223333:assumed-role/app/*"},
     'Invalid principal in policy: "AWS":"arn:aws:sts::111122223333:assumed-role/app/*"'),
])
def test_principal_wildcards_only_alone(principal, message):
    # "you can use * only to specify everyone/anonymous" [IUG:reference_policies_grammar §Notes about string values]
    refused(doc({**TRUST, "Principal": principal}), message, PolicyKind.TRUST)


# <action_block> / <resource_block> ----------------------------------------------------------------

@pytest.mark.parametrize("statement, message", [
    ({"Effect": "Allow", "Resource": "*"}, "Policy statement must contain actions."),
    ({**STMT, "Action": []}, "Policy statement must contain actions."),
    ({**STMT, "Action": "GetObject"}, "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc."),
    ({**STMT, "Action": ["s3:GetObject", 1]}, SYNTAX),
    ({**STMT, "NotAction": "s3:PutObject"}, SYNTAX),
    ({"Effect": "Allow", "Action": "*"}, "Policy statement must contain resources."),
    ({**STMT, "Resource": []}, "Policy statement must contain resources."),
    ({**STMT, "Resource": "mybucket"}, 'Resource mybucket must be in ARN format or "*".'),
    ({**STMT, "NotResource": "*"}, SYNTAX),
])
def test_action_and_resource_blocks(statement, message):
    refused(doc(statement), message)


def test_action_and_resource_take_a_string_or_a_list():
    for action, resource in (("*", "*"), (["s3:Get*", "s3:List*"], ["arn:aws:s3:::b", "arn:aws:s3:::b/*"])):
        assert parse_policy(doc({"Effect": "Allow", "Action": action, "Resource": resource})).statements


def test_trust_policies_name_no_resource():
    refused(doc({**TRUST, "Resource": "*"}), "Has prohibited field Resource", PolicyKind.TRUST)


# <condition_block> = "Condition" : { <condition_type_string> : { <key> : <value_list> } } ---------

@pytest.mark.parametrize("value", ["x", 10, 1.5, True, ["a", 2, False]])
def test_condition_values_are_strings_numbers_or_booleans(value):
    assert parse_policy(doc({**STMT, "Condition": {"StringEquals": {"aws:PrincipalTag/t": value}}})).statements


@pytest.mark.parametrize("condition", [
    {"StringEquals": {"aws:PrincipalTag/t": None}},
    {"StringEquals": {"aws:PrincipalTag/t": {"a": "b"}}},
    {"StringEquals": {"aws:PrincipalTag/t": [["a"]]}},
    {"StringEquals": "x"},
    {"NoSuchOperator": {"aws:PrincipalTag/t": "x"}},
    {"NullIfExists": {"aws:PrincipalTag/t": "true"}},     # IfExists goes on any operator but Null
    ["StringEquals"],
])
def test_condition_shapes_that_are_syntax_errors(condition):
    refused(doc({**STMT, "Condition": condition}), SYNTAX)


# Notes: "Policy size calculations do not include white space characters" ----------------------------

def test_size_ignores_white_space():
    body = {"Version": "2012-10-17", "Statement": [{**STMT, "Sid": "A"}]}
    compact = json.dumps(body, separators=(",", ":"))
    pretty = json.dumps(body, indent=8)
    assert policy_size(pretty) == policy_size(compact) == len(compact)
    assert parse_policy(pretty).size == len(compact)
    assert policy_size('{"Id": "a b\tc"}') == len('{"Id":"abc"}')    # inside strings too

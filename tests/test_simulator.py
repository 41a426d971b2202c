"""The IAM policy simulator over a real SQLite store, results as botocore parses them.

Every call goes through ``iam.handle_iam`` (as the app dispatches it), is rendered
with ``wire.query.render_result`` and parsed back with botocore's own Query parser,
so what is asserted is what boto3 hands a user.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import sqlite3

import botocore.parsers
import botocore.session
import pytest

from sts_backend.app import READ_ONLY_ACTIONS
from sts_backend.errors import SenderError
from sts_backend.iam import Caller, bootstrap_admin, handle_iam, iam_resource_arn
from sts_backend.iam_simulator import ACTION_WORK_LIMIT, PAGE_WORK_BUDGET
from sts_backend.policy import ALLOWED, EXPLICIT_DENY, NO_ALLOW, RequestContext, evaluate
from sts_backend.policy_explain import explain
from sts_backend.policy_document import PolicyKind, parse_policy
from sts_backend.store import DB_NAME, Store
from tests.clocks import FixedClock
from wire.query import IAM_NAMESPACE, render_result

ACCOUNT = "123456789012"
OTHER = "210987654321"
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
_MODEL = botocore.session.get_session().get_service_model("iam")
TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "sts:AssumeRole"}]})

# Pretty-printed the way people write them: statement 1 spans lines 3-8, statement 2 lines 8-14.
TWO_STATEMENTS = """{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Sid": "ReadAll",
      "Effect": "Allow",
      "Action": ["s3:Get*", "s3:List*"],
      "Resource": "*"
    },
    {
      "Sid": "NoSecrets",
      "Effect": "Deny",
      "Action": "s3:GetObject",
      "Resource": "arn:aws:s3:::secrets/*"
    }
  ]
}"""


def doc(*statements: dict, version: str = "2012-10-17") -> str:
    return json.dumps({"Version": version, "Statement": list(statements)})


def allow(action="s3:*", resource="*", **extra) -> dict:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action="s3:*", resource="*", **extra) -> dict:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def pos(line: int, column: int) -> dict:
    return {"Line": line, "Column": column}


class Env:
    def __init__(self, store: Store, clock: FixedClock, caller: Caller, data_dir):
        self.store, self.clock, self.caller, self.data_dir = store, clock, caller, data_dir

    def __call__(self, action: str, **params) -> dict:
        """The result as boto3 would return it (ResponseMetadata dropped)."""
        result = handle_iam(action, params, self.caller, self.store, self.clock)
        xml = render_result(action, IAM_NAMESPACE, result, "req-1")
        parsed = botocore.parsers.QueryParser().parse(
            {"body": xml, "headers": {}, "status_code": 200}, _MODEL.operation_model(action).output_shape)
        parsed.pop("ResponseMetadata")
        return parsed

    def error(self, action: str, **params) -> SenderError:
        with pytest.raises(SenderError) as info:
            handle_iam(action, params, self.caller, self.store, self.clock)
        return info.value

    def custom(self, *policies: str, actions=("s3:GetObject",), **params) -> list[dict]:
        return self("SimulateCustomPolicy", PolicyInputList=list(policies), ActionNames=list(actions),
                    **params)["EvaluationResults"]


@pytest.fixture(scope="module")
def iam(tmp_path_factory):
    """One store for the module (creating one costs more than the tests): tests name their own entities."""
    clock = FixedClock(T0)
    store_dir = tmp_path_factory.mktemp("simulator") / "data"
    store = Store.create(store_dir, ACCOUNT, clock)
    admin, _ = bootstrap_admin(store)
    yield Env(store, clock, Caller(ACCOUNT, admin.arn, "user", "admin"), store_dir)
    store.close()


# ---- decisions, matched statements, positions ---------------------------------------------

def test_allowed_explicit_deny_and_implicit_deny_with_positions(iam):
    results = iam.custom(TWO_STATEMENTS, actions=("s3:ListBucket", "s3:GetObject", "ec2:RunInstances"),
                         ResourceArns=["arn:aws:s3:::secrets/key"])
    listed, read, ec2 = results
    read_all = {"SourcePolicyId": "PolicyInputList.1", "SourcePolicyType": "IAM Policy",
                "StartPosition": pos(3, 17), "EndPosition": pos(9, 6)}
    no_secrets = {"SourcePolicyId": "PolicyInputList.1", "SourcePolicyType": "IAM Policy",
                  "StartPosition": pos(9, 6), "EndPosition": pos(15, 6)}
    assert (listed["EvalDecision"], listed["MatchedStatements"]) == ("allowed", [read_all])
    assert (read["EvalDecision"], read["MatchedStatements"]) == ("explicitDeny", [no_secrets])
    assert (ec2["EvalDecision"], ec2["MatchedStatements"]) == ("implicitDeny", [])
    assert [r["EvalActionName"] for r in results] == ["s3:ListBucket", "s3:GetObject", "ec2:RunInstances"]
    assert read["EvalResourceName"] == "arn:aws:s3:::secrets/key"   # the one resource asked about
    assert read["ResourceSpecificResults"] == [{   # no MissingContextValues when empty (a recorded AWS answer)
        "EvalResourceName": "arn:aws:s3:::secrets/key", "EvalResourceDecision": "explicitDeny",
        "MatchedStatements": [no_secrets]}]
    assert read["MissingContextValues"] == []


def only_statement(text: str) -> tuple[dict, dict]:
    """(start, end) of the one statement of a compact one-line document: the column of the "{"
    after "[", and the column after the statement's "}" (the text ends "}]}")."""
    assert text.count("[{") == 1 and text.endswith("}]}")
    return pos(1, text.index("[{") + 2), pos(1, len(text) - 1)


CLI_POLICY = ('{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"dynamodb:*","Resource":"*",'
              '"Condition":{"DateGreaterThan":{"aws:CurrentTime":"2018-08-16T12:00:00Z"}}}}')


@pytest.mark.parametrize("now, decision, matched", [
    ("2019-04-25T11:00:00Z", "allowed", [{"SourcePolicyId": "PolicyInputList.1", "StartPosition": pos(1, 38),
                                          "EndPosition": pos(1, 167)}]),
    ("2014-04-25T11:00:00Z", "implicitDeny", []),
])
def test_the_aws_cli_examples(iam, now, decision, matched):
    """awscli/examples/iam/simulate-custom-policy.rst, examples 1 and 2, member for member (the
    examples predate SourcePolicyType; it is "IAM Policy" as in every recorded answer)."""
    (result,) = iam.custom(CLI_POLICY, actions=("dynamodb:CreateBackup",), ContextEntries=[
        {"ContextKeyName": "aws:CurrentTime", "ContextKeyValues": [now], "ContextKeyType": "date"}])
    for statement in result["MatchedStatements"]:
        assert statement.pop("SourcePolicyType") == "IAM Policy"
    assert result == {"EvalActionName": "dynamodb:CreateBackup", "EvalResourceName": "*", "EvalDecision": decision,
                      "MatchedStatements": matched, "MissingContextValues": []}


def test_without_resource_arns_one_result_per_action_on_star(iam):
    policy = doc(allow("s3:GetObject"))
    start, end = only_statement(policy)
    assert start == pos(1, 41)                       # as in observed AWS answers for json.dumps documents
    (result,) = iam.custom(policy)
    assert result == {"EvalActionName": "s3:GetObject", "EvalResourceName": "*", "EvalDecision": "allowed",
                      "MatchedStatements": [{"SourcePolicyId": "PolicyInputList.1", "SourcePolicyType": "IAM Policy",
                                             "StartPosition": start, "EndPosition": end}],
                      "MissingContextValues": []}


def test_resources_aggregate_to_the_strictest_decision(iam):
    policy = doc(allow("s3:GetObject", "arn:aws:s3:::open/*"), deny("s3:GetObject", "arn:aws:s3:::shut/*"))
    resources = ["arn:aws:s3:::open/a", "arn:aws:s3:::elsewhere/b", "arn:aws:s3:::shut/c"]
    (result,) = iam.custom(policy, ResourceArns=resources)
    decisions = [(r["EvalResourceName"], r["EvalResourceDecision"]) for r in result["ResourceSpecificResults"]]
    assert decisions == list(zip(resources, ["allowed", "implicitDeny", "explicitDeny"]))
    assert result["EvalDecision"] == "explicitDeny"
    assert result["EvalResourceName"] == "*"            # several resources, no ARN-format table: "*"
    assert result["MatchedStatements"] == result["ResourceSpecificResults"][2]["MatchedStatements"]
    assert result["EvalDecisionDetails"] == {}          # same account, resources given: present, empty
    (only_open,) = iam.custom(policy, ResourceArns=resources[:2])
    assert only_open["EvalDecision"] == "implicitDeny" and only_open["MatchedStatements"] == []
    assert iam.custom(policy, ResourceArns=resources[:1])[0]["EvalDecision"] == "allowed"


def test_several_input_policies_are_numbered(iam):
    results = iam.custom(doc(allow("ec2:*")), doc(deny("s3:GetObject")), doc(allow("s3:*")))
    assert [m["SourcePolicyId"] for m in results[0]["MatchedStatements"]] == ["PolicyInputList.2"]
    (allowed,) = iam.custom(doc(allow("ec2:*")), doc(allow("s3:Get*")), doc(allow("s3:*")))
    assert [m["SourcePolicyId"] for m in allowed["MatchedStatements"]] == ["PolicyInputList.2", "PolicyInputList.3"]


# ---- context: missing values and every ContextKeyType -------------------------------------

def test_missing_context_values_and_supplied_ones(iam):
    policy = doc(allow("s3:*", "arn:aws:s3:::home/${aws:username}/*",
                       Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}),
                 allow("ec2:*", Condition={"Bool": {"aws:SecureTransport": "true"}}))
    (result,) = iam.custom(policy, ResourceArns=["arn:aws:s3:::home/ana/x"])
    assert result["EvalDecision"] == "implicitDeny"
    assert result["MissingContextValues"] == ["aws:username", "aws:SourceIp"]   # only the s3 statement's
    assert result["ResourceSpecificResults"][0]["MissingContextValues"] == ["aws:username", "aws:SourceIp"]
    entries = [{"ContextKeyName": "aws:username", "ContextKeyValues": ["ana"], "ContextKeyType": "string"},
               {"ContextKeyName": "AWS:SourceIP", "ContextKeyValues": ["10.1.2.3"], "ContextKeyType": "ip"}]
    (result,) = iam.custom(policy, ResourceArns=["arn:aws:s3:::home/ana/x"], ContextEntries=entries)
    assert (result["EvalDecision"], result["MissingContextValues"]) == ("allowed", [])


def test_missing_context_values_come_only_from_statements_about_the_request(iam):
    policy = doc(allow("s3:*", "arn:aws:s3:::other/*", Condition={"StringEquals": {"s3:prefix": "a"}}),
                 allow("ec2:*", Condition={"Bool": {"aws:SecureTransport": "true"}}),
                 deny("s3:*", "arn:aws:s3:::mine/*", Condition={"NumericGreaterThan": {"s3:max-keys": "10"}}))
    (result,) = iam.custom(policy, ResourceArns=["arn:aws:s3:::mine/k"])
    assert result["MissingContextValues"] == ["s3:max-keys"]
    assert iam.custom(policy, actions=("ec2:RunInstances",))[0]["MissingContextValues"] == ["aws:SecureTransport"]


B64 = base64.b64encode(b"secret-ish").decode()


@pytest.mark.parametrize("kind, values, condition, decision", [
    ("string", ["prod"], {"StringEquals": {"k:v": "prod"}}, "allowed"),
    ("string", ["dev"], {"StringEquals": {"k:v": "prod"}}, "implicitDeny"),
    ("stringList", ["a", "b"], {"ForAllValues:StringEquals": {"k:v": ["a", "b", "c"]}}, "allowed"),
    ("stringList", ["a", "z"], {"ForAllValues:StringEquals": {"k:v": ["a", "b", "c"]}}, "implicitDeny"),
    ("numeric", ["5"], {"NumericLessThan": {"k:v": "10"}}, "allowed"),
    ("numeric", ["15"], {"NumericLessThan": {"k:v": "10"}}, "implicitDeny"),
    ("numericList", ["15", "5"], {"ForAnyValue:NumericLessThan": {"k:v": "10"}}, "allowed"),
    ("boolean", ["TRUE"], {"Bool": {"k:v": "true"}}, "allowed"),
    ("boolean", ["false"], {"Bool": {"k:v": "true"}}, "implicitDeny"),
    ("booleanList", ["false", "true"], {"ForAnyValue:Bool": {"k:v": "true"}}, "allowed"),
    ("ip", ["192.0.2.7"], {"IpAddress": {"k:v": "192.0.2.0/24"}}, "allowed"),
    ("ip", ["198.51.100.1"], {"IpAddress": {"k:v": "192.0.2.0/24"}}, "implicitDeny"),
    ("ipList", ["198.51.100.1", "192.0.2.9"], {"ForAnyValue:IpAddress": {"k:v": "192.0.2.0/24"}}, "allowed"),
    ("binary", [B64], {"BinaryEquals": {"k:v": B64}}, "allowed"),
    ("binaryList", ["AAAA", B64], {"ForAnyValue:BinaryEquals": {"k:v": B64}}, "allowed"),
    ("date", ["2019-04-25T11:00:00Z"], {"DateGreaterThan": {"k:v": "2018-08-16T12:00:00Z"}}, "allowed"),
    ("date", ["2018-04-25T11:00:00Z"], {"DateGreaterThan": {"k:v": "2018-08-16T12:00:00Z"}}, "implicitDeny"),
    ("dateList", ["2017-01-01T00:00:00Z", "1600000000"],
     {"ForAnyValue:DateGreaterThan": {"k:v": "2018-08-16T12:00:00Z"}}, "allowed"),
])
def test_context_entry_types(iam, kind, values, condition, decision):
    entry = {"ContextKeyName": "k:v", "ContextKeyValues": values, "ContextKeyType": kind}
    (result,) = iam.custom(doc(allow(Condition=condition)), ContextEntries=[entry])
    assert (result["EvalDecision"], result["MissingContextValues"]) == (decision, [])


@pytest.mark.parametrize("entry, message", [
    ({"ContextKeyName": "k:v", "ContextKeyValues": ["x"], "ContextKeyType": "numeric"}, "not a valid numeric"),
    ({"ContextKeyName": "k:v", "ContextKeyValues": ["yes"], "ContextKeyType": "boolean"}, "not a valid boolean"),
    ({"ContextKeyName": "k:v", "ContextKeyValues": ["10.0.0"], "ContextKeyType": "ipList"}, "not a valid ip"),
    ({"ContextKeyName": "k:v", "ContextKeyValues": ["***"], "ContextKeyType": "binary"}, "not a valid binary"),
    ({"ContextKeyName": "k:v", "ContextKeyValues": ["soon"], "ContextKeyType": "date"}, "not a valid date"),
    ({"ContextKeyName": "k:v", "ContextKeyValues": ["a", "b"], "ContextKeyType": "string"}, "exactly one value"),
    ({"ContextKeyValues": ["a"], "ContextKeyType": "string"}, "ContextKeyName"),
])
def test_context_entries_that_do_not_fit_their_type(iam, entry, message):
    e = iam.error("SimulateCustomPolicy", PolicyInputList=[doc(allow())], ActionNames=["s3:GetObject"],
                  ContextEntries=[entry])
    assert (e.code, e.http_status) == ("InvalidInput", 400) and message in e.message
    twice = [{"ContextKeyName": "k:v", "ContextKeyValues": ["a"]}, {"ContextKeyName": "K:V", "ContextKeyValues": ["b"]}]
    e = iam.error("SimulateCustomPolicy", PolicyInputList=[doc(allow())], ActionNames=["s3:GetObject"],
                  ContextEntries=twice)
    assert e.code == "InvalidInput" and "more than once" in e.message


# ---- pagination ---------------------------------------------------------------------------

def test_pagination(iam):
    actions = ["s3:GetObject", "s3:PutObject", "ec2:RunInstances"]
    first = iam("SimulateCustomPolicy", PolicyInputList=[doc(allow())], ActionNames=actions, MaxItems=2)
    assert first["IsTruncated"] is True and [r["EvalActionName"] for r in first["EvaluationResults"]] == actions[:2]
    rest = iam("SimulateCustomPolicy", PolicyInputList=[doc(allow())], ActionNames=actions, MaxItems=2,
               Marker=first["Marker"])
    assert rest["IsTruncated"] is False and "Marker" not in rest
    assert [(r["EvalActionName"], r["EvalDecision"]) for r in rest["EvaluationResults"]] == [
        ("ec2:RunInstances", "implicitDeny")]


def test_pages_are_bounded_by_work_and_huge_simulations_refused(iam):
    """100 statements x 100 resources is the most one action may cost (ACTION_WORK_LIMIT, 10,000
    pairs), and one such action fills a page (PAGE_WORK_BUDGET) whatever MaxItems says."""
    assert (ACTION_WORK_LIMIT, PAGE_WORK_BUDGET) == (10_000, 10_000)
    policy = doc(*[allow(f"s3:Get{i}*", f"arn:aws:s3:::b{i}/*") for i in range(100)])
    resources = [f"arn:aws:s3:::b0/{i}" for i in range(100)]
    first = iam("SimulateCustomPolicy", PolicyInputList=[policy], ActionNames=["s3:Get0", "s3:Get1", "s3:Put"],
                ResourceArns=resources, MaxItems=100)
    assert (len(first["EvaluationResults"]), first["IsTruncated"], first["Marker"]) == (1, True, "1")
    assert first["EvaluationResults"][0]["EvalDecision"] == "allowed"
    e = iam.error("SimulateCustomPolicy", PolicyInputList=[policy], ActionNames=["s3:Get0"],
                  ResourceArns=resources + ["arn:aws:s3:::b0/x"])
    assert e.code == "InvalidInput" and "10100" in e.message
    e = iam.error("SimulateCustomPolicy", PolicyInputList=[doc(allow())], ActionNames=["s3:Get0"], Marker="x")
    assert (e.code, e.message) == ("ValidationError", "Invalid Marker.")
    past = iam("SimulateCustomPolicy", PolicyInputList=[doc(allow())], ActionNames=["s3:Get0"], Marker="5")
    assert (past["EvaluationResults"], past["IsTruncated"]) == ([], False)


# ---- permissions boundaries ---------------------------------------------------------------

def test_boundary_input_limits_and_is_reported(iam):
    identity = doc(allow("s3:*"), allow("iam:*"))
    boundary = doc(allow("s3:*"), deny("s3:DeleteBucket"))
    s3, iam_call, delete = iam.custom(identity, actions=("s3:GetObject", "iam:CreateUser", "s3:DeleteBucket"),
                                      PermissionsBoundaryPolicyInputList=[boundary])
    assert (s3["EvalDecision"], s3["PermissionsBoundaryDecisionDetail"]) == (
        "allowed", {"AllowedByPermissionsBoundary": True})
    assert (iam_call["EvalDecision"], iam_call["PermissionsBoundaryDecisionDetail"]) == (
        "implicitDeny", {"AllowedByPermissionsBoundary": False})
    assert (delete["EvalDecision"], delete["PermissionsBoundaryDecisionDetail"]) == (
        "explicitDeny", {"AllowedByPermissionsBoundary": False})
    # a boundary's statements are not matched statements [EvaluationResult: identity and resource only]
    assert [m["SourcePolicyId"] for m in s3["MatchedStatements"]] == ["PolicyInputList.1"]
    assert delete["MatchedStatements"] == []
    assert "PermissionsBoundaryDecisionDetail" not in iam.custom(identity)[0]
    e = iam.error("SimulateCustomPolicy", PolicyInputList=[identity], ActionNames=["s3:GetObject"],
                  PermissionsBoundaryPolicyInputList=[boundary, boundary])
    assert e.code == "InvalidInput"


def test_principal_boundary_from_the_store_and_replaced_by_input(iam):
    iam("CreateUser", UserName="bounded")
    iam("PutUserPolicy", UserName="bounded", PolicyName="all", PolicyDocument=doc(allow("*")))
    arn = iam("CreatePolicy", PolicyName="s3only", PolicyDocument=doc(allow("s3:*")))["Policy"]["Arn"]
    with sqlite3.connect(iam.data_dir / DB_NAME) as conn:   # schema v3's column (set by another API)
        conn.execute("UPDATE users SET permissions_boundary = ? WHERE name = 'bounded'", (arn,))
    source = f"arn:aws:iam::{ACCOUNT}:user/bounded"
    s3, ec2 = iam("SimulatePrincipalPolicy", PolicySourceArn=source,
                  ActionNames=["s3:GetObject", "ec2:RunInstances"])["EvaluationResults"]
    assert (s3["EvalDecision"], ec2["EvalDecision"]) == ("allowed", "implicitDeny")
    assert ec2["PermissionsBoundaryDecisionDetail"] == {"AllowedByPermissionsBoundary": False}
    (ec2,) = iam("SimulatePrincipalPolicy", PolicySourceArn=source, ActionNames=["ec2:RunInstances"],
                 PermissionsBoundaryPolicyInputList=[doc(allow("ec2:*"))])["EvaluationResults"]
    assert ec2["EvalDecision"] == "allowed"


# ---- resource policies and accounts ---------------------------------------------------------

def resource_policy(principal: str, effect="Allow", action="s3:GetObject", resource="arn:aws:s3:::shared/*"):
    return doc({"Effect": effect, "Principal": {"AWS": principal}, "Action": action, "Resource": resource})


def test_resource_policy_alone_allows_in_the_same_account(iam):
    caller = f"arn:aws:iam::{ACCOUNT}:user/ana"
    start, end = only_statement(resource_policy(caller))
    (result,) = iam.custom(doc(allow("ec2:*")), ResourcePolicy=resource_policy(caller), CallerArn=caller,
                           ResourceArns=["arn:aws:s3:::shared/k"])
    assert result["EvalDecision"] == "allowed"
    assert result["MatchedStatements"] == [{"SourcePolicyId": "ResourcePolicy", "SourcePolicyType": "Resource Policy",
                                            "StartPosition": start, "EndPosition": end}]
    (other,) = iam.custom(doc(allow("ec2:*")), ResourcePolicy=resource_policy(f"arn:aws:iam::{ACCOUNT}:user/bo"),
                          CallerArn=caller, ResourceArns=["arn:aws:s3:::shared/k"])
    assert other["EvalDecision"] == "implicitDeny"
    (denied,) = iam.custom(doc(allow("s3:*")), ResourcePolicy=resource_policy(caller, "Deny"), CallerArn=caller,
                           ResourceArns=["arn:aws:s3:::shared/k"])
    assert denied["EvalDecision"] == "explicitDeny"
    assert [m["SourcePolicyType"] for m in denied["MatchedStatements"]] == ["Resource Policy"]


def test_cross_account_needs_both_sides_and_reports_each(iam):
    caller = f"arn:aws:iam::{OTHER}:user/visitor"
    common = {"ResourcePolicy": resource_policy(caller), "CallerArn": caller, "ResourceArns": ["arn:aws:s3:::shared/k"],
              "ResourceOwner": ACCOUNT}
    (both,) = iam.custom(doc(allow("s3:GetObject")), **common)
    assert both["EvalDecision"] == "allowed"
    assert both["EvalDecisionDetails"] == {"IAM Policy": "allowed", "Resource Policy": "allowed"}
    assert both["ResourceSpecificResults"][0]["EvalDecisionDetails"] == both["EvalDecisionDetails"]
    (one,) = iam.custom(doc(allow("ec2:*")), **common)
    assert one["EvalDecision"] == "implicitDeny"
    assert one["EvalDecisionDetails"] == {"IAM Policy": "implicitDeny", "Resource Policy": "allowed"}
    (same_owner,) = iam.custom(doc(allow("ec2:*")), **{**common, "ResourceOwner": OTHER})
    assert same_owner["EvalDecision"] == "allowed"   # same account now: naming the caller suffices
    assert same_owner["EvalDecisionDetails"] == {}


def test_resource_policy_needs_a_caller(iam):
    e = iam.error("SimulateCustomPolicy", PolicyInputList=[doc(allow())], ActionNames=["s3:GetObject"],
                  ResourcePolicy=resource_policy("*"))
    assert (e.code, e.http_status) == ("InvalidInput", 400)
    e = iam.error("SimulateCustomPolicy", PolicyInputList=[doc(allow())], ActionNames=["s3:GetObject"],
                  ResourcePolicy=resource_policy("*"), CallerArn=f"arn:aws:sts::{ACCOUNT}:assumed-role/r/s")
    assert e.code == "InvalidInput" and e.message.startswith("Invalid Entity Arn: ")
    e = iam.error("SimulateCustomPolicy", PolicyInputList=[doc(allow())], ActionNames=["s3:GetObject"],
                  ResourcePolicy=doc(allow()), CallerArn=f"arn:aws:iam::{ACCOUNT}:user/ana")
    assert (e.code, e.message) == ("MalformedPolicyDocument", "Missing required field Principal")


# ---- principals from the store ----------------------------------------------------------------

def test_principal_user_with_groups_and_managed_policies(iam):
    iam("CreateUser", UserName="ana", Path="/team/")
    iam("PutUserPolicy", UserName="ana", PolicyName="own", PolicyDocument=doc(allow("s3:GetObject")))
    managed = iam("CreatePolicy", PolicyName="ReadS3", PolicyDocument=doc(allow("s3:Get*")))["Policy"]["Arn"]
    iam("AttachUserPolicy", UserName="ana", PolicyArn=managed)
    iam("CreateGroup", GroupName="devs")
    iam("AddUserToGroup", GroupName="devs", UserName="ana")
    group_doc = doc(allow("s3:*"), deny("ec2:*"))
    iam("PutGroupPolicy", GroupName="devs", PolicyName="grp", PolicyDocument=group_doc)
    iam("AttachGroupPolicy", GroupName="devs", PolicyArn=managed)
    source = f"arn:aws:iam::{ACCOUNT}:user/team/ana"
    get, ec2 = iam("SimulatePrincipalPolicy", PolicySourceArn=source,
                   ActionNames=["s3:GetObject", "ec2:RunInstances"])["EvaluationResults"]
    assert [(m["SourcePolicyId"], m["SourcePolicyType"]) for m in get["MatchedStatements"]] == [
        ("own", "IAM Policy"), ("ReadS3", "IAM Policy"), ("grp", "IAM Policy")]
    assert ec2["EvalDecision"] == "explicitDeny"
    comma = group_doc.index("}, {") + 1                # the second statement starts at the comma
    assert ec2["MatchedStatements"] == [{"SourcePolicyId": "grp", "SourcePolicyType": "IAM Policy",
                                         "StartPosition": pos(1, comma + 1), "EndPosition": pos(1, len(group_doc) - 1)}]
    (group_view,) = iam("SimulatePrincipalPolicy", PolicySourceArn=f"arn:aws:iam::{ACCOUNT}:group/devs",
                        ActionNames=["s3:PutObject"])["EvaluationResults"]
    assert [m["SourcePolicyId"] for m in group_view["MatchedStatements"]] == ["grp"]
    (extra,) = iam("SimulatePrincipalPolicy", PolicySourceArn=source, ActionNames=["sqs:SendMessage"],
                   PolicyInputList=[doc(allow("sqs:*"))])["EvaluationResults"]
    assert [m["SourcePolicyId"] for m in extra["MatchedStatements"]] == ["PolicyInputList.1"]


def test_principal_role_and_resource_policy_caller(iam):
    iam("CreateRole", RoleName="app", AssumeRolePolicyDocument=TRUST)
    iam("PutRolePolicy", RoleName="app", PolicyName="rp", PolicyDocument=doc(allow("sqs:*")))
    role = f"arn:aws:iam::{ACCOUNT}:role/app"
    (result,) = iam("SimulatePrincipalPolicy", PolicySourceArn=role, ActionNames=["sqs:SendMessage"])[
        "EvaluationResults"]
    assert [(m["SourcePolicyId"], m["SourcePolicyType"]) for m in result["MatchedStatements"]] == [("rp", "IAM Policy")]
    e = iam.error("SimulatePrincipalPolicy", PolicySourceArn=role, ActionNames=["s3:GetObject"],
                  ResourcePolicy=resource_policy(role))
    assert e.code == "InvalidInput"   # a role source needs a CallerArn for the resource policy
    (result,) = iam("SimulatePrincipalPolicy", PolicySourceArn=role, ActionNames=["s3:GetObject"],
                    ResourcePolicy=resource_policy(role), CallerArn=role,
                    ResourceArns=["arn:aws:s3:::shared/k"])["EvaluationResults"]
    assert result["EvalDecision"] == "allowed"


@pytest.mark.parametrize("arn, code, message", [
    (f"arn:aws:iam::{ACCOUNT}:user/nobody", "NoSuchEntity", "The user with name nobody cannot be found."),
    (f"arn:aws:iam::{ACCOUNT}:role/nobody", "NoSuchEntity", "The role with name nobody cannot be found."),
    (f"arn:aws:iam::{ACCOUNT}:group/nobody", "NoSuchEntity", "The group with name nobody cannot be found."),
    (f"arn:aws:iam::{ACCOUNT}:user/wrongpath/admin", "NoSuchEntity", "The user with name admin cannot be found."),
    (f"arn:aws:sts::{ACCOUNT}:assumed-role/app/s", "InvalidInput",
     f"Invalid Entity Arn: arn:aws:sts::{ACCOUNT}:assumed-role/app/s does not clearly define entity type and name."),
    (f"arn:aws:iam::{OTHER}:user/admin", "InvalidInput",
     f"Invalid Policy Source Arn: caller's account {ACCOUNT} does not have access to policies in account {OTHER}"),
])
def test_unknown_or_invalid_sources(iam, arn, code, message):
    for action in ("SimulatePrincipalPolicy", "GetContextKeysForPrincipalPolicy"):
        params = {"PolicySourceArn": arn, **({"ActionNames": ["s3:GetObject"]} if action.startswith("Sim") else {})}
        e = iam.error(action, **params)
        assert (e.code, e.message, e.http_status) == (code, message, 404 if code == "NoSuchEntity" else 400)


@pytest.mark.parametrize("name", ["s3:*", "s3:Get*", "s3:GetObjec?", "GetObject", "s3:", ":GetObject", "a:b:c"])
def test_action_names_are_single_actions(iam, name):
    e = iam.error("SimulateCustomPolicy", PolicyInputList=[doc(allow())], ActionNames=["s3:GetObject", name])
    assert (e.code, e.http_status) == ("InvalidInput", 400) and name in e.message


def test_resource_owner_forms(iam):
    caller = f"arn:aws:iam::{OTHER}:user/visitor"
    common = {"ResourcePolicy": resource_policy(caller), "CallerArn": caller, "ResourceArns": ["arn:aws:s3:::shared/k"]}
    for owner in (ACCOUNT, f"arn:aws:iam::{ACCOUNT}:root"):
        (result,) = iam.custom(doc(allow("ec2:*")), ResourceOwner=owner, **common)
        assert result["EvalDecisionDetails"] == {"IAM Policy": "implicitDeny", "Resource Policy": "allowed"}
    e = iam.error("SimulateCustomPolicy", PolicyInputList=[doc(allow())], ActionNames=["s3:GetObject"],
                  ResourceOwner="someone")
    assert e.code == "InvalidInput"


def test_malformed_and_unsupported_inputs(iam):
    for params in ({"PolicyInputList": ["{not json"]}, {"PolicyInputList": [doc(allow())],
                                                        "PermissionsBoundaryPolicyInputList": ['{"Version": 1}']}):
        e = iam.error("SimulateCustomPolicy", ActionNames=["s3:GetObject"], **params)
        assert (e.code, e.message, e.http_status) == ("MalformedPolicyDocument", "Syntax errors in policy.", 400)
    e = iam.error("GetContextKeysForCustomPolicy", PolicyInputList=[doc({"Effect": "Allow", "Action": "s3:*"})])
    assert (e.code, e.message) == ("MalformedPolicyDocument", "Policy statement must contain resources.")
    e = iam.error("SimulateCustomPolicy", PolicyInputList=[doc(allow())], ActionNames=["s3:GetObject"],
                  OrderedOrganizationPolicyInputList=[{"ServiceControlPolicyInputList": [doc(allow())]}])
    assert e.code == "InvalidInput" and "OrderedOrganizationPolicyInputList" in e.message


def test_policy_exclusion_list(iam):
    iam("CreateUser", UserName="excl")
    iam("PutUserPolicy", UserName="excl", PolicyName="inl", PolicyDocument=doc(allow("s3:GetObject")))
    managed = iam("CreatePolicy", PolicyName="ExclS3", Path="/team/",
                  PolicyDocument=doc(allow("s3:*")))["Policy"]["Arn"]
    iam("AttachUserPolicy", UserName="excl", PolicyArn=managed)
    iam("CreateGroup", GroupName="exclg")
    iam("AddUserToGroup", GroupName="exclg", UserName="excl")
    iam("PutGroupPolicy", GroupName="exclg", PolicyName="inl", PolicyDocument=doc(allow("s3:Get*")))
    source = f"arn:aws:iam::{ACCOUNT}:user/excl"

    def matched(*identifiers, inputs=()):
        (result,) = iam("SimulatePrincipalPolicy", PolicySourceArn=source, ActionNames=["s3:GetObject"],
                        PolicyExclusionList=list(identifiers), PolicyInputList=list(inputs))["EvaluationResults"]
        return [(m["SourcePolicyId"], m["SourcePolicyType"]) for m in result["MatchedStatements"]]

    everything = [("inl", "IAM Policy"), ("ExclS3", "IAM Policy"), ("inl", "IAM Policy")]
    assert matched() == everything
    assert matched({"PolicyType": "inline"}) == [("ExclS3", "IAM Policy")]
    assert matched({"PolicyType": "user-managed"}) == [("inl", "IAM Policy"), ("inl", "IAM Policy")]
    assert matched({"PolicyArn": managed}) == matched({"PolicyArn": f"arn:aws:iam::{ACCOUNT}:policy/team/*"})
    assert matched({"PolicyArn": managed}) == [("inl", "IAM Policy"), ("inl", "IAM Policy")]
    inline = {"PolicyName": "inl", "AttachmentType": "group", "AttachmentName": "EXCLG"}
    assert matched({"InlinePolicyIdentifier": inline}) == [("inl", "IAM Policy"), ("ExclS3", "IAM Policy")]
    assert matched({"PolicyType": "inline"}, {"PolicyType": "user-managed"}, inputs=[doc(allow())]) == [
        ("PolicyInputList.1", "IAM Policy")]                            # passed-in policies are never excluded
    for ignored in ({"PolicyType": "scp"}, {"PolicyType": "aws-managed"}, {"PolicyType": "rcp"},
                    {"PolicyArn": f"arn:aws:iam::{ACCOUNT}:policy/Other"},
                    {"PolicyType": "user-managed", "PolicyArn": f"arn:aws:iam::{ACCOUNT}:policy/Other"}):
        assert matched(ignored) == everything, ignored
    for invalid in ({}, {"PolicyArn": "arn:aws:iam::*:policy/x"}, {"PolicyArn": "arn:aws:s3:::policy/x"}):
        e = iam.error("SimulatePrincipalPolicy", PolicySourceArn=source, ActionNames=["s3:GetObject"],
                      PolicyExclusionList=[invalid])
        assert (e.code, e.http_status) == ("InvalidInput", 400), invalid


def test_policy_exclusion_of_the_boundary(iam):
    iam("CreateUser", UserName="exclb")
    iam("PutUserPolicy", UserName="exclb", PolicyName="all", PolicyDocument=doc(allow("*")))
    arn = iam("CreatePolicy", PolicyName="ExclBoundary", PolicyDocument=doc(allow("s3:*")))["Policy"]["Arn"]
    with sqlite3.connect(iam.data_dir / DB_NAME) as conn:
        conn.execute("UPDATE users SET permissions_boundary = ? WHERE name = 'exclb'", (arn,))
    source = f"arn:aws:iam::{ACCOUNT}:user/exclb"
    for identifiers, decision in (([], "implicitDeny"), ([{"PolicyType": "permission-boundary"}], "allowed"),
                                  ([{"PolicyArn": arn}], "allowed")):
        (result,) = iam("SimulatePrincipalPolicy", PolicySourceArn=source, ActionNames=["ec2:RunInstances"],
                        PolicyExclusionList=identifiers)["EvaluationResults"]
        assert result["EvalDecision"] == decision, identifiers
        assert ("PermissionsBoundaryDecisionDetail" in result) is (not identifiers)


# ---- context keys -----------------------------------------------------------------------------

def test_get_context_keys(iam):
    conditioned = doc(allow("s3:*", "arn:aws:s3:::b/${aws:username}/*",
                            Condition={"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}}))
    assert iam("GetContextKeysForCustomPolicy", PolicyInputList=[conditioned, doc(allow(
        Condition={"Bool": {"AWS:CurrentTime": "x", "aws:SecureTransport": "true"}}))]) == {
        "ContextKeyNames": ["aws:username", "aws:CurrentTime", "aws:SecureTransport"]}
    iam("CreateUser", UserName="keys")
    iam("CreateGroup", GroupName="g")
    iam("AddUserToGroup", GroupName="g", UserName="keys")
    iam("PutGroupPolicy", GroupName="g", PolicyName="p",
        PolicyDocument=doc(allow(Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}})))
    source = f"arn:aws:iam::{ACCOUNT}:user/keys"
    assert iam("GetContextKeysForPrincipalPolicy", PolicySourceArn=source, PolicyInputList=[conditioned]) == {
        "ContextKeyNames": ["aws:SourceIp", "aws:username", "aws:CurrentTime"]}
    assert iam("GetContextKeysForPrincipalPolicy", PolicySourceArn=f"arn:aws:iam::{ACCOUNT}:user/admin") == {
        "ContextKeyNames": []}


# ---- authorization and lanes -----------------------------------------------------------------

def test_authorized_on_the_source_arn_and_served_read_only():
    caller = Caller(ACCOUNT, f"arn:aws:iam::{ACCOUNT}:user/admin", "user", "admin")
    source = {"PolicySourceArn": f"arn:aws:iam::{ACCOUNT}:role/app"}
    assert iam_resource_arn("SimulatePrincipalPolicy", source, caller, ACCOUNT) == source["PolicySourceArn"]
    assert iam_resource_arn("GetContextKeysForPrincipalPolicy", source, caller, ACCOUNT) == source["PolicySourceArn"]
    assert iam_resource_arn("SimulateCustomPolicy", {}, caller, ACCOUNT) == "*"
    assert iam_resource_arn("GetContextKeysForCustomPolicy", {}, caller, ACCOUNT) == "*"
    assert {"SimulatePrincipalPolicy", "SimulateCustomPolicy", "GetContextKeysForCustomPolicy",
            "GetContextKeysForPrincipalPolicy"} <= READ_ONLY_ACTIONS["iam"]


# ---- policy.explain ---------------------------------------------------------------------------

def req(action="s3:GetObject", resource="arn:aws:s3:::b/k", principal=f"arn:aws:iam::{ACCOUNT}:user/ana"):
    return RequestContext(action, resource, principal, principal.split(":")[4])


@pytest.mark.parametrize("identity, session, boundary, reason, matched", [
    ([doc(allow(), allow("s3:Get*"))], [], None, ALLOWED, [("identity", 0, 0), ("identity", 0, 1)]),
    ([doc(allow()), doc(deny("s3:GetObject"))], [], None, EXPLICIT_DENY, [("identity", 1, 0)]),
    ([doc(allow())], [doc(allow("ec2:*"))], None, NO_ALLOW, []),
    ([doc(allow())], [doc(allow("s3:GetObject"))], None, ALLOWED, [("identity", 0, 0), ("session", 0, 0)]),
    ([doc(allow())], [], doc(allow("ec2:*"), deny()), EXPLICIT_DENY, [("boundary", 0, 1)]),
    ([doc(allow("ec2:*"))], [], None, NO_ALLOW, []),
])
def test_explain_agrees_with_evaluate(identity, session, boundary, reason, matched):
    policies = [parse_policy(t) for t in identity]
    sessions = [parse_policy(t) for t in session]
    bound = parse_policy(boundary) if boundary else None
    found = explain(req(), policies, session_policies=sessions, permissions_boundary=bound)
    assert found.decision == evaluate(req(), policies, session_policies=sessions, permissions_boundary=bound)
    assert (found.decision.reason, list(found.matched)) == (reason, matched)
    assert found.boundary_allows is (None if bound is None else False)


def test_explain_resource_owner_makes_account_less_arns_cross_account():
    resource = parse_policy(resource_policy(f"arn:aws:iam::{ACCOUNT}:user/ana", resource="*"), PolicyKind.RESOURCE)
    request = req(resource="arn:aws:s3:::b/k")
    same = explain(request, [], resource_policy=resource)
    assert same.decision.allowed and not same.cross_account
    other = explain(request, [], resource_policy=resource, resource_account=OTHER)
    assert not other.decision.allowed and other.cross_account
    assert dict(other.layers) == {"identity": NO_ALLOW, "resource": ALLOWED}
    both = explain(request, [parse_policy(doc(allow()))], resource_policy=resource, resource_account=OTHER)
    assert both.decision.allowed and [m[0] for m in both.matched] == ["identity", "resource"]

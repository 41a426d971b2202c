"""boto3's policy-simulator calls against the backend over a real loopback socket.

The backend is served as ``rolecall backend serve`` serves it (``ThreadedBackend``
from ``test_backend_boto3``: the async app, read lane and write lane, in its own
thread); the simulator calls take the read lane, whose connection refuses writes.
"""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from tests.interop.test_backend_boto3 import ACCOUNT, ThreadedBackend

pytestmark = pytest.mark.interop

POLICY = """{
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "Read",
            "Effect": "Allow",
            "Action": "s3:Get*",
            "Resource": "*",
            "Condition": {"Bool": {"aws:SecureTransport": "true"}}
        },
        {
            "Sid": "NoDelete",
            "Effect": "Deny",
            "Action": "s3:DeleteObject",
            "Resource": "*"
        }
    ]
}"""


def doc(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    running = ThreadedBackend(str(tmp_path_factory.mktemp("simulator") / "data")).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def iam(backend):
    return backend.client("iam")


def code(info) -> str:
    return info.value.response["Error"]["Code"]


def test_simulate_custom_policy_decisions_positions_and_context(iam):
    secure = [{"ContextKeyName": "aws:SecureTransport", "ContextKeyValues": ["true"], "ContextKeyType": "boolean"}]
    out = iam.simulate_custom_policy(PolicyInputList=[POLICY], ContextEntries=secure,
                                     ActionNames=["s3:GetObject", "s3:DeleteObject", "ec2:RunInstances"])
    get, delete, ec2 = out["EvaluationResults"]
    assert out["IsTruncated"] is False
    # line 3 is '    "Statement": [' ("[" in column 18); line 10 is '        },' ("}" in column 9)
    assert get["MatchedStatements"] == [{"SourcePolicyId": "PolicyInputList.1", "SourcePolicyType": "IAM Policy",
                                         "StartPosition": {"Line": 3, "Column": 19},
                                         "EndPosition": {"Line": 10, "Column": 10}}]
    assert (get["EvalDecision"], delete["EvalDecision"], ec2["EvalDecision"]) == (
        "allowed", "explicitDeny", "implicitDeny")
    assert delete["MatchedStatements"][0]["StartPosition"] == {"Line": 10, "Column": 10}
    assert delete["MatchedStatements"][0]["EndPosition"] == {"Line": 16, "Column": 10}
    (bare,) = iam.simulate_custom_policy(PolicyInputList=[POLICY], ActionNames=["s3:GetObject"])["EvaluationResults"]
    assert (bare["EvalDecision"], bare["MissingContextValues"]) == ("implicitDeny", ["aws:SecureTransport"])


def test_resource_results_pagination_and_boundary(iam):
    pages = iam.get_paginator("simulate_custom_policy").paginate(
        PolicyInputList=[doc({"Effect": "Allow", "Action": ["s3:*", "iam:*"], "Resource": "*"})],
        PermissionsBoundaryPolicyInputList=[doc({"Effect": "Allow", "Action": "s3:*", "Resource": "*"})],
        ActionNames=["s3:GetObject", "s3:PutObject", "iam:CreateUser"],
        ResourceArns=["arn:aws:s3:::one/k", "arn:aws:s3:::two/k"], PaginationConfig={"PageSize": 2})
    pages = list(pages)
    assert [len(p["EvaluationResults"]) for p in pages] == [2, 1]
    results = [r for p in pages for r in p["EvaluationResults"]]
    assert [(r["EvalActionName"], r["EvalDecision"]) for r in results] == [
        ("s3:GetObject", "allowed"), ("s3:PutObject", "allowed"), ("iam:CreateUser", "implicitDeny")]
    assert [r["EvalResourceName"] for r in results[0]["ResourceSpecificResults"]] == [
        "arn:aws:s3:::one/k", "arn:aws:s3:::two/k"]
    assert results[0]["EvalDecisionDetails"] == {}
    assert results[2]["PermissionsBoundaryDecisionDetail"] == {"AllowedByPermissionsBoundary": False}


def test_simulate_principal_policy_and_context_keys(iam):
    iam.create_user(UserName="sim-ana")
    iam.put_user_policy(UserName="sim-ana", PolicyName="inline", PolicyDocument=doc(
        {"Effect": "Allow", "Action": "sqs:*", "Resource": "*",
         "Condition": {"StringEquals": {"aws:RequestedRegion": "eu-west-1"}}}))
    arn = f"arn:aws:iam::{ACCOUNT}:user/sim-ana"
    region = [{"ContextKeyName": "aws:RequestedRegion", "ContextKeyValues": ["eu-west-1"], "ContextKeyType": "string"}]
    (sqs,) = iam.simulate_principal_policy(PolicySourceArn=arn, ActionNames=["sqs:SendMessage"],
                                           ContextEntries=region)["EvaluationResults"]
    assert sqs["EvalDecision"] == "allowed"
    assert [(m["SourcePolicyId"], m["SourcePolicyType"]) for m in sqs["MatchedStatements"]] == [("inline", "IAM Policy")]
    (without,) = iam.simulate_principal_policy(PolicySourceArn=arn, ActionNames=["sqs:SendMessage"],
                                               ContextEntries=region, PolicyExclusionList=[{"PolicyType": "inline"}],
                                               )["EvaluationResults"]
    assert (without["EvalDecision"], without["MatchedStatements"]) == ("implicitDeny", [])
    shared = doc({"Effect": "Allow", "Principal": {"AWS": arn}, "Action": "s3:GetObject",
                  "Resource": "arn:aws:s3:::shared/*"})
    (s3,) = iam.simulate_principal_policy(PolicySourceArn=arn, ActionNames=["s3:GetObject"], ResourcePolicy=shared,
                                          ResourceArns=["arn:aws:s3:::shared/x"])["EvaluationResults"]
    assert (s3["EvalDecision"], s3["MatchedStatements"][0]["SourcePolicyId"]) == ("allowed", "ResourcePolicy")
    assert iam.get_context_keys_for_principal_policy(PolicySourceArn=arn)["ContextKeyNames"] == [
        "aws:RequestedRegion"]
    assert iam.get_context_keys_for_custom_policy(PolicyInputList=[POLICY])["ContextKeyNames"] == [
        "aws:SecureTransport"]


def test_errors_through_boto3(iam):
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.simulate_principal_policy(PolicySourceArn=f"arn:aws:iam::{ACCOUNT}:role/none", ActionNames=["s3:*"])
    with pytest.raises(iam.exceptions.InvalidInputException):
        iam.get_context_keys_for_principal_policy(PolicySourceArn=f"arn:aws:sts::{ACCOUNT}:assumed-role/r/s")
    with pytest.raises(iam.exceptions.MalformedPolicyDocumentException):
        iam.simulate_custom_policy(PolicyInputList=['{"Statement": []}'], ActionNames=["s3:GetObject"])
    with pytest.raises(iam.exceptions.InvalidInputException):
        iam.simulate_custom_policy(PolicyInputList=[POLICY], ActionNames=["s3:GetObject"], ContextEntries=[
            {"ContextKeyName": "aws:SourceIp", "ContextKeyValues": ["nowhere"], "ContextKeyType": "ip"}])


def test_simulator_calls_are_authorised_like_other_iam_actions(backend, iam):
    iam.create_user(UserName="sim-self")
    self_arn = f"arn:aws:iam::{ACCOUNT}:user/sim-self"
    iam.put_user_policy(UserName="sim-self", PolicyName="self", PolicyDocument=doc(
        {"Effect": "Allow", "Action": ["iam:SimulatePrincipalPolicy", "iam:GetContextKeysForPrincipalPolicy"],
         "Resource": self_arn}))
    key = iam.create_access_key(UserName="sim-self")["AccessKey"]
    own = backend.client("iam", (key["AccessKeyId"], key["SecretAccessKey"]))
    (mine,) = own.simulate_principal_policy(PolicySourceArn=self_arn,
                                            ActionNames=["iam:SimulatePrincipalPolicy"])["EvaluationResults"]
    assert mine["EvalDecision"] == "implicitDeny"      # no ResourceArns: the resource is "*", not its ARN
    for call in (lambda: own.simulate_principal_policy(PolicySourceArn=f"arn:aws:iam::{ACCOUNT}:user/admin",
                                                       ActionNames=["s3:GetObject"]),
                 lambda: own.simulate_custom_policy(PolicyInputList=[POLICY], ActionNames=["s3:GetObject"])):
        with pytest.raises(ClientError) as info:
            call()
        assert code(info) == "AccessDenied"
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403

"""IAM operations over a real SQLite store: successes, errors, quotas, result shapes.

Every successful call's result is checked against botocore's IAM model (member
names, nesting, types, required members) and round-tripped through
``wire.query.render_result`` and botocore's own Query parser.
"""

from __future__ import annotations

import base64
import datetime as dt
import json

import botocore.handlers
import botocore.parsers
import botocore.session
import pytest

from sts_backend import iam_errors, mfa
from sts_backend.errors import SenderError
from wire.query import XmlMap
from sts_backend.iam import ADMIN_POLICY, Caller, bootstrap_admin, handle_iam, iam_resource_arn
from sts_backend.policy_document import policy_size
from sts_backend.store import Store
from tests.clocks import FixedClock
from wire.query import IAM_NAMESPACE, render_result

T0 = dt.datetime(2026, 1, 1, 0, 0, 10, tzinfo=dt.timezone.utc)
ACCOUNT = "123456789012"
TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "sts:AssumeRole"}]})
_MODEL = botocore.session.get_session().get_service_model("iam")


def doc(resource_len: int = 10, action: str = "s3:GetObject") -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": action, "Resource": "arn:aws:s3:::" + "a" * resource_len}]})


def doc_of_size(size: int) -> str:
    base = policy_size(doc(0))
    text = doc(size - base)
    assert policy_size(text) == size
    return text


# ---- harness -------------------------------------------------------------------------------

def check_shape(value, shape, path="result"):
    """``value`` fits the botocore shape: known members, required ones present, right types."""
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(value, dict), path
        for key, child in value.items():
            assert key in shape.members, f"{path}.{key} not in {shape.name}"
            check_shape(child, shape.members[key], f"{path}.{key}")
        for key in shape.required_members:
            assert key in value, f"{path}.{key} required"
    elif kind == "list":
        assert isinstance(value, list), path
        for i, item in enumerate(value):
            check_shape(item, shape.member, f"{path}[{i}]")
    elif kind == "map":  # rendered as <entry><key/><value/></entry>
        assert isinstance(value, XmlMap), path
        for key, item in value.items():
            check_shape(key, shape.key, path)
            check_shape(item, shape.value, path)
    elif kind == "string":
        assert isinstance(value, str), path
        if shape.enum:
            assert value in shape.enum, path
    elif kind == "timestamp":
        assert isinstance(value, dt.datetime) and value.tzinfo is not None, path
    elif kind == "integer":
        assert isinstance(value, int) and not isinstance(value, bool), path
    elif kind == "boolean":
        assert isinstance(value, bool), path
    elif kind == "blob":
        assert isinstance(value, bytes), path
    else:  # pragma: no cover
        raise AssertionError(f"unexpected shape type {kind} at {path}")


def botocore_parse(action: str, result):
    """What boto3 would hand a user for this result."""
    op = _MODEL.operation_model(action)
    xml = render_result(action, IAM_NAMESPACE, result, "req-1")
    parsed = botocore.parsers.QueryParser().parse({"body": xml, "headers": {}, "status_code": 200},
                                                  op.output_shape)
    botocore.handlers.json_decode_policies(parsed, op)
    return parsed


class Env:
    def __init__(self, store: Store, clock: FixedClock, caller: Caller):
        self.store, self.clock, self.caller = store, clock, caller

    def __call__(self, action: str, caller: Caller | None = None, **params):
        result = handle_iam(action, params, caller or self.caller, self.store, self.clock)
        op = _MODEL.operation_model(action)
        if result is not None:
            assert op.output_shape is not None, action
            check_shape(result, op.output_shape)
        botocore_parse(action, result)
        return result

    def error(self, action: str, caller: Caller | None = None, **params) -> SenderError:
        with pytest.raises(SenderError) as info:
            handle_iam(action, params, caller or self.caller, self.store, self.clock)
        return info.value


@pytest.fixture
def iam(tmp_path):
    clock = FixedClock(T0)
    store = Store.create(tmp_path / "data", ACCOUNT, clock)
    admin, _ = bootstrap_admin(store)
    yield Env(store, clock, Caller(ACCOUNT, admin.arn, "user", "admin"))
    store.close()


ROOT = Caller(ACCOUNT, f"arn:aws:iam::{ACCOUNT}:root", "root")
ROLE_CALLER = Caller(ACCOUNT, f"arn:aws:sts::{ACCOUNT}:assumed-role/app/s", "assumed-role")


def assert_error(e: SenderError, code: str, message: str | None = None, status: int | None = None):
    assert e.code == code, (e.code, e.message)
    if message is not None:
        assert e.message == message
    if status is not None:
        assert e.http_status == status


# ---- dispatch, bootstrap -------------------------------------------------------------------

def test_unknown_action(iam):
    assert_error(iam.error("CreateLoginProfile", UserName="x"), "InvalidAction")


def test_bootstrap_admin(iam):
    assert iam("GetUserPolicy", UserName="admin", PolicyName="AdministratorAccess")["PolicyDocument"]
    parsed = botocore_parse("GetUserPolicy", iam("GetUserPolicy", UserName="admin", PolicyName="AdministratorAccess"))
    assert parsed["PolicyDocument"] == json.loads(ADMIN_POLICY)
    assert len(iam("ListAccessKeys")["AccessKeyMetadata"]) == 1
    assert iam.store.identity_policies("user", "admin") == [ADMIN_POLICY]


# ---- users ---------------------------------------------------------------------------------

def test_user_lifecycle(iam):
    created = iam("CreateUser", UserName="alice", Path="/eng/", Tags=[{"Key": "team", "Value": "core"}])["User"]
    assert created["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/eng/alice"
    assert created["UserId"].startswith("AIDA") and len(created["UserId"]) == 21
    assert created["Tags"] == [{"Key": "team", "Value": "core"}]
    got = iam("GetUser", UserName="ALICE")["User"]
    assert got["UserName"] == "alice" and got["CreateDate"] == T0
    assert [u["UserName"] for u in iam("ListUsers")["Users"]] == ["admin", "alice"]
    assert [u["UserName"] for u in iam("ListUsers", PathPrefix="/eng/")["Users"]] == ["alice"]
    iam("DeleteUser", UserName="alice")
    assert_error(iam.error("GetUser", UserName="alice"), "NoSuchEntity",
                 "The user with name alice cannot be found.", 404)


def test_user_names_case_insensitive(iam):
    iam("CreateUser", UserName="Bob")
    assert_error(iam.error("CreateUser", UserName="BOB"), "EntityAlreadyExists",
                 "User with name BOB already exists.", 409)


def test_get_user_defaults_to_caller(iam):
    assert iam("GetUser")["User"]["UserName"] == "admin"
    # AWS answers root without Path/UserName (required in the model, so no shape check here).
    root = handle_iam("GetUser", {}, ROOT, iam.store, iam.clock)["User"]
    assert root["Arn"] == f"arn:aws:iam::{ACCOUNT}:root" and root["UserId"] == ACCOUNT
    assert_error(iam.error("GetUser", caller=ROLE_CALLER), "ValidationError",
                 "Must specify userName when calling with non-User credentials")


def test_list_users_pagination(iam):
    for name in ("u1", "u2", "u3", "u4"):
        iam("CreateUser", UserName=name)
    first = iam("ListUsers", MaxItems=2)
    assert [u["UserName"] for u in first["Users"]] == ["admin", "u1"] and first["IsTruncated"]
    second = iam("ListUsers", MaxItems=2, Marker=first["Marker"])
    third = iam("ListUsers", MaxItems=2, Marker=second["Marker"])
    assert [u["UserName"] for u in second["Users"] + third["Users"]] == ["u2", "u3", "u4"]
    assert third["IsTruncated"] is False and "Marker" not in third
    assert_error(iam.error("ListUsers", Marker="junk"), "ValidationError")


@pytest.mark.parametrize("setup, message", [
    (lambda i: i("CreateAccessKey", UserName="carol"), "Cannot delete entity, must delete access keys first."),
    (lambda i: i("PutUserPolicy", UserName="carol", PolicyName="p", PolicyDocument=doc()),
     "Cannot delete entity, must delete policies first."),
    (lambda i: i("AttachUserPolicy", UserName="carol",
                 PolicyArn=i("CreatePolicy", PolicyName="m", PolicyDocument=doc())["Policy"]["Arn"]),
     "Cannot delete entity, must detach all policies first."),
    (lambda i: (i("CreateGroup", GroupName="g"), i("AddUserToGroup", GroupName="g", UserName="carol")),
     "Cannot delete entity, must remove users from group first."),
    (lambda i: enable_device(i, "carol"), "Cannot delete entity, must delete MFA device first."),
])
def test_delete_user_conflicts(iam, setup, message):
    iam("CreateUser", UserName="carol")
    setup(iam)
    assert_error(iam.error("DeleteUser", UserName="carol"), "DeleteConflict", message, 409)
    assert iam.store.user("carol") is not None


def test_delete_user_bumps_revocation_epoch(iam):
    iam("CreateUser", UserName="dave")
    epoch = iam.store.revocation_epoch()
    iam("DeleteUser", UserName="dave")
    assert iam.store.revocation_epoch() == epoch + 1


# ---- access keys ---------------------------------------------------------------------------

def test_access_keys(iam):
    iam("CreateUser", UserName="alice")
    key = iam("CreateAccessKey", UserName="alice")["AccessKey"]
    assert key["AccessKeyId"].startswith("AKIA") and len(key["AccessKeyId"]) == 20
    assert len(key["SecretAccessKey"]) == 40 and key["Status"] == "Active"
    listed = iam("ListAccessKeys", UserName="alice")["AccessKeyMetadata"]
    assert listed == [{"UserName": "alice", "AccessKeyId": key["AccessKeyId"], "Status": "Active", "CreateDate": T0}]
    epoch = iam.store.revocation_epoch()
    iam("UpdateAccessKey", UserName="alice", AccessKeyId=key["AccessKeyId"], Status="Inactive")
    assert iam.store.revocation_epoch() == epoch + 1
    assert iam("ListAccessKeys", UserName="alice")["AccessKeyMetadata"][0]["Status"] == "Inactive"
    iam("DeleteAccessKey", UserName="alice", AccessKeyId=key["AccessKeyId"])
    assert iam.store.revocation_epoch() == epoch + 2
    assert iam("ListAccessKeys", UserName="alice")["AccessKeyMetadata"] == []


def test_access_key_quota_counts_inactive_keys(iam):
    iam("CreateUser", UserName="alice")
    first = iam("CreateAccessKey", UserName="alice")["AccessKey"]["AccessKeyId"]
    iam("UpdateAccessKey", UserName="alice", AccessKeyId=first, Status="Inactive")
    iam("CreateAccessKey", UserName="alice")
    assert_error(iam.error("CreateAccessKey", UserName="alice"), "LimitExceeded",
                 "Cannot exceed quota for AccessKeysPerUser: 2", 409)


def test_access_key_of_another_user(iam):
    iam("CreateUser", UserName="alice")
    key = iam("CreateAccessKey", UserName="alice")["AccessKey"]["AccessKeyId"]
    message = f"The Access Key with id {key} cannot be found."
    assert_error(iam.error("UpdateAccessKey", AccessKeyId=key, Status="Inactive"), "NoSuchEntity", message)
    assert_error(iam.error("DeleteAccessKey", AccessKeyId=key), "NoSuchEntity", message)
    assert_error(iam.error("CreateAccessKey", caller=ROLE_CALLER), "ValidationError")
    assert iam("ListAccessKeys", caller=ROOT)["AccessKeyMetadata"] == []


def test_get_access_key_last_used(iam):
    iam("CreateUser", UserName="alice")
    key = iam("CreateAccessKey", UserName="alice")["AccessKey"]["AccessKeyId"]
    assert iam("GetAccessKeyLastUsed", AccessKeyId=key) == {
        "UserName": "alice", "AccessKeyLastUsed": {"ServiceName": "N/A", "Region": "N/A"}}
    when = T0 + dt.timedelta(minutes=3)
    iam.store.record_key_use(key, "sts", "eu-west-1", when)
    assert iam("GetAccessKeyLastUsed", AccessKeyId=key)["AccessKeyLastUsed"] == {
        "LastUsedDate": when, "ServiceName": "sts", "Region": "eu-west-1"}
    assert_error(iam.error("GetAccessKeyLastUsed", AccessKeyId="AKIA0000000000000000"), "NoSuchEntity")


# ---- groups --------------------------------------------------------------------------------

def test_groups(iam):
    group = iam("CreateGroup", GroupName="devs", Path="/eng/")["Group"]
    assert group["GroupId"].startswith("AGPA") and group["Arn"] == f"arn:aws:iam::{ACCOUNT}:group/eng/devs"
    assert_error(iam.error("CreateGroup", GroupName="DEVS"), "EntityAlreadyExists")
    iam("CreateUser", UserName="alice")
    iam("AddUserToGroup", GroupName="devs", UserName="alice")
    iam("AddUserToGroup", GroupName="devs", UserName="ALICE")
    got = iam("GetGroup", GroupName="devs")
    assert got["Group"]["GroupName"] == "devs" and [u["UserName"] for u in got["Users"]] == ["alice"]
    assert [g["GroupName"] for g in iam("ListGroupsForUser", UserName="alice")["Groups"]] == ["devs"]
    assert [g["GroupName"] for g in iam("ListGroups")["Groups"]] == ["devs"]
    assert_error(iam.error("DeleteGroup", GroupName="devs"), "DeleteConflict",
                 "Cannot delete entity, must remove users from group first.")
    iam("RemoveUserFromGroup", GroupName="devs", UserName="alice")
    assert_error(iam.error("RemoveUserFromGroup", GroupName="devs", UserName="alice"), "NoSuchEntity")
    iam("PutGroupPolicy", GroupName="devs", PolicyName="p", PolicyDocument=doc())
    assert_error(iam.error("DeleteGroup", GroupName="devs"), "DeleteConflict",
                 "Cannot delete entity, must delete policies first.")
    iam("DeleteGroupPolicy", GroupName="devs", PolicyName="p")
    iam("DeleteGroup", GroupName="devs")
    assert_error(iam.error("GetGroup", GroupName="devs"), "NoSuchEntity", "The group with name devs cannot be found.")


def test_groups_per_user_quota(iam):
    iam.store.set_quota("GroupsPerUser", 2)
    iam("CreateUser", UserName="alice")
    for name in ("g1", "g2", "g3"):
        iam("CreateGroup", GroupName=name)
    iam("AddUserToGroup", GroupName="g1", UserName="alice")
    iam("AddUserToGroup", GroupName="g2", UserName="alice")
    assert_error(iam.error("AddUserToGroup", GroupName="g3", UserName="alice"), "LimitExceeded",
                 "Cannot exceed quota for GroupsPerUser: 2")


# ---- roles ---------------------------------------------------------------------------------

def test_role_lifecycle(iam):
    role = iam("CreateRole", RoleName="app", AssumeRolePolicyDocument=TRUST, Description="the app",
               Tags=[{"Key": "env", "Value": "prod"}])["Role"]
    assert role["RoleId"].startswith("AROA") and role["MaxSessionDuration"] == 3600
    parsed = botocore_parse("GetRole", iam("GetRole", RoleName="APP"))["Role"]
    assert parsed["AssumeRolePolicyDocument"] == json.loads(TRUST)
    assert parsed["Description"] == "the app" and parsed["Tags"] == [{"Key": "env", "Value": "prod"}]
    assert iam("UpdateRole", RoleName="app", MaxSessionDuration=43200, Description="x") == {}
    assert iam("GetRole", RoleName="app")["Role"]["MaxSessionDuration"] == 43200
    assert iam("UpdateRoleDescription", RoleName="app", Description="y")["Role"]["Description"] == "y"
    new_trust = TRUST.replace("root", "user/alice")
    assert_error(iam.error("UpdateAssumeRolePolicy", RoleName="app", PolicyDocument=new_trust),
                 "MalformedPolicyDocument", f'Invalid principal in policy: "AWS":"arn:aws:iam::{ACCOUNT}:user/alice"')
    iam("CreateUser", UserName="alice")
    iam("UpdateAssumeRolePolicy", RoleName="app", PolicyDocument=new_trust)
    assert iam.store.role("app").assume_role_policy == new_trust
    assert [r["RoleName"] for r in iam("ListRoles")["Roles"]] == ["app"]
    epoch = iam.store.revocation_epoch()
    iam("DeleteRole", RoleName="app")
    assert iam.store.revocation_epoch() == epoch + 1
    assert_error(iam.error("GetRole", RoleName="app"), "NoSuchEntity", "The role with name app cannot be found.")


def test_role_errors(iam):
    iam("CreateRole", RoleName="app", AssumeRolePolicyDocument=TRUST, MaxSessionDuration=7200)
    assert_error(iam.error("CreateRole", RoleName="APP", AssumeRolePolicyDocument=TRUST), "EntityAlreadyExists",
                 "Role with name APP already exists.")
    assert_error(iam.error("CreateRole", RoleName="bad", AssumeRolePolicyDocument=doc()), "MalformedPolicyDocument")
    assert_error(iam.error("CreateRole", RoleName="bad", AssumeRolePolicyDocument="{nope"), "MalformedPolicyDocument")
    huge = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/{'u' * 60}{i}"},
         "Action": "sts:AssumeRole"} for i in range(40)]})
    assert_error(iam.error("CreateRole", RoleName="big", AssumeRolePolicyDocument=huge), "LimitExceeded",
                 "Cannot exceed quota for ACLSizePerRole: 2048")
    assert_error(iam.error("UpdateAssumeRolePolicy", RoleName="app", PolicyDocument=doc()), "MalformedPolicyDocument")


def test_delete_role_conflicts(iam):
    iam("CreateRole", RoleName="app", AssumeRolePolicyDocument=TRUST)
    iam("PutRolePolicy", RoleName="app", PolicyName="p", PolicyDocument=doc())
    assert_error(iam.error("DeleteRole", RoleName="app"), "DeleteConflict",
                 "Cannot delete entity, must delete policies first.")
    iam("DeleteRolePolicy", RoleName="app", PolicyName="p")
    arn = iam("CreatePolicy", PolicyName="m", PolicyDocument=doc())["Policy"]["Arn"]
    iam("AttachRolePolicy", RoleName="app", PolicyArn=arn)
    epoch = iam.store.revocation_epoch()
    assert_error(iam.error("DeleteRole", RoleName="app"), "DeleteConflict",
                 "Cannot delete entity, must detach all policies first.")
    assert iam.store.revocation_epoch() == epoch
    iam("DetachRolePolicy", RoleName="app", PolicyArn=arn)
    iam("DeleteRole", RoleName="app")


def test_roles_per_account_quota_default_250(iam):
    assert iam.store.quota("RolesPerAccount") == 250
    for i in range(250):
        iam.store.create_role(f"r{i}", TRUST)
    assert_error(iam.error("CreateRole", RoleName="one-more", AssumeRolePolicyDocument=TRUST), "LimitExceeded",
                 "Cannot exceed quota for RolesPerAccount: 250", 409)
    iam.store.set_quota("RolesPerAccount", 251)
    iam("CreateRole", RoleName="one-more", AssumeRolePolicyDocument=TRUST)


# ---- inline policies -----------------------------------------------------------------------

@pytest.mark.parametrize("kind, param, create, limit", [
    ("User", "UserName", lambda i: i("CreateUser", UserName="ent"), 2048),
    ("Group", "GroupName", lambda i: i("CreateGroup", GroupName="ent"), 5120),
    ("Role", "RoleName", lambda i: i("CreateRole", RoleName="ent", AssumeRolePolicyDocument=TRUST), 10240),
])
def test_inline_policies_and_aggregate_size(iam, kind, param, create, limit):
    create(iam)
    first = doc_of_size(limit - 300)
    iam(f"Put{kind}Policy", **{param: "ent"}, PolicyName="a", PolicyDocument=first)
    iam(f"Put{kind}Policy", **{param: "ent"}, PolicyName="a", PolicyDocument=first)  # replace: no double count
    iam(f"Put{kind}Policy", **{param: "ent"}, PolicyName="b", PolicyDocument=doc_of_size(300))
    message = f"Maximum policy size of {limit} bytes exceeded for {kind.lower()} ent"
    assert_error(iam.error(f"Put{kind}Policy", **{param: "ent"}, PolicyName="c", PolicyDocument=doc_of_size(120)),
                 "LimitExceeded", message, 409)
    assert_error(iam.error(f"Put{kind}Policy", **{param: "ent"}, PolicyName="b", PolicyDocument=doc_of_size(301)),
                 "LimitExceeded", message)
    spaced = json.dumps(json.loads(doc_of_size(300)), indent=8)  # whitespace does not count
    iam(f"Put{kind}Policy", **{param: "ent"}, PolicyName="b", PolicyDocument=spaced)
    got = iam(f"Get{kind}Policy", **{param: "ENT"}, PolicyName="b")
    assert got[param] == "ent" and botocore_parse(f"Get{kind}Policy", got)["PolicyDocument"] == json.loads(spaced)
    assert iam(f"List{kind}Policies", **{param: "ent"})["PolicyNames"] == ["a", "b"]
    iam(f"Delete{kind}Policy", **{param: "ent"}, PolicyName="a")
    assert_error(iam.error(f"Get{kind}Policy", **{param: "ent"}, PolicyName="a"), "NoSuchEntity",
                 f"The {kind.lower()} policy with name a cannot be found.")
    assert_error(iam.error(f"Delete{kind}Policy", **{param: "ent"}, PolicyName="a"), "NoSuchEntity")
    assert_error(iam.error(f"Put{kind}Policy", **{param: "ent"}, PolicyName="x", PolicyDocument='{"Statement": 1}'),
                 "MalformedPolicyDocument")
    assert_error(iam.error(f"Put{kind}Policy", **{param: "nobody"}, PolicyName="x", PolicyDocument=doc()),
                 "NoSuchEntity")


# ---- managed policies ----------------------------------------------------------------------

def test_managed_policy_lifecycle(iam):
    policy = iam("CreatePolicy", PolicyName="ReadS3", Path="/team/", PolicyDocument=doc(),
                 Description="read")["Policy"]
    arn = policy["Arn"]
    assert arn == f"arn:aws:iam::{ACCOUNT}:policy/team/ReadS3" and policy["PolicyId"].startswith("ANPA")
    assert policy["DefaultVersionId"] == "v1" and policy["AttachmentCount"] == 0
    assert_error(iam.error("CreatePolicy", PolicyName="reads3", PolicyDocument=doc()), "EntityAlreadyExists")
    assert iam("GetPolicy", PolicyArn=arn)["Policy"]["Description"] == "read"
    v1 = botocore_parse("GetPolicyVersion", iam("GetPolicyVersion", PolicyArn=arn, VersionId="v1"))
    assert v1["PolicyVersion"]["Document"] == json.loads(doc()) and v1["PolicyVersion"]["IsDefaultVersion"]
    v2 = iam("CreatePolicyVersion", PolicyArn=arn, PolicyDocument=doc(20), SetAsDefault=True)["PolicyVersion"]
    assert v2["VersionId"] == "v2" and v2["IsDefaultVersion"]
    for _ in range(3):
        iam("CreatePolicyVersion", PolicyArn=arn, PolicyDocument=doc(30))
    assert_error(iam.error("CreatePolicyVersion", PolicyArn=arn, PolicyDocument=doc()), "LimitExceeded",
                 "A managed policy can have up to 5 versions. Before you create a new version, you must delete "
                 "an existing version.")
    versions = iam("ListPolicyVersions", PolicyArn=arn)["Versions"]
    assert [v["VersionId"] for v in versions] == ["v5", "v4", "v3", "v2", "v1"]
    assert_error(iam.error("DeletePolicyVersion", PolicyArn=arn, VersionId="v2"), "DeleteConflict",
                 "Cannot delete the default version of a policy.")
    iam("SetDefaultPolicyVersion", PolicyArn=arn, VersionId="v5")
    assert iam("GetPolicy", PolicyArn=arn)["Policy"]["DefaultVersionId"] == "v5"
    assert_error(iam.error("DeletePolicy", PolicyArn=arn), "DeleteConflict")
    for v in ("v1", "v2", "v3", "v4"):
        iam("DeletePolicyVersion", PolicyArn=arn, VersionId=v)
    assert_error(iam.error("GetPolicyVersion", PolicyArn=arn, VersionId="v1"), "NoSuchEntity")
    assert iam("CreatePolicyVersion", PolicyArn=arn, PolicyDocument=doc())["PolicyVersion"]["VersionId"] == "v6"
    iam("DeletePolicyVersion", PolicyArn=arn, VersionId="v6")
    iam("DeletePolicy", PolicyArn=arn)
    assert_error(iam.error("GetPolicy", PolicyArn=arn), "NoSuchEntity", f"Policy {arn} was not found.")


def test_managed_policy_size_5120_and_version_required(iam):
    iam("CreatePolicy", PolicyName="fits", PolicyDocument=doc_of_size(5120))
    assert_error(iam.error("CreatePolicy", PolicyName="big", PolicyDocument=doc_of_size(5121)), "LimitExceeded",
                 "Cannot exceed quota for PolicySize: 5120", 409)
    arn = iam("CreatePolicy", PolicyName="p", PolicyDocument=doc())["Policy"]["Arn"]
    assert_error(iam.error("CreatePolicyVersion", PolicyArn=arn, PolicyDocument=doc_of_size(5121)), "LimitExceeded")
    old = json.dumps({"Version": "2008-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
    assert_error(iam.error("CreatePolicy", PolicyName="old", PolicyDocument=old), "MalformedPolicyDocument")


def test_attachments_and_list_policies(iam):
    iam("CreateUser", UserName="alice")
    iam("CreateGroup", GroupName="devs")
    iam("CreateRole", RoleName="app", AssumeRolePolicyDocument=TRUST)
    arns = [iam("CreatePolicy", PolicyName=f"p{i:02d}", PolicyDocument=doc())["Policy"]["Arn"] for i in range(11)]
    for kind, param, name in (("User", "UserName", "alice"), ("Group", "GroupName", "devs"),
                              ("Role", "RoleName", "app")):
        for arn in arns[:10]:
            iam(f"Attach{kind}Policy", **{param: name}, PolicyArn=arn)
        iam(f"Attach{kind}Policy", **{param: name}, PolicyArn=arns[0])  # again: no-op
        assert_error(iam.error(f"Attach{kind}Policy", **{param: name}, PolicyArn=arns[10]), "LimitExceeded",
                     f"Cannot exceed quota for PoliciesPer{kind}: 10")
        attached = iam(f"ListAttached{kind}Policies", **{param: name})["AttachedPolicies"]
        assert [a["PolicyArn"] for a in attached] == arns[:10]
        iam(f"Detach{kind}Policy", **{param: name}, PolicyArn=arns[9])
        assert_error(iam.error(f"Detach{kind}Policy", **{param: name}, PolicyArn=arns[9]), "NoSuchEntity")
    missing = f"arn:aws:iam::{ACCOUNT}:policy/nope"
    assert_error(iam.error("AttachUserPolicy", UserName="alice", PolicyArn=missing), "NoSuchEntity",
                 f"Policy {missing} does not exist or is not attachable.")
    assert iam("GetPolicy", PolicyArn=arns[0])["Policy"]["AttachmentCount"] == 3
    assert_error(iam.error("DeletePolicy", PolicyArn=arns[0]), "DeleteConflict",
                 "Cannot delete a policy attached to entities.")
    assert len(iam("ListPolicies")["Policies"]) == 11
    assert len(iam("ListPolicies", Scope="Local")["Policies"]) == 11
    assert iam("ListPolicies", Scope="AWS")["Policies"] == []
    assert [p["PolicyName"] for p in iam("ListPolicies", OnlyAttached=True)["Policies"]] == [
        f"p{i:02d}" for i in range(9)]


# ---- tags ----------------------------------------------------------------------------------

@pytest.mark.parametrize("entity, create", [
    ("User", lambda i: i("CreateUser", UserName="ent")),
    ("Role", lambda i: i("CreateRole", RoleName="ent", AssumeRolePolicyDocument=TRUST)),
])
def test_tags(iam, entity, create):
    create(iam)
    param = f"{entity}Name"
    iam(f"Tag{entity}", **{param: "ent"}, Tags=[{"Key": "Env", "Value": "dev"}, {"Key": "team", "Value": "a"}])
    iam(f"Tag{entity}", **{param: "ent"}, Tags=[{"Key": "env", "Value": "prod"}])
    assert iam(f"List{entity}Tags", **{param: "ent"})["Tags"] == [
        {"Key": "env", "Value": "prod"}, {"Key": "team", "Value": "a"}]
    iam(f"Untag{entity}", **{param: "ent"}, TagKeys=["ENV", "missing"])
    assert iam(f"List{entity}Tags", **{param: "ent"})["Tags"] == [{"Key": "team", "Value": "a"}]
    assert_error(iam.error(f"Tag{entity}", **{param: "ent"}, Tags=[{"Key": "a", "Value": "1"},
                                                                   {"Key": "A", "Value": "2"}]), "InvalidInput")
    iam(f"Tag{entity}", **{param: "ent"}, Tags=[{"Key": f"k{i}", "Value": ""} for i in range(49)])
    error = iam.error(f"Tag{entity}", **{param: "ent"}, Tags=[{"Key": "one-too-many", "Value": ""}])
    assert_error(error, "LimitExceeded")
    assert len(iam(f"List{entity}Tags", **{param: "ent"})["Tags"]) == 50
    assert_error(iam.error(f"List{entity}Tags", **{param: "nobody"}), "NoSuchEntity")


# ---- virtual MFA ---------------------------------------------------------------------------

def create_device(iam, name="phone") -> tuple[str, str]:
    device = iam("CreateVirtualMFADevice", VirtualMFADeviceName=name)["VirtualMFADevice"]
    return device["SerialNumber"], device["Base32StringSeed"].decode("ascii")


def enable_device(iam, user: str, name: str = "phone") -> tuple[str, str]:
    serial, seed = create_device(iam, name)
    step = mfa.timecode(iam.clock.now())
    iam("EnableMFADevice", UserName=user, SerialNumber=serial,
        AuthenticationCode1=mfa.code_at(seed, step - 1), AuthenticationCode2=mfa.code_at(seed, step))
    return serial, seed


def test_create_virtual_mfa_device(iam):
    result = iam("CreateVirtualMFADevice", VirtualMFADeviceName="phone", Path="/ops/")
    device = result["VirtualMFADevice"]
    assert device["SerialNumber"] == f"arn:aws:iam::{ACCOUNT}:mfa/ops/phone"
    seed = device["Base32StringSeed"].decode("ascii")
    assert len(seed) == 64
    assert device["QRCodePNG"].startswith(b"\x89PNG\r\n\x1a\n")
    parsed = botocore_parse("CreateVirtualMFADevice", result)["VirtualMFADevice"]
    assert parsed["Base32StringSeed"] == seed.encode() and parsed["QRCodePNG"] == device["QRCodePNG"]
    xml = render_result("CreateVirtualMFADevice", IAM_NAMESPACE, result, "r").decode()
    assert base64.b64encode(seed.encode()).decode() in xml
    assert_error(iam.error("CreateVirtualMFADevice", VirtualMFADeviceName="phone", Path="/ops/"),
                 "EntityAlreadyExists")


def test_enable_list_resync_deactivate_delete(iam):
    iam("CreateUser", UserName="alice")
    serial, seed = enable_device(iam, "alice")
    device = iam.store.mfa_device(serial)
    assert device.user_name == "alice" and device.last_timecode == mfa.timecode(T0)
    # the next step's code is usable at once
    assert iam.store.consume_totp(serial, mfa.verify_code(seed, mfa.code_at(seed, mfa.timecode(T0) + 1), T0,
                                                          device.last_timecode))
    assert iam("ListMFADevices", UserName="alice")["MFADevices"] == [
        {"UserName": "alice", "SerialNumber": serial, "EnableDate": T0}]
    assigned = iam("ListVirtualMFADevices", AssignmentStatus="Assigned")["VirtualMFADevices"]
    assert assigned[0]["User"]["UserName"] == "alice" and assigned[0]["SerialNumber"] == serial
    assert iam("ListVirtualMFADevices", AssignmentStatus="Unassigned")["VirtualMFADevices"] == []
    assert_error(iam.error("DeleteVirtualMFADevice", SerialNumber=serial), "DeleteConflict")
    iam.clock.advance(600)
    step = mfa.timecode(iam.clock.now())
    iam("ResyncMFADevice", UserName="alice", SerialNumber=serial,
        AuthenticationCode1=mfa.code_at(seed, step + 7), AuthenticationCode2=mfa.code_at(seed, step + 8))
    assert iam.store.mfa_device(serial).last_timecode == step + 8
    iam("DeactivateMFADevice", SerialNumber=serial)
    assert iam("ListMFADevices", UserName="alice")["MFADevices"] == []
    assert iam.store.mfa_device(serial).last_timecode == step + 8  # kept: no replay after re-enabling
    iam("DeleteVirtualMFADevice", SerialNumber=serial)
    assert_error(iam.error("DeleteVirtualMFADevice", SerialNumber=serial), "NoSuchEntity")


def test_enable_wrong_or_replayed_codes(iam):
    iam("CreateUser", UserName="alice")
    serial, seed = create_device(iam)
    _, other_seed = create_device(iam, "other")
    step = mfa.timecode(T0)
    cases = [
        (mfa.code_at(seed, step), mfa.code_at(seed, step + 2)),              # not consecutive
        (mfa.code_at(other_seed, step - 1), mfa.code_at(other_seed, step)),  # another device's codes
        (mfa.code_at(seed, step - 5), mfa.code_at(seed, step - 4)),          # too old
        ("000000", "000000"),
    ]
    for code1, code2 in cases:
        error = iam.error("EnableMFADevice", UserName="alice", SerialNumber=serial,
                          AuthenticationCode1=code1, AuthenticationCode2=code2)
        assert_error(error, "InvalidAuthenticationCode", "Authentication code for device is not valid.", 403)
        assert seed not in error.message and code1 not in error.message
    assert iam.store.mfa_device(serial).user_name is None
    iam.store.consume_totp(serial, step)  # those codes were used (e.g. at sign-in elsewhere)
    assert_error(iam.error("EnableMFADevice", UserName="alice", SerialNumber=serial,
                           AuthenticationCode1=mfa.code_at(seed, step - 1),
                           AuthenticationCode2=mfa.code_at(seed, step)), "InvalidAuthenticationCode")


def test_enable_errors(iam):
    iam("CreateUser", UserName="alice")
    iam("CreateUser", UserName="bob")
    serial, seed = enable_device(iam, "alice")
    step = mfa.timecode(T0)
    assert_error(iam.error("EnableMFADevice", UserName="bob", SerialNumber=serial,
                           AuthenticationCode1=mfa.code_at(seed, step),
                           AuthenticationCode2=mfa.code_at(seed, step + 1)),
                 "EntityAlreadyExists", "MFA Device is already in use.")
    assert_error(iam.error("EnableMFADevice", UserName="nobody", SerialNumber=serial,
                           AuthenticationCode1="123456", AuthenticationCode2="123456"), "NoSuchEntity")
    assert_error(iam.error("EnableMFADevice", UserName="bob", SerialNumber=f"arn:aws:iam::{ACCOUNT}:mfa/none",
                           AuthenticationCode1="123456", AuthenticationCode2="123456"), "NoSuchEntity")
    assert_error(iam.error("ResyncMFADevice", UserName="bob", SerialNumber=serial,
                           AuthenticationCode1="123456", AuthenticationCode2="123456"), "NoSuchEntity")
    assert_error(iam.error("ResyncMFADevice", UserName="alice", SerialNumber=serial,
                           AuthenticationCode1=mfa.code_at(seed, step),
                           AuthenticationCode2=mfa.code_at(seed, step + 1)),
                 "InvalidAuthenticationCode")  # step was used by EnableMFADevice
    assert_error(iam.error("DeactivateMFADevice", UserName="bob", SerialNumber=serial), "NoSuchEntity")


def test_mfa_devices_per_user_quota(iam):
    iam.store.set_quota("MFADevicesPerUser", 1)
    iam("CreateUser", UserName="alice")
    enable_device(iam, "alice", "one")
    serial, seed = create_device(iam, "two")
    step = mfa.timecode(T0)
    assert_error(iam.error("EnableMFADevice", UserName="alice", SerialNumber=serial,
                           AuthenticationCode1=mfa.code_at(seed, step - 1),
                           AuthenticationCode2=mfa.code_at(seed, step)),
                 "LimitExceeded")


def test_list_mfa_devices_defaults_to_caller(iam):
    serial, _ = enable_device(iam, "admin")
    assert iam("ListMFADevices")["MFADevices"][0]["SerialNumber"] == serial
    assert iam("ListMFADevices", caller=ROOT)["MFADevices"] == []


# ---- account -------------------------------------------------------------------------------

def test_account_aliases(iam):
    assert iam("ListAccountAliases")["AccountAliases"] == []
    iam("CreateAccountAlias", AccountAlias="my-lab")
    iam("CreateAccountAlias", AccountAlias="my-lab")
    assert iam("ListAccountAliases")["AccountAliases"] == ["my-lab"]
    assert_error(iam.error("CreateAccountAlias", AccountAlias="other"), "LimitExceeded",
                 "Cannot exceed quota for AccountAliasesPerAccount: 1")
    iam("DeleteAccountAlias", AccountAlias="my-lab")
    assert_error(iam.error("DeleteAccountAlias", AccountAlias="my-lab"), "NoSuchEntity")


def test_account_summary(iam):
    iam("CreateRole", RoleName="app", AssumeRolePolicyDocument=TRUST)
    create_device(iam)
    enable_device(iam, "admin", "used")
    summary = botocore_parse("GetAccountSummary", iam("GetAccountSummary"))["SummaryMap"]
    assert set(summary) <= set(_MODEL.shape_for("summaryKeyType").enum)
    expected = {"Users": 1, "UsersQuota": 5000, "Roles": 1, "RolesQuota": 250, "Groups": 0, "Policies": 0,
                "AccessKeysPerUserQuota": 2, "MFADevices": 2, "MFADevicesInUse": 1, "UserPolicySizeQuota": 2048,
                "GroupPolicySizeQuota": 5120, "RolePolicySizeQuota": 10240, "PolicySizeQuota": 5120,
                "AttachedPoliciesPerRoleQuota": 10, "VersionsPerPolicyQuota": 5}
    assert {k: summary[k] for k in expected} == expected


# ---- authorization resource ----------------------------------------------------------------

def test_iam_resource_arn(iam):
    iam("CreateUser", UserName="alice", Path="/eng/")
    iam("CreateRole", RoleName="app", Path="/svc/", AssumeRolePolicyDocument=TRUST)
    iam("CreateGroup", GroupName="devs")
    key = iam("CreateAccessKey", UserName="alice")["AccessKey"]["AccessKeyId"]
    serial, _ = enable_device(iam, "alice")
    c, s = iam.caller, iam.store
    arn = lambda a, **p: iam_resource_arn(a, p, c, ACCOUNT, s)  # noqa: E731
    assert arn("GetUser", UserName="alice") == f"arn:aws:iam::{ACCOUNT}:user/eng/alice"
    assert iam_resource_arn("GetUser", {"UserName": "alice"}, c, ACCOUNT) == f"arn:aws:iam::{ACCOUNT}:user/alice"
    assert arn("CreateUser", UserName="bob", Path="/x/") == f"arn:aws:iam::{ACCOUNT}:user/x/bob"
    assert arn("CreateAccessKey") == c.arn
    assert iam_resource_arn("GetUser", {}, ROLE_CALLER, ACCOUNT, s) == ROLE_CALLER.arn
    assert arn("DeactivateMFADevice", SerialNumber=serial) == f"arn:aws:iam::{ACCOUNT}:user/eng/alice"
    assert arn("GetAccessKeyLastUsed", AccessKeyId=key) == f"arn:aws:iam::{ACCOUNT}:user/eng/alice"
    assert arn("AttachRolePolicy", RoleName="app", PolicyArn="x") == f"arn:aws:iam::{ACCOUNT}:role/svc/app"
    assert arn("AddUserToGroup", GroupName="devs", UserName="alice") == f"arn:aws:iam::{ACCOUNT}:group/devs"
    assert arn("CreatePolicy", PolicyName="p", Path="/a/") == f"arn:aws:iam::{ACCOUNT}:policy/a/p"
    assert arn("GetPolicy", PolicyArn="arn:aws:iam::1:policy/x") == "arn:aws:iam::1:policy/x"
    assert arn("CreateVirtualMFADevice", VirtualMFADeviceName="d") == f"arn:aws:iam::{ACCOUNT}:mfa/d"
    assert arn("DeleteVirtualMFADevice", SerialNumber=serial) == serial
    for action in ("ListUsers", "ListRoles", "GetAccountSummary", "CreateAccountAlias", "ListPolicies"):
        assert arn(action) == "*"


def test_messages_are_cited_helpers():
    assert iam_errors.invalid_authentication_code().http_status == 403
    assert iam_errors.quota_exceeded("X", 3).message == "Cannot exceed quota for X: 3"

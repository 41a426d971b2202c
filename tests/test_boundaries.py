"""Permissions boundaries: the IAM operations, what results show, and what boundaries deny.

Part one runs the IAM operations on a real SQLite store and renders each result
through ``wire.query.render_result`` and botocore's Query parser. Part two is
boto3 against the backend served as ``rolecall backend serve`` serves it, over
a real loopback socket (``tests.interop.test_backend_boto3.ThreadedBackend``):
round trips, usage counts, the errors, and evaluation — a user's long-term key
and GetSessionToken session, a role's sessions (IAM calls and role chaining),
and a boundary changed under a live session.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from types import SimpleNamespace

import botocore.parsers
import botocore.session
import pytest
from botocore.exceptions import ClientError

from sts_backend.auth import principal_policies
from sts_backend.errors import SenderError
from sts_backend.iam import Caller, bootstrap_admin, handle_iam
from sts_backend.policy import build_request_context, evaluate
from sts_backend.store import Store
from tests.clocks import FixedClock
from tests.interop.test_backend_boto3 import ThreadedBackend
from wire.query import IAM_NAMESPACE, render_result

T0 = dt.datetime(2026, 1, 1, 0, 0, 10, tzinfo=dt.timezone.utc)
ACCOUNT = "123456789012"
TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "sts:AssumeRole"}]})
ADMIN = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
_MODEL = botocore.session.get_session().get_service_model("iam")


def allow(*actions: str) -> str:
    return json.dumps({"Version": "2012-10-17",
                       "Statement": [{"Effect": "Allow", "Action": list(actions), "Resource": "*"}]})


def policy_arn(name: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:policy/{name}"


# ---- part one: the operations on a real store ------------------------------------------------

class Iam:
    """``handle_iam`` as the admin; results go through render_result and botocore's parser."""

    def __init__(self, store: Store, clock: FixedClock) -> None:
        self.store, self.clock = store, clock
        self.caller = Caller(ACCOUNT, f"arn:aws:iam::{ACCOUNT}:user/admin", "user", "admin")

    def __call__(self, action: str, **params):
        result = handle_iam(action, params, self.caller, self.store, self.clock)
        xml = render_result(action, IAM_NAMESPACE, result, "req-1")
        parsed = botocore.parsers.QueryParser().parse(
            {"body": xml, "headers": {}, "status_code": 200}, _MODEL.operation_model(action).output_shape)
        return parsed, xml.decode()

    def error(self, action: str, **params) -> SenderError:
        with pytest.raises(SenderError) as info:
            handle_iam(action, params, self.caller, self.store, self.clock)
        return info.value


@pytest.fixture
def iam(tmp_path):
    clock = FixedClock(T0)
    store = Store.create(tmp_path / "data", ACCOUNT, clock)
    bootstrap_admin(store)
    env = Iam(store, clock)
    env("CreatePolicy", PolicyName="Bound", PolicyDocument=allow("iam:Get*"))
    yield env
    store.close()


def _order(xml: str, parent: str) -> list[str]:
    """Child element names of the first ``<parent>`` in document order."""
    inner = re.search(rf"<{parent}>(.*?)</{parent}>", xml, re.S).group(1)
    names, depth = [], 0
    for closing, name in re.findall(r"<(/?)(\w+)>", inner):
        if closing:
            depth -= 1
        else:
            if depth == 0:
                names.append(name)
            depth += 1
    return names


def test_create_and_get_user_show_the_boundary_in_model_order(iam):
    parsed, xml = iam("CreateUser", UserName="alice", PermissionsBoundary=policy_arn("Bound"),
                      Tags=[{"Key": "team", "Value": "a"}])
    expected = {"PermissionsBoundaryType": "Policy", "PermissionsBoundaryArn": policy_arn("Bound")}
    assert parsed["User"]["PermissionsBoundary"] == expected
    assert _order(xml, "User") == ["Path", "UserName", "UserId", "Arn", "CreateDate", "PermissionsBoundary", "Tags"]
    assert _order(xml, "PermissionsBoundary") == ["PermissionsBoundaryType", "PermissionsBoundaryArn"]
    parsed, xml = iam("GetUser", UserName="alice")
    assert parsed["User"]["PermissionsBoundary"] == expected
    # ListUsers leaves it out, as AWS's ListUsers does (the model's documentation says so).
    parsed, xml = iam("ListUsers")
    assert all("PermissionsBoundary" not in u for u in parsed["Users"]) and "PermissionsBoundary" not in xml


def test_create_and_get_role_show_the_boundary_in_model_order(iam):
    parsed, xml = iam("CreateRole", RoleName="app", AssumeRolePolicyDocument=TRUST,
                      PermissionsBoundary=policy_arn("Bound"), Tags=[{"Key": "k", "Value": "v"}])
    assert parsed["Role"]["PermissionsBoundary"]["PermissionsBoundaryArn"] == policy_arn("Bound")
    assert _order(xml, "Role")[-3:] == ["MaxSessionDuration", "PermissionsBoundary", "Tags"]
    parsed, xml = iam("GetRole", RoleName="app")
    assert _order(xml, "Role")[-4:] == ["MaxSessionDuration", "PermissionsBoundary", "Tags", "RoleLastUsed"]
    assert "PermissionsBoundary" not in iam("ListRoles")[1]


def test_put_replace_delete_round_trip(iam):
    iam("CreatePolicy", PolicyName="Other", PolicyDocument=allow("iam:List*"))
    iam("CreateUser", UserName="bob")
    assert "PermissionsBoundary" not in iam("GetUser", UserName="bob")[0]["User"]
    iam("PutUserPermissionsBoundary", UserName="BOB", PermissionsBoundary=policy_arn("Bound"))
    iam("PutUserPermissionsBoundary", UserName="bob", PermissionsBoundary=policy_arn("Other"))
    assert iam("GetUser", UserName="bob")[0]["User"]["PermissionsBoundary"]["PermissionsBoundaryArn"] == \
        policy_arn("Other")
    iam("DeleteUserPermissionsBoundary", UserName="bob")
    assert "PermissionsBoundary" not in iam("GetUser", UserName="bob")[0]["User"]
    iam("DeleteUserPermissionsBoundary", UserName="bob")   # none set: not an error


def test_usage_count_list_filter_and_delete_conflict(iam):
    iam("CreatePolicy", PolicyName="Plain", PolicyDocument=allow("s3:*"))
    iam("CreateUser", UserName="u1", PermissionsBoundary=policy_arn("Bound"))
    iam("CreateRole", RoleName="r1", AssumeRolePolicyDocument=TRUST)
    iam("PutRolePermissionsBoundary", RoleName="r1", PermissionsBoundary=policy_arn("Bound"))
    iam("AttachUserPolicy", UserName="u1", PolicyArn=policy_arn("Plain"))
    got = iam("GetPolicy", PolicyArn=policy_arn("Bound"))[0]["Policy"]
    assert (got["PermissionsBoundaryUsageCount"], got["AttachmentCount"]) == (2, 0)

    def names(**filters):
        return [p["PolicyName"] for p in iam("ListPolicies", **filters)[0]["Policies"]]

    assert names() == ["Bound", "Plain"]
    assert names(PolicyUsageFilter="PermissionsBoundary") == ["Bound"]
    assert names(PolicyUsageFilter="PermissionsPolicy") == ["Plain"]
    counts = {p["PolicyName"]: p["PermissionsBoundaryUsageCount"] for p in iam("ListPolicies")[0]["Policies"]}
    assert counts == {"Bound": 2, "Plain": 0}

    e = iam.error("DeletePolicy", PolicyArn=policy_arn("Bound"))
    assert (e.code, e.message, e.http_status) == ("DeleteConflict", "Cannot delete a policy attached to entities.", 409)
    iam("DeleteRolePermissionsBoundary", RoleName="r1")
    iam("DeleteRole", RoleName="r1")
    assert iam("GetPolicy", PolicyArn=policy_arn("Bound"))[0]["Policy"]["PermissionsBoundaryUsageCount"] == 1
    iam("DetachUserPolicy", UserName="u1", PolicyArn=policy_arn("Plain"))
    iam("DeleteUser", UserName="u1")         # a boundary does not block deleting its user
    assert iam("GetPolicy", PolicyArn=policy_arn("Bound"))[0]["Policy"]["PermissionsBoundaryUsageCount"] == 0
    iam("DeletePolicy", PolicyArn=policy_arn("Bound"))


@pytest.mark.parametrize("arn", [f"arn:aws:iam::{ACCOUNT}:role/some-role", f"arn:aws:iam::{ACCOUNT}:user/bob",
                                 "arn:aws:s3:::bucket/policy/x", f"arn:aws:iam::{ACCOUNT}:policy/",
                                 "not-an-arn-at-all-but-long-enough"])
def test_not_a_managed_policy_arn_is_invalid_input(iam, arn):
    iam("CreateUser", UserName="carol")
    for action, params in (("PutUserPermissionsBoundary", {"UserName": "carol"}),
                           ("CreateUser", {"UserName": "dave"}),
                           ("CreateRole", {"RoleName": "r", "AssumeRolePolicyDocument": TRUST})):
        e = iam.error(action, PermissionsBoundary=arn, **params)
        assert (e.code, e.message, e.http_status) == (
            "InvalidInput", f"Value ({arn}) for parameter PermissionsBoundary is invalid.", 400)
    assert iam.store.user("dave") is None and iam.store.role("r") is None


def test_unknown_policy_or_entity_is_no_such_entity_and_creates_nothing(iam):
    missing = policy_arn("Missing")
    for action, params in (("CreateUser", {"UserName": "erin"}),
                           ("CreateRole", {"RoleName": "r", "AssumeRolePolicyDocument": TRUST})):
        e = iam.error(action, PermissionsBoundary=missing, **params)
        assert (e.code, e.message, e.http_status) == (
            "NoSuchEntity", f"Policy {missing} does not exist or is not attachable.", 404)
    assert iam.store.user("erin") is None and iam.store.role("r") is None   # both, or neither
    e = iam.error("PutUserPermissionsBoundary", UserName="nobody", PermissionsBoundary=policy_arn("Bound"))
    assert (e.code, e.message) == ("NoSuchEntity", "The user with name nobody cannot be found.")
    e = iam.error("DeleteRolePermissionsBoundary", RoleName="nothing")
    assert (e.code, e.message) == ("NoSuchEntity", "The role with name nothing cannot be found.")


def test_an_unreadable_boundary_denies_everything():
    """AWS refuses to delete a policy in use as a boundary; should one be unreadable anyway, it denies."""
    store = SimpleNamespace(identity_policies=lambda kind, name: [ADMIN],
                            boundary_document=lambda kind, name: (policy_arn("Gone"), None))
    principal = SimpleNamespace(kind="user", user_name="alice", session=None, revoked=False)
    identity, session, boundary = principal_policies(principal, store)
    ctx = build_request_context("iam:GetUser", f"arn:aws:iam::{ACCOUNT}:user/alice",
                                f"arn:aws:iam::{ACCOUNT}:user/alice")
    assert evaluate(ctx, identity).allowed
    assert not evaluate(ctx, identity, session_policies=session, permissions_boundary=boundary).allowed


# ---- part two: boto3 over a loopback socket ----------------------------------------------------

@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    running = ThreadedBackend(str(tmp_path_factory.mktemp("backend") / "data")).start()
    admin = running.client("iam")
    admin.create_policy(PolicyName="GetOnly", PolicyDocument=allow("iam:Get*"))
    admin.create_policy(PolicyName="GetListAssume", PolicyDocument=allow("iam:Get*", "iam:List*", "sts:AssumeRole"))
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def real_time(request):
    if "backend" in request.fixturenames:
        backend = request.getfixturevalue("backend")
        backend.clock.set(dt.datetime.now(dt.timezone.utc).replace(microsecond=0))


def make_user(backend, name: str, boundary: str | None = None):
    """A user with AdministratorAccess (inline), optionally bounded; its boto3 key."""
    admin = backend.client("iam")
    extra = {"PermissionsBoundary": policy_arn(boundary)} if boundary else {}
    admin.create_user(UserName=name, **extra)
    admin.put_user_policy(UserName=name, PolicyName="AdministratorAccess", PolicyDocument=ADMIN)
    key = admin.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def make_role(backend, name: str, boundary: str | None = None) -> str:
    admin = backend.client("iam")
    extra = {"PermissionsBoundary": policy_arn(boundary)} if boundary else {}
    arn = admin.create_role(RoleName=name, AssumeRolePolicyDocument=TRUST, **extra)["Role"]["Arn"]
    admin.put_role_policy(RoleName=name, PolicyName="AdministratorAccess", PolicyDocument=ADMIN)
    return arn


def error_of(call, **params) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as info:
        call(**params)
    err = info.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Message"]


@pytest.mark.interop
def test_boto3_round_trips(backend):
    iam = backend.client("iam")
    user = iam.create_user(UserName="rt-user", PermissionsBoundary=policy_arn("GetOnly"))["User"]
    assert user["PermissionsBoundary"] == {"PermissionsBoundaryType": "Policy",
                                           "PermissionsBoundaryArn": policy_arn("GetOnly")}
    iam.put_user_permissions_boundary(UserName="rt-user", PermissionsBoundary=policy_arn("GetListAssume"))
    assert iam.get_user(UserName="rt-user")["User"]["PermissionsBoundary"]["PermissionsBoundaryArn"] == \
        policy_arn("GetListAssume")
    assert all("PermissionsBoundary" not in u for u in iam.list_users()["Users"])
    iam.delete_user_permissions_boundary(UserName="rt-user")
    assert "PermissionsBoundary" not in iam.get_user(UserName="rt-user")["User"]

    make_role(backend, "rt-role")
    iam.put_role_permissions_boundary(RoleName="rt-role", PermissionsBoundary=policy_arn("GetOnly"))
    role = iam.get_role(RoleName="rt-role")["Role"]
    assert role["PermissionsBoundary"]["PermissionsBoundaryArn"] == policy_arn("GetOnly")
    assert all("PermissionsBoundary" not in r for r in iam.list_roles()["Roles"])
    iam.delete_role_permissions_boundary(RoleName="rt-role")
    assert "PermissionsBoundary" not in iam.get_role(RoleName="rt-role")["Role"]


@pytest.mark.interop
def test_boto3_errors_and_usage_counts(backend):
    iam = backend.client("iam")
    iam.create_policy(PolicyName="Counted", PolicyDocument=allow("s3:*"))
    iam.create_user(UserName="cnt-user", PermissionsBoundary=policy_arn("Counted"))
    make_role(backend, "cnt-role", boundary="Counted")
    assert iam.get_policy(PolicyArn=policy_arn("Counted"))["Policy"]["PermissionsBoundaryUsageCount"] == 2
    listed = iam.list_policies(Scope="Local", PolicyUsageFilter="PermissionsBoundary")["Policies"]
    assert policy_arn("Counted") in [p["Arn"] for p in listed]
    assert error_of(iam.delete_policy, PolicyArn=policy_arn("Counted")) == (
        "DeleteConflict", 409, "Cannot delete a policy attached to entities.")

    bad = f"arn:aws:iam::{ACCOUNT}:role/cnt-role"
    assert error_of(iam.put_user_permissions_boundary, UserName="cnt-user", PermissionsBoundary=bad) == (
        "InvalidInput", 400, f"Value ({bad}) for parameter PermissionsBoundary is invalid.")
    missing = policy_arn("NoSuchPolicy")
    assert error_of(iam.put_role_permissions_boundary, RoleName="cnt-role", PermissionsBoundary=missing) == (
        "NoSuchEntity", 404, f"Policy {missing} does not exist or is not attachable.")
    assert error_of(iam.create_user, UserName="never", PermissionsBoundary=missing)[0] == "NoSuchEntity"
    assert error_of(iam.get_user, UserName="never")[0] == "NoSuchEntity"
    assert error_of(iam.delete_user_permissions_boundary, UserName="never")[:2] == ("NoSuchEntity", 404)
    with pytest.raises(iam.exceptions.InvalidInputException):
        iam.create_role(RoleName="never", AssumeRolePolicyDocument=TRUST, PermissionsBoundary=bad)


@pytest.mark.interop
def test_user_boundary_limits_its_long_term_key(backend):
    key = make_user(backend, "bounded", boundary="GetOnly")
    iam = backend.client("iam", key)
    assert iam.get_user()["User"]["PermissionsBoundary"]["PermissionsBoundaryArn"] == policy_arn("GetOnly")
    code, status, message = error_of(iam.create_user, UserName="made-by-bounded")
    assert (code, status) == ("AccessDenied", 403)
    assert message == (f"User: arn:aws:iam::{ACCOUNT}:user/bounded is not authorized to perform: iam:CreateUser "
                       f"on resource: arn:aws:iam::{ACCOUNT}:user/made-by-bounded")
    # The boundary alone grants nothing: without the identity policy even GetUser is refused.
    backend.client("iam").delete_user_policy(UserName="bounded", PolicyName="AdministratorAccess")
    assert error_of(iam.get_user)[0] == "AccessDenied"


@pytest.mark.interop
def test_user_boundary_limits_its_get_session_token_sessions(backend):
    key = make_user(backend, "gst-user", boundary="GetOnly")
    role_arn = make_role(backend, "gst-target")
    creds = backend.client("sts", key).get_session_token()["Credentials"]
    sts = backend.client("sts", creds=creds)
    assert error_of(sts.assume_role, RoleArn=role_arn, RoleSessionName="gst")[:2] == ("AccessDenied", 403)
    backend.client("iam").put_user_permissions_boundary(UserName="gst-user",
                                                        PermissionsBoundary=policy_arn("GetListAssume"))
    assert sts.assume_role(RoleArn=role_arn, RoleSessionName="gst")["AssumedRoleUser"]["Arn"].endswith("/gst-target/gst")


@pytest.mark.interop
def test_role_boundary_limits_its_sessions_and_changes_reach_live_ones(backend):
    admin_iam = backend.client("iam")
    role_arn = make_role(backend, "bounded-role", boundary="GetOnly")
    target_arn = make_role(backend, "chain-target")
    creds = backend.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="live")["Credentials"]
    iam, sts = backend.client("iam", creds=creds), backend.client("sts", creds=creds)

    assert iam.get_role(RoleName="bounded-role")["Role"]["RoleName"] == "bounded-role"
    assert error_of(iam.list_roles)[:2] == ("AccessDenied", 403)
    assert error_of(iam.create_user, UserName="by-role")[:2] == ("AccessDenied", 403)
    assert error_of(sts.assume_role, RoleArn=target_arn, RoleSessionName="chained")[:2] == ("AccessDenied", 403)

    # The boundary of the role at request time applies, to this live session too.
    admin_iam.put_role_permissions_boundary(RoleName="bounded-role", PermissionsBoundary=policy_arn("GetListAssume"))
    assert "Roles" in iam.list_roles()
    chained = sts.assume_role(RoleArn=target_arn, RoleSessionName="chained")["AssumedRoleUser"]
    assert chained["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/chain-target/chained"
    assert error_of(iam.create_user, UserName="by-role")[:2] == ("AccessDenied", 403)

    admin_iam.delete_role_permissions_boundary(RoleName="bounded-role")
    assert iam.create_user(UserName="by-role")["User"]["UserName"] == "by-role"
    admin_iam.put_role_permissions_boundary(RoleName="bounded-role", PermissionsBoundary=policy_arn("GetOnly"))
    assert error_of(iam.list_roles)[:2] == ("AccessDenied", 403)


@pytest.mark.interop
def test_iam_permissions_boundary_condition_key_delegates_user_creation(backend):
    """The IUG's delegation pattern: create users, and manage their policies, only under one boundary."""
    admin = backend.client("iam")
    only_get = policy_arn("GetOnly")
    delegate = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Resource": "*",
         "Action": ["iam:CreateUser", "iam:PutUserPolicy", "iam:PutUserPermissionsBoundary"],
         "Condition": {"StringEquals": {"iam:PermissionsBoundary": only_get}}},
        {"Effect": "Allow", "Action": "iam:GetUser", "Resource": "*"}]})
    admin.create_user(UserName="zhang")
    admin.put_user_policy(UserName="zhang", PolicyName="Delegate", PolicyDocument=delegate)
    key = admin.create_access_key(UserName="zhang")["AccessKey"]
    zhang = backend.client("iam", (key["AccessKeyId"], key["SecretAccessKey"]))

    assert error_of(zhang.create_user, UserName="free")[:2] == ("AccessDenied", 403)
    assert error_of(zhang.create_user, UserName="other",
                    PermissionsBoundary=policy_arn("GetListAssume"))[:2] == ("AccessDenied", 403)
    made = zhang.create_user(UserName="intern", PermissionsBoundary=only_get)["User"]
    assert made["PermissionsBoundary"]["PermissionsBoundaryArn"] == only_get
    zhang.put_user_policy(UserName="intern", PolicyName="p", PolicyDocument=ADMIN)   # its boundary: allowed
    admin.create_user(UserName="unbounded")
    assert error_of(zhang.put_user_policy, UserName="unbounded", PolicyName="p",
                    PolicyDocument=ADMIN)[:2] == ("AccessDenied", 403)
    zhang.put_user_permissions_boundary(UserName="unbounded", PermissionsBoundary=only_get)
    zhang.put_user_policy(UserName="unbounded", PolicyName="p", PolicyDocument=ADMIN)


@pytest.mark.interop
def test_a_trust_policy_naming_the_role_is_still_limited_by_its_boundary(backend):
    """A resource policy granting to a role's ARN is limited by the boundary's implicit deny
    (one naming the session, or a user, is not) [IUG:access_policies_boundaries]."""
    admin = backend.client("iam")
    source_arn = make_role(backend, "trusted-source", boundary="GetOnly")
    trust = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": source_arn}, "Action": "sts:AssumeRole"}]})
    target_arn = admin.create_role(RoleName="names-source", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    creds = backend.client("sts").assume_role(RoleArn=source_arn, RoleSessionName="src")["Credentials"]
    sts = backend.client("sts", creds=creds)
    assert error_of(sts.assume_role, RoleArn=target_arn, RoleSessionName="next")[:2] == ("AccessDenied", 403)
    admin.put_role_policy(RoleName="trusted-source", PolicyName="AdministratorAccess",
                          PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
                              {"Effect": "Allow", "Action": "iam:Get*", "Resource": "*"}]}))
    admin.put_role_permissions_boundary(RoleName="trusted-source", PermissionsBoundary=policy_arn("GetListAssume"))
    # The trust names the role: no identity Allow is needed once the boundary does not refuse.
    assert sts.assume_role(RoleArn=target_arn, RoleSessionName="next")["AssumedRoleUser"]["Arn"].endswith("/next")

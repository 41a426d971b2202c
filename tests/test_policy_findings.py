"""The adversarial review of the policy surface, each finding reproduced through the whole backend.

Every test here was written against the main branch before the fix, and failed there:
a Deny written on a context key the backend never set let the request through (200
where AWS answers 403), trust followed a principal's name instead of its unique id,
and role chaining rewrote what AWS keeps. The Kit (tests/test_sts_ops.py) runs every
call through SigV4 verification, validation, authorization and XML rendering.
"""

from __future__ import annotations

import json
import urllib.parse

import pytest

from sts_backend.app import Backend
from tests.test_sts_ops import ACCOUNT, ADMIN_ROLE_POLICY, Client, Kit, allow, expect, trust
from wire.sigv4 import Credentials


@pytest.fixture
def kit(tmp_path):
    k = Kit(str(tmp_path / "data"))
    yield k
    k.close()


def policy(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def deny_if(action: str, condition: dict) -> dict:
    return {"Effect": "Deny", "Action": action, "Resource": "*", "Condition": condition}


ALLOW_ALL = {"Effect": "Allow", "Action": "*", "Resource": "*"}


def tag(key: str, value: str) -> dict[str, str]:
    return {"Tags.member.1.Key": key, "Tags.member.1.Value": value}


# ---- deny statements on context keys the backend never set -----------------------------------

def test_principal_tag_carries_the_users_own_tags(kit):
    """aws:PrincipalTag/* holds the IAM user's tags, not only session tags [IUG:reference_policies_condition-keys]."""
    alice = kit.user("alice", policy(ALLOW_ALL, deny_if("iam:ListUsers",
                                                        {"StringEquals": {"aws:PrincipalTag/team": "contractors"}})))
    alice.iam("ListUsers")
    kit.admin.iam("TagUser", UserName="alice", **tag("team", "contractors"))
    expect("AccessDenied", alice.iam, "ListUsers")
    kit.admin.iam("UntagUser", UserName="alice", **{"TagKeys.member.1": "team"})
    alice.iam("ListUsers")


def test_principal_tag_carries_the_roles_tags_and_session_tags_win(kit):
    guard = policy(ALLOW_ALL, deny_if("iam:ListUsers", {"StringEquals": {"aws:PrincipalTag/stage": "prod"}}))
    arn = kit.role("app", trust(ACCOUNT), guard)
    kit.admin.iam("TagRole", RoleName="app", **tag("stage", "prod"))
    prod = kit.admin.temporary(kit.admin.sts("AssumeRole", RoleArn=arn, RoleSessionName="s1"))
    expect("AccessDenied", prod.iam, "ListUsers")
    kit.admin.iam("UpdateAssumeRolePolicy", RoleName="app",
                  PolicyDocument=trust(ACCOUNT, ("sts:AssumeRole", "sts:TagSession")))
    # A session tag with the same key (any case) overrides the role's tag [IUG:id_session-tags].
    dev = kit.admin.temporary(kit.admin.sts("AssumeRole", RoleArn=arn, RoleSessionName="s2",
                                            **{"Tags.member.1.Key": "STAGE", "Tags.member.1.Value": "dev"}))
    dev.iam("ListUsers")


def test_resource_tag_of_the_target_user_and_role(kit):
    """aws:ResourceTag/* and iam:ResourceTag/* come from the user or role acted on."""
    ops = kit.user("ops", policy(ALLOW_ALL,
                                 deny_if("iam:DeleteUserPolicy", {"StringEquals": {"aws:ResourceTag/protected": "yes"}}),
                                 deny_if("iam:UpdateRole", {"StringEquals": {"iam:ResourceTag/protected": "yes"}})))
    kit.user("bob", allow("s3:*"))
    kit.admin.iam("TagUser", UserName="bob", **tag("protected", "yes"))
    expect("AccessDenied", ops.iam, "DeleteUserPolicy", UserName="bob", PolicyName="p0")
    kit.role("guarded", trust(ACCOUNT))
    kit.admin.iam("TagRole", RoleName="guarded", **tag("protected", "yes"))
    err = expect("AccessDenied", ops.iam, "UpdateRole", RoleName="guarded", Description="mine now")
    assert err.message.endswith(f"on resource: arn:aws:iam::{ACCOUNT}:role/guarded")
    kit.role("open", trust(ACCOUNT))
    ops.iam("UpdateRole", RoleName="open", Description="fine")


def test_resource_tag_of_the_role_in_assume_role(kit):
    arn = kit.role("vault", trust(ACCOUNT))
    kit.admin.iam("TagRole", RoleName="vault", **tag("tier", "secret"))
    bob = kit.user("bob", policy({"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"},
                                 deny_if("sts:AssumeRole", {"StringEquals": {"aws:ResourceTag/tier": "secret"}})))
    expect("AccessDenied", bob.sts, "AssumeRole", RoleArn=arn, RoleSessionName="s1")


def test_request_tags_and_tag_keys_on_iam_calls(kit):
    ops = kit.user("ops", policy(ALLOW_ALL, deny_if("iam:CreateUser", {"StringEquals": {"aws:RequestTag/admin": "true"}}),
                                 deny_if("iam:UntagUser", {"ForAnyValue:StringEquals": {"aws:TagKeys": ["owner"]}})))
    expect("AccessDenied", ops.iam, "CreateUser", UserName="x",
           **{"Tags.member.1.Key": "admin", "Tags.member.1.Value": "true"})
    ops.iam("CreateUser", UserName="y", **{"Tags.member.1.Key": "owner", "Tags.member.1.Value": "ops"})
    expect("AccessDenied", ops.iam, "UntagUser", UserName="y", **{"TagKeys.member.1": "owner"})


def test_secure_transport_is_false_over_http_and_true_over_tls(kit):
    tls_only = policy(ALLOW_ALL, deny_if("*", {"Bool": {"aws:SecureTransport": "false"}}))
    carol = kit.user("carol", tls_only)
    expect("AccessDenied", carol.iam, "ListUsers")
    kit.backend = Backend(kit.store, kit.clock, kit.audit, secure_transport=True)   # as `backend serve --tls-cert`
    carol.iam("ListUsers")


def test_source_ip_is_the_peer_address(kit):
    """The Kit's requests come from 127.0.0.1 (``Backend.handle_httpx``'s peer)."""
    office = kit.user("dave", policy(ALLOW_ALL, deny_if("*", {"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}})))
    expect("AccessDenied", office.iam, "ListUsers")
    local = kit.user("erin", policy(ALLOW_ALL, deny_if("*", {"NotIpAddress": {"aws:SourceIp": "127.0.0.0/8"}})))
    local.iam("ListUsers")


def test_principal_arn_of_a_role_session_keeps_the_role_path(kit):
    kit.admin.iam("CreateRole", RoleName="app", Path="/team/", AssumeRolePolicyDocument=trust(ACCOUNT))
    role_arn = f"arn:aws:iam::{ACCOUNT}:role/team/app"
    kit.admin.iam("PutRolePolicy", RoleName="app", PolicyName="p", PolicyDocument=policy(
        ALLOW_ALL, deny_if("iam:DeleteUser", {"ArnEquals": {"aws:PrincipalArn": role_arn}})))
    session = kit.admin.temporary(kit.admin.sts("AssumeRole", RoleArn=role_arn, RoleSessionName="s1"))
    session.iam("ListUsers")
    kit.user("victim")
    expect("AccessDenied", session.iam, "DeleteUser", UserName="victim")


# ---- trust follows unique ids, not names --------------------------------------------------------

def test_a_recreated_user_does_not_inherit_the_trust_of_the_deleted_one(kit):
    """The helpdesk escalation: allowed only CreateUser/CreateAccessKey, re-create the deleted
    user an admin role trusted, and assume the role. AWS stored the old user's unique id."""
    bob = kit.user("bob")
    old_id = bob.sts("GetCallerIdentity")["UserId"]
    admin_role = kit.role("admin-role", trust(f"arn:aws:iam::{ACCOUNT}:user/bob"), ADMIN_ROLE_POLICY)
    bob.sts("AssumeRole", RoleArn=admin_role, RoleSessionName="s1")
    kit.admin.iam("DeleteAccessKey", UserName="bob", AccessKeyId=bob.creds.access_key_id)
    kit.admin.iam("DeleteUser", UserName="bob")
    helpdesk = kit.user("helpdesk", policy({"Effect": "Allow", "Action": ["iam:CreateUser", "iam:CreateAccessKey"],
                                            "Resource": "*"}))
    helpdesk.iam("CreateUser", UserName="bob")
    key = helpdesk.iam("CreateAccessKey", UserName="bob")["AccessKey"]
    impostor = Client(kit, Credentials(key["AccessKeyId"], key["SecretAccessKey"]))
    err = expect("AccessDenied", impostor.sts, "AssumeRole", RoleArn=admin_role, RoleSessionName="s1")
    assert err.status == 403
    # GetRole shows the deleted user's unique id where its ARN was.
    shown = urllib.parse.unquote(kit.admin.iam("GetRole", RoleName="admin-role")["Role"]["AssumeRolePolicyDocument"])
    assert json.loads(shown)["Statement"][0]["Principal"] == {"AWS": old_id}


def test_a_trust_policy_naming_a_missing_principal_is_refused(kit):
    err = expect("MalformedPolicyDocument", kit.admin.iam, "CreateRole", RoleName="r",
                 AssumeRolePolicyDocument=trust(f"arn:aws:iam::{ACCOUNT}:role/ghost"))
    assert err.message == f'Invalid principal in policy: "AWS":"arn:aws:iam::{ACCOUNT}:role/ghost"'
    # Other accounts' principals cannot be checked here, and are accepted as AWS accepts them.
    kit.role("r", trust("arn:aws:iam::210987654321:user/someone"))


# ---- role chaining keeps what AWS keeps ---------------------------------------------------------

@pytest.fixture
def chain(kit):
    both = ("sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity")
    first = kit.role("first", trust(ACCOUNT, both), ADMIN_ROLE_POLICY)
    second = kit.role("second", trust(ACCOUNT, both), ADMIN_ROLE_POLICY)
    return first, second


def test_source_identity_carries_through_chaining_and_cannot_change(kit, chain):
    first, second = chain
    out = kit.admin.sts("AssumeRole", RoleArn=first, RoleSessionName="s1", SourceIdentity="alice")
    hop = kit.admin.temporary(out)
    err = expect("InvalidParameterValue", hop.sts, "AssumeRole", RoleArn=second, RoleSessionName="s2",
                 SourceIdentity="bob")
    assert "cannot be changed" in err.message
    kept = hop.sts("AssumeRole", RoleArn=second, RoleSessionName="s2")
    assert kept["SourceIdentity"] == "alice"
    again = hop.sts("AssumeRole", RoleArn=second, RoleSessionName="s3", SourceIdentity="alice")
    assert again["SourceIdentity"] == "alice"


def test_transitive_tags_carry_through_chaining_and_cannot_be_overridden(kit, chain):
    first, second = chain
    third = kit.role("third", trust(ACCOUNT, ("sts:AssumeRole", "sts:TagSession"),
                                    {"StringEquals": {"aws:PrincipalTag/project": "apollo"}}), ADMIN_ROLE_POLICY)
    tags = {"Tags.member.1.Key": "project", "Tags.member.1.Value": "apollo",
            "Tags.member.2.Key": "shift", "Tags.member.2.Value": "night", "TransitiveTagKeys.member.1": "project"}
    hop1 = kit.admin.temporary(kit.admin.sts("AssumeRole", RoleArn=first, RoleSessionName="s1", **tags))
    err = expect("InvalidParameterValue", hop1.sts, "AssumeRole", RoleArn=second, RoleSessionName="s2",
                 **{"Tags.member.1.Key": "Project", "Tags.member.1.Value": "gemini"})
    assert "inherited" in err.message
    hop2 = hop1.temporary(hop1.sts("AssumeRole", RoleArn=second, RoleSessionName="s2",
                                   **{"Tags.member.1.Key": "other", "Tags.member.1.Value": "x"}))
    # Two hops on, the transitive tag is still the principal's: the third role's trust requires it.
    hop2.sts("AssumeRole", RoleArn=third, RoleSessionName="s3")
    plain = kit.admin.temporary(kit.admin.sts("AssumeRole", RoleArn=second, RoleSessionName="s4"))
    expect("AccessDenied", plain.sts, "AssumeRole", RoleArn=third, RoleSessionName="s5")

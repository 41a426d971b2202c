"""Revoking live sessions: the IAM way, the operator's command, MFA deactivation.

A revoked session keeps authenticating — GetCallerIdentity answers it, as AWS answers
every valid principal — and gets AccessDenied on every authorized call
[IUG:id_roles_use_revoke-sessions]. Token keys: tests/interop/test_backend_revocation.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sts_backend.store import Store
from tests.test_sts_ops import ACCOUNT, ADMIN_ROLE_POLICY, Kit, allow, expect, trust

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def kit(tmp_path):
    k = Kit(str(tmp_path / "data"))
    yield k
    k.close()


def assert_revoked(client, action: str = "ListUsers") -> None:
    who = client.sts("GetCallerIdentity")["Arn"]
    err = expect("AccessDenied", client.iam, action)
    assert err.status == 403 and err.message == (f"User: {who} is not authorized to perform: iam:{action} "
                                                  "on resource: *")


def test_aws_revoke_older_sessions_policy(kit):
    """The console's "Revoke active sessions": an inline Deny on aws:TokenIssueTime, verbatim from the guide."""
    arn = kit.role("app", trust(ACCOUNT), ADMIN_ROLE_POLICY)
    old = kit.admin.temporary(kit.admin.sts("AssumeRole", RoleArn=arn, RoleSessionName="old"))
    old.iam("ListUsers")
    kit.clock.advance(60)
    cutoff = kit.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    kit.admin.iam("PutRolePolicy", RoleName="app", PolicyName="AWSRevokeOlderSessions", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Deny", "Action": ["*"], "Resource": ["*"],
                       "Condition": {"DateLessThan": {"aws:TokenIssueTime": cutoff}}}]}))
    assert_revoked(old)
    kit.clock.advance(1)
    fresh = kit.admin.temporary(kit.admin.sts("AssumeRole", RoleArn=arn, RoleSessionName="new"))
    fresh.iam("ListUsers")
    # Long-term keys have no aws:TokenIssueTime: the Deny's condition is false for them.
    kit.admin.iam("ListUsers")


def test_revoke_sessions_command_on_a_served_data_dir(kit):
    arn = kit.role("app", trust(ACCOUNT), ADMIN_ROLE_POLICY)
    old = kit.admin.temporary(kit.admin.sts("AssumeRole", RoleArn=arn, RoleSessionName="old"))
    old.iam("ListUsers")
    kit.clock.advance(5)   # the command uses the real clock, later than the kit's
    done = subprocess.run([sys.executable, "-m", "cli.main", "backend", "revoke-sessions", "--data-dir",
                           kit.data_dir, "--role", "app"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"Revoked": "role", "Name": "app"}
    assert_revoked(old)
    missing = subprocess.run([sys.executable, "-m", "cli.main", "backend", "revoke-sessions", "--data-dir",
                              kit.data_dir, "--role", "nope"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and missing.stderr.strip().splitlines() == [
        f"rolecall: backend revoke-sessions: there is no role named 'nope' in {kit.data_dir}"]


def test_revoking_a_users_sessions(kit):
    bob = kit.user("bob", allow("*"))
    serial, seed = kit.mfa_device("bob")
    session = bob.temporary(bob.sts("GetSessionToken", SerialNumber=serial, TokenCode=kit.code(seed)))
    session.iam("ListUsers")
    kit.clock.advance(1)
    kit.store.revoke_sessions("user", "bob")
    assert_revoked(session)
    bob.iam("ListUsers")   # the long-term key itself is not a session


def test_deactivating_an_mfa_device_ends_its_sessions(kit):
    bob = kit.user("bob", allow("*"))
    serial, seed = kit.mfa_device("bob")
    arn = kit.role("app", trust(ACCOUNT), ADMIN_ROLE_POLICY)
    with_mfa = bob.temporary(bob.sts("GetSessionToken", SerialNumber=serial, TokenCode=kit.code(seed)))
    chained = with_mfa.temporary(with_mfa.sts("AssumeRole", RoleArn=arn, RoleSessionName="s1"))
    kit.clock.advance(30)
    role_mfa = bob.temporary(bob.sts("AssumeRole", RoleArn=arn, RoleSessionName="s2", SerialNumber=serial,
                                     TokenCode=kit.code(seed)))
    without = bob.temporary(bob.sts("AssumeRole", RoleArn=arn, RoleSessionName="s3"))
    for client in (with_mfa, chained, role_mfa, without):
        client.iam("ListUsers")
    kit.clock.advance(1)
    kit.admin.iam("DeactivateMFADevice", UserName="bob", SerialNumber=serial)
    for client in (with_mfa, chained, role_mfa):
        assert_revoked(client)
    without.iam("ListUsers")   # minted without the device: untouched


def test_revocation_reaches_another_process_on_the_data_dir(kit):
    """A backend serving the data dir sees a revocation written by another process at its next call."""
    arn = kit.role("app", trust(ACCOUNT), ADMIN_ROLE_POLICY)
    session = kit.admin.temporary(kit.admin.sts("AssumeRole", RoleArn=arn, RoleSessionName="s1"))
    session.iam("ListUsers")
    kit.clock.advance(1)
    other = Store.open(kit.data_dir, kit.clock)
    try:
        other.revoke_sessions("role", "app")
    finally:
        other.close()
    assert_revoked(session)


def test_get_caller_identity_answers_under_an_explicit_deny_of_everything(kit):
    """AWS answers GetCallerIdentity for every valid principal: no policy can deny it."""
    denied = kit.user("denied", json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Deny", "Action": "*", "Resource": "*"}]}))
    assert denied.sts("GetCallerIdentity")["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/denied"
    expect("AccessDenied", denied.iam, "GetUser")

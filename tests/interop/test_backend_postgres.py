"""Backend replicas on one PostgreSQL database: `rolecall backend serve --database` processes,
driven by boto3, on a throwaway cluster (``tests.pg_support``; skipped, saying why, without one).

Two replicas A and B share the store: what one writes the other serves (users, keys,
sessions, revocations, token keys), an MFA code is accepted once across both, a
replica SIGKILLed during a write burst loses no acknowledged write, and a database
restart is answered 503 while it lasts and survived without a restart of either replica.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time

import pytest
from botocore.exceptions import ClientError

from sts_backend import mfa
from tests.interop.test_backend_cli import ACCOUNT, BackendProcess, rolecall

pytestmark = pytest.mark.interop

TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"AWS": ACCOUNT}, "Action": "sts:AssumeRole"}]})


def replica(url: str, tmp_path, name: str) -> BackendProcess:
    return BackendProcess(None, "--database", url, "--audit-log", str(tmp_path / f"audit-{name}.log"))


@pytest.fixture
def pair(pg_url, tmp_path):
    """(A, B, admin key, URL): two replicas on a fresh, initialised database."""
    done = rolecall("backend", "init", "--database", pg_url, "--account-id", ACCOUNT)
    assert done.returncode == 0, done.stderr
    admin = json.loads(done.stdout)
    a, b = replica(pg_url, tmp_path, "a"), replica(pg_url, tmp_path, "b")
    yield a, b, (admin["AccessKeyId"], admin["SecretAccessKey"]), pg_url
    for backend in (a, b):
        if backend.proc.poll() is None:
            assert backend.stop() == 0, "".join(backend.lines)


def _code(client_error: ClientError) -> str:
    return client_error.response["Error"]["Code"]


def test_what_one_replica_writes_the_other_serves(pair):
    a, b, admin, url = pair
    a.client("iam", admin).create_user(UserName="alice")
    key = a.client("iam", admin).create_access_key(UserName="alice")["AccessKey"]
    alice = (key["AccessKeyId"], key["SecretAccessKey"])
    assert b.client("sts", alice).get_caller_identity()["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/alice"
    a.client("iam", admin).create_role(RoleName="app", AssumeRolePolicyDocument=TRUST)
    creds = a.client("sts", admin).assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/app",
                                               RoleSessionName="sess")["Credentials"]
    session = (creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])
    assert b.client("sts", session).get_caller_identity()["Arn"].endswith(":assumed-role/app/sess")
    # names are unique without case across replicas, as in IAM
    with pytest.raises(ClientError) as exc:
        b.client("iam", admin).create_user(UserName="ALICE")
    assert _code(exc.value) == "EntityAlreadyExists"


def test_an_mfa_code_used_on_one_replica_is_refused_on_the_other(pair):
    a, b, admin, url = pair
    iam = a.client("iam", admin)
    device = iam.create_virtual_mfa_device(VirtualMFADeviceName="admin-mfa")["VirtualMFADevice"]
    seed, serial = device["Base32StringSeed"].decode(), device["SerialNumber"]
    step = mfa.timecode(dt.datetime.now(dt.timezone.utc))
    iam.enable_mfa_device(UserName="admin", SerialNumber=serial, AuthenticationCode1=mfa.code_at(seed, step - 1),
                          AuthenticationCode2=mfa.code_at(seed, step))
    code = mfa.code_at(seed, step + 1)
    results: list[str] = []

    def use(backend: BackendProcess) -> None:
        try:
            backend.client("sts", admin).get_session_token(SerialNumber=serial, TokenCode=code)
            results.append("ok")
        except ClientError as err:
            results.append(_code(err))

    racers = [threading.Thread(target=use, args=(r,)) for r in (a, b, a, b)]
    for thread in racers:
        thread.start()
    for thread in racers:
        thread.join(timeout=30)
    assert sorted(results) == ["AccessDenied"] * 3 + ["ok"], results


def _role_session(backend: BackendProcess, admin, url: str) -> tuple[str, str, str]:
    """A session of a role allowed iam:ListRoles, minted by ``backend``."""
    iam = backend.client("iam", admin)
    iam.create_role(RoleName="app", AssumeRolePolicyDocument=TRUST)
    iam.put_role_policy(RoleName="app", PolicyName="read", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iam:ListRoles", "Resource": "*"}]}))
    creds = backend.client("sts", admin).assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/app",
                                                     RoleSessionName="sess", DurationSeconds=900)["Credentials"]
    return creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"]


def _refused_within(backend: BackendProcess, session, seconds: float) -> str:
    """The error code ``backend`` answers the session's ListRoles with, once it refuses it."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            backend.client("iam", session).list_roles()
        except ClientError as err:
            return _code(err)
        assert time.monotonic() < deadline, f"still accepted after {seconds} s"
        time.sleep(0.1)


def test_a_revocation_holds_on_every_replica_within_5_s(pair):
    a, b, admin, url = pair
    session = _role_session(a, admin, url)
    assert b.client("iam", session).list_roles()["Roles"]   # B has authenticated (and cached) it
    done = rolecall("backend", "revoke-sessions", "--database", url, "--role", "app")
    assert done.returncode == 0, done.stderr
    assert _refused_within(b, session, 5) == "AccessDenied"
    assert _refused_within(a, session, 0.5) == "AccessDenied"


def test_a_retired_token_key_is_refused_by_every_replica_within_5_s(pair):
    a, b, admin, url = pair
    session = _role_session(a, admin, url)   # sealed with key 1
    assert rolecall("backend", "rotate-token-key", "--database", url).returncode == 0
    fresh = _role_session_again(b, admin)  # sealed with key 2, by the other replica
    assert a.client("iam", fresh).list_roles()["Roles"] and b.client("iam", session).list_roles()["Roles"]
    done = rolecall("backend", "retire-token-key", "--database", url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["RetiredTokenKeyId"] == 1
    assert _refused_within(a, session, 5) == "InvalidClientTokenId"
    assert _refused_within(b, session, 5) == "InvalidClientTokenId"
    assert a.client("iam", fresh).list_roles()["Roles"]   # the current key's sessions are untouched


def _role_session_again(backend: BackendProcess, admin) -> tuple[str, str, str]:
    creds = backend.client("sts", admin).assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/app",
                                                     RoleSessionName="again", DurationSeconds=900)["Credentials"]
    return creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"]


def test_sigkill_of_a_replica_mid_burst_loses_no_acknowledged_write(pair):
    a, b, admin, url = pair
    acknowledged: list[str] = []
    lock, enough = threading.Lock(), threading.Event()

    def burst(worker: int, backend: BackendProcess) -> None:
        client = backend.client("iam", admin)
        for i in range(300):
            name = f"burst-{worker}-{i}"
            try:
                client.create_user(UserName=name)
            except Exception:
                if backend is a:
                    return   # A died under us: this one was never acknowledged
                raise
            with lock:
                acknowledged.append(name)
                if len(acknowledged) >= 60:
                    enough.set()

    workers = [threading.Thread(target=burst, args=(w, a if w < 3 else b)) for w in range(4)]
    for thread in workers:
        thread.start()
    assert enough.wait(timeout=60)
    a.kill()   # SIGKILL, mid-burst, while B keeps writing
    for thread in workers:
        thread.join(timeout=60)
    names = set()
    marker = None
    while True:   # every page of ListUsers, from the surviving replica
        page = b.client("iam", admin).list_users(**({"Marker": marker} if marker else {}), MaxItems=1000)
        names |= {u["UserName"] for u in page["Users"]}
        if not page.get("IsTruncated"):
            break
        marker = page["Marker"]
    assert set(acknowledged) <= names, sorted(set(acknowledged) - names)[:5]
    assert any(n.startswith("burst-3-") for n in acknowledged)   # B's burst went on


def test_a_database_restart_is_503_while_down_then_served_without_restarting_replicas(pair, pg_cluster):
    a, b, admin, url = pair
    assert a.client("sts", admin).get_caller_identity()["Account"] == ACCOUNT
    a.client("iam", admin).create_user(UserName="bob")
    created = a.client("iam", admin).create_access_key(UserName="bob")["AccessKey"]
    bob = (created["AccessKeyId"], created["SecretAccessKey"])   # never used yet: no replica holds it
    pg_cluster.stop_server("immediate")   # as a crash looks to the clients
    try:
        for backend in (a, b):
            with pytest.raises(ClientError) as exc:
                backend.client("sts", bob).get_caller_identity()
            assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
            assert _code(exc.value) == "ServiceUnavailable"
            with pytest.raises(ClientError) as exc:
                backend.client("iam", admin).create_user(UserName="during")
            assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    finally:
        pg_cluster.start_server()
    deadline = time.monotonic() + 30
    for backend in (a, b):
        while True:
            try:
                assert backend.client("sts", admin).get_caller_identity()["Account"] == ACCOUNT
                break
            except ClientError as err:
                assert _code(err) == "ServiceUnavailable" and time.monotonic() < deadline, err
                time.sleep(0.2)
        assert backend.proc.poll() is None, "".join(backend.lines)
    a.client("iam", admin).create_user(UserName="after")
    assert b.client("iam", admin).get_user(UserName="after")["User"]["UserName"] == "after"
    assert not any("Traceback" in line for line in a.lines + b.lines), "".join(a.lines)

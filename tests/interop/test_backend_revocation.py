"""Token-key retirement and revocation against a backend that is already serving, with boto3.

The backend runs as ``rolecall backend serve`` runs it (``ThreadedBackend``: the async
app over a real loopback socket, read and write lanes); the key commands run as
separate ``rolecall`` processes on its data dir, as an operator runs them. The
backend's wall clock is moved instead of sleeping: it re-reads the key set at most
once per ``auth.KEY_CHECK_INTERVAL`` of that clock.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from sts_backend.auth import KEY_CHECK_INTERVAL
from tests.interop.test_backend_boto3 import ThreadedBackend

pytestmark = pytest.mark.interop

REPO = Path(__file__).resolve().parents[2]


def rolecall(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60)


@pytest.fixture
def backend(tmp_path):
    running = ThreadedBackend(str(tmp_path / "data")).start()
    yield running
    running.stop()


def code_of(error: pytest.ExceptionInfo) -> str:
    return error.value.response["Error"]["Code"]


def test_a_retired_key_stops_opening_tokens_without_a_restart(backend):
    sts = backend.client("sts")
    old = sts.get_session_token()["Credentials"]
    old_sts = backend.client("sts", creds=old)
    old_sts.get_caller_identity()                         # opened and cached by the running backend
    rotated = rolecall("backend", "rotate-token-key", "--data-dir", backend.data_dir)
    assert rotated.returncode == 0, rotated.stderr
    new = sts.get_session_token()["Credentials"]          # sealed with the new key
    retired = rolecall("backend", "retire-token-key", "--data-dir", backend.data_dir)
    assert retired.returncode == 0, retired.stderr
    assert json.loads(retired.stdout) == {"RetiredTokenKeyId": 1, "TokenKeyIds": [json.loads(rotated.stdout)
                                                                                  ["TokenKeyId"]]}
    backend.clock.set(backend.clock.now() + KEY_CHECK_INTERVAL)
    with pytest.raises(ClientError) as refused:
        old_sts.get_caller_identity()
    assert code_of(refused) == "InvalidClientTokenId" and refused.value.response["ResponseMetadata"][
        "HTTPStatusCode"] == 403
    assert backend.client("sts", creds=new).get_caller_identity()["Arn"].endswith(":user/admin")
    last = rolecall("backend", "retire-token-key", "--data-dir", backend.data_dir)
    assert last.returncode == 1 and "only the current token key is left" in last.stderr


def test_revoke_sessions_reaches_a_running_backend(backend):
    iam = backend.client("iam")
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": "123456789012"}, "Action": "sts:AssumeRole"}]})
    arn = iam.create_role(RoleName="app", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    iam.put_role_policy(RoleName="app", PolicyName="all", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    creds = backend.client("sts").assume_role(RoleArn=arn, RoleSessionName="s1")["Credentials"]
    session_iam = backend.client("iam", creds=creds)
    session_iam.list_users()
    assert rolecall("backend", "revoke-sessions", "--data-dir", backend.data_dir, "--role", "app").returncode == 0
    with pytest.raises(ClientError) as denied:
        session_iam.list_users()
    assert code_of(denied) == "AccessDenied"
    who = backend.client("sts", creds=creds).get_caller_identity()
    assert who["Arn"] == "arn:aws:sts::123456789012:assumed-role/app/s1"

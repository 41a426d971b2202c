"""The AWS SDK for JavaScript v3 (@aws-sdk/client-sts) against the backend over loopback.

``js/sts_client.mjs`` runs a list of STS calls in one node process against an
in-process backend (tests/interop/test_backend_boto3.py's ``ThreadedBackend``)
and reports each output or error; the SDK parses our XML, reads the request id
from the ``x-amzn-RequestId`` header and maps error codes to its exceptions.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.interop.test_backend_boto3 import ACCOUNT, ThreadedBackend

pytestmark = pytest.mark.interop

from tests.interop import JS_DIR, require_node


@pytest.fixture(scope="module")
def node() -> str:
    return require_node("@aws-sdk/client-sts")


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    running = ThreadedBackend(str(tmp_path_factory.mktemp("js-backend") / "data")).start()
    iam = running.client("iam")
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": ACCOUNT}, "Action": "sts:AssumeRole"}]}
    iam.create_role(RoleName="js-app", AssumeRolePolicyDocument=json.dumps(trust))
    yield running
    running.stop()


def run_js(node: str, backend, calls: list[dict], tmp_path: Path) -> list[dict]:
    spec = {"endpoint": backend.url, "region": "us-east-1", "calls": calls,
            "credentials": {"accessKeyId": backend.admin_key[0], "secretAccessKey": backend.admin_key[1]}}
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "AWS_EC2_METADATA_DISABLED": "true"}
    done = subprocess.run([node, str(JS_DIR / "sts_client.mjs")], input=json.dumps(spec), cwd=JS_DIR, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_js_sdk_assume_role_and_get_caller_identity(node, backend, tmp_path):
    role_arn = f"arn:aws:iam::{ACCOUNT}:role/js-app"
    me, assumed, as_role, chained_too_long, denied, too_short = run_js(node, backend, [
        {"op": "GetCallerIdentity"},
        {"op": "AssumeRole", "input": {"RoleArn": role_arn, "RoleSessionName": "js-1", "DurationSeconds": 900}},
        {"op": "GetCallerIdentity", "as": "previous"},
        {"op": "AssumeRole", "input": {"RoleArn": role_arn, "RoleSessionName": "js-2", "DurationSeconds": 7200}},
        {"op": "AssumeRole", "input": {"RoleArn": f"arn:aws:iam::{ACCOUNT}:role/none", "RoleSessionName": "js-3"}},
        {"op": "AssumeRole", "input": {"RoleArn": role_arn, "RoleSessionName": "js-4", "DurationSeconds": 100}},
    ], tmp_path)
    assert me["ok"] and me["output"]["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/admin"
    assert len(me["requestId"]) == 36
    assert assumed["ok"], assumed
    creds = assumed["output"]["Credentials"]
    assert creds["AccessKeyId"].startswith("ASIA") and creds["SessionToken"]
    assert assumed["output"]["AssumedRoleUser"]["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/js-app/js-1"
    assert as_role["ok"] and as_role["output"]["Arn"] == assumed["output"]["AssumedRoleUser"]["Arn"]
    assert not chained_too_long["ok"] and chained_too_long["code"] == "ValidationError"
    assert "role chaining" in chained_too_long["message"] and chained_too_long["status"] == 400
    assert not denied["ok"] and denied["code"] == "AccessDenied" and denied["status"] == 403
    assert len(denied["requestId"]) == 36
    assert not too_short["ok"] and "greater than or equal to 900" in too_short["message"]

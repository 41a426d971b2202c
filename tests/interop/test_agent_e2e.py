"""End to end over loopback: the agent in front of the included backend, and of moto as a foreign STS.

boto3 (in this process) and the AWS CLI (a child with a scrubbed environment)
are given nothing but ``AWS_EC2_METADATA_SERVICE_ENDPOINT`` (the agent) and
``AWS_ENDPOINT_URL_STS`` (the STS the credentials belong to): they find the
role credentials through IMDS, as on EC2, and GetCallerIdentity answers with
the assumed-role ARN.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import trio

from agent.demo import DemoAccount, Keys
from tests.test_daemon import StsBackend, agent_config, start_agent
from wire.clock import SystemClock

pytestmark = pytest.mark.interop

AWS = Path(sys.executable).with_name("aws")
MOTO = Path(sys.executable).with_name("moto_server")
MOTO_ACCOUNT = "123456789012"


def _sdk_env(monkeypatch, imds: str, sts_url: str) -> None:
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", f"http://{imds}")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "false")  # deliberately pointed at the agent
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts_url)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")  # botocore reads this one


def _boto3_identity() -> tuple[dict, str]:
    session = boto3.Session()
    method = session.get_credentials().method
    return session.client("sts").get_caller_identity(), method


async def _cli_identity(tmp_path: Path, imds: str, sts_url: str) -> dict:
    """``aws sts get-caller-identity`` in a child that knows only the two endpoints."""
    if not AWS.exists():
        pytest.skip("the AWS CLI is not installed in the venv")
    home = tmp_path / "cli-home"
    (home / ".aws").mkdir(parents=True, exist_ok=True)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "AWS_CONFIG_FILE": str(home / ".aws" / "config"),
           "AWS_SHARED_CREDENTIALS_FILE": str(home / ".aws" / "credentials"),
           "AWS_EC2_METADATA_SERVICE_ENDPOINT": f"http://{imds}", "AWS_ENDPOINT_URL_STS": sts_url,
           "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"}
    result = await trio.run_process([str(AWS), "sts", "get-caller-identity", "--output", "json"],
                                    env=env, capture_stdout=True, capture_stderr=True, check=False)
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)


async def test_boto3_and_the_cli_through_the_agent_and_the_included_backend(nursery, tmp_path, short_dir,
                                                                            monkeypatch):
    sts = StsBackend(tmp_path / "backend", SystemClock())
    await sts.start(nursery)
    account = await sts.demo()
    agent = await start_agent(nursery, agent_config(short_dir, sts.url, account), SystemClock())
    await agent.ready.wait()
    _sdk_env(monkeypatch, agent.metadata[0], sts.url)
    identity, method = await trio.to_thread.run_sync(_boto3_identity)
    expected = f"arn:aws:sts::{account.account_id}:assumed-role/rolecall-demo/test-agent"
    assert method == "iam-role" and identity["Arn"] == expected
    assert (await _cli_identity(tmp_path, agent.metadata[0], sts.url))["Arn"] == expected
    assert sts.calls["AssumeRole"] == 1  # every client was served from the one fetch


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
async def moto_url():
    if not MOTO.exists():
        pytest.skip("moto_server is not installed in the venv")
    port = _free_port()
    # moto_server runs botocore, which the in-process guard does not cover: keep IMDS off.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | {"AWS_EC2_METADATA_DISABLED": "true"}
    process = await trio.lowlevel.open_process([str(MOTO), "-H", "127.0.0.1", "-p", str(port)], env=env,
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with trio.fail_after(30):
            while True:
                try:
                    await (await trio.open_tcp_stream("127.0.0.1", port)).aclose()
                    break
                except OSError:
                    await trio.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.kill()
        await process.wait()


async def test_boto3_and_the_cli_through_the_agent_with_moto_as_a_foreign_sts(nursery, tmp_path, short_dir,
                                                                             monkeypatch, moto_url):
    role_arn = f"arn:aws:iam::{MOTO_ACCOUNT}:role/moto-app"
    account = DemoAccount(account_id=MOTO_ACCOUNT, admin=Keys("AKIAADMIN", "unused"),
                          agent=Keys("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
                          demo=Keys("AKIADEMO", "unused"), role_arn=role_arn, admin_role_arn=role_arn,
                          mfa_serial="", mfa_seed="")
    agent = await start_agent(nursery, agent_config(short_dir, moto_url, account), SystemClock())
    with trio.fail_after(30):
        await agent.ready.wait()
    _sdk_env(monkeypatch, agent.metadata[0], moto_url)
    identity, method = await trio.to_thread.run_sync(_boto3_identity)
    assert method == "iam-role"
    assert identity["Arn"] == f"arn:aws:sts::{MOTO_ACCOUNT}:assumed-role/moto-app/test-agent"
    assert (await _cli_identity(tmp_path, agent.metadata[0], moto_url))["Arn"] == identity["Arn"]

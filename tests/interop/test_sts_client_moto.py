"""agent.sts_client against moto_server, a foreign STS, over real loopback HTTP.

One ``moto_server`` subprocess per module on 127.0.0.1 (a free port), started
with AWS_* scrubbed and AWS_EC2_METADATA_DISABLED=true. boto3 creates the role
(moto does not check who may assume it, nor MFA codes: sts-iam.md §12); the
StsClient then calls AssumeRole, GetSessionToken, GetCallerIdentity and the
unsigned AssumeRoleWithWebIdentity, the token read from its file each time.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import httpx
import pytest

from agent.config_types import RoleConfig
from agent.errors import StsError, StsUnavailable
from agent.sources import StaticSource, WebIdentitySource, fetch_role_credentials
from agent.sts_client import StsClient
from wire.clock import SystemClock
from wire.query import parse_form
from wire.sigv4 import Credentials

pytestmark = pytest.mark.interop

ACCOUNT = "123456789012"   # moto's default account
KEYS = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
MOTO = Path(sys.executable).with_name("moto_server")
TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"AWS": ACCOUNT}, "Action": "sts:AssumeRole"}]})
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, log: Path, deadline: float = 15.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if process.poll() is not None:
            pytest.fail(f"moto_server exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/moto-api/", timeout=1, trust_env=False).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"moto_server did not answer within {deadline} s: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory):
    if not MOTO.exists():
        pytest.skip("moto_server is not installed in this venv (pip install 'moto[server]')")
    home = tmp_path_factory.mktemp("moto-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k not in PROXY_VARIABLES}
    env.update(AWS_EC2_METADATA_DISABLED="true", HOME=str(home))
    port, log = free_port(), home / "moto.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([str(MOTO), "-H", "127.0.0.1", "-p", str(port)], env=env, cwd=home,
                                   stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(autouse=True)
def no_proxies(monkeypatch):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def role(moto_url) -> tuple[str, str]:
    """A fresh role in moto, created by boto3: (name, arn)."""
    name = f"app-{uuid.uuid4().hex[:8]}"
    iam = boto3.client("iam", endpoint_url=moto_url, region_name="us-east-1",
                       aws_access_key_id=KEYS.access_key_id, aws_secret_access_key=KEYS.secret_access_key)
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=TRUST, MaxSessionDuration=7200)["Role"]["Arn"]
    return name, arn


class RecordingTransport(httpx.AsyncHTTPTransport):
    """Real HTTP; keeps each request's form body to check what was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[dict[str, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(parse_form(request.content))
        return await super().handle_async_request(request)


def client(url: str, **kwargs) -> StsClient:
    return StsClient(url, "us-east-1", clock=SystemClock(), timeout=5, **kwargs)


def near(when: dt.datetime, seconds: int) -> bool:
    return abs((when - dt.datetime.now(dt.timezone.utc)).total_seconds() - seconds) < 60


async def test_assume_role_then_who_am_i(moto_url, role):
    name, arn = role
    async with client(moto_url) as sts:
        creds = await sts.assume_role(KEYS, arn, "web-1", duration_seconds=1800, external_id="ext-123",
                                      tags={"team": "blue"}, source_identity="alice",
                                      policy_arns=["arn:aws:iam::aws:policy/ReadOnlyAccess"])
        assert creds.assumed_role_arn == f"arn:aws:sts::{ACCOUNT}:assumed-role/{name}/web-1"
        assert (creds.role_name, creds.account_id) == (name, ACCOUNT)
        assert creds.access_key_id.startswith("ASIA") and near(creds.expiration, 1800)
        me = await sts.get_caller_identity(creds.credentials)
        assert me["Arn"] == creds.assumed_role_arn and me["Account"] == ACCOUNT
        chained = await sts.assume_role(creds.credentials, arn, "inner")
        assert chained.assumed_role_arn.endswith(f"/{name}/inner")


async def test_get_session_token_and_caller_identity(moto_url):
    async with client(moto_url) as sts:
        session = await sts.get_session_token(KEYS, duration_seconds=900,
                                              serial_number=f"arn:aws:iam::{ACCOUNT}:mfa/alice", token_code="123456")
        assert session.access_key_id and session.session_token and near(session.expiration, 900)
        assert session.assumed_role_arn is None
        me = await sts.get_caller_identity(KEYS)
    assert me["Account"] == ACCOUNT and me["Arn"].startswith(f"arn:aws:sts::{ACCOUNT}:")


async def test_web_identity_token_is_read_from_its_file_each_time(moto_url, role, tmp_path):
    name, arn = role
    token_file = tmp_path / "token"
    token_file.write_text("eyJhbGciOiJub25lIn0.eyJzdWIiOiJmaXJzdCJ9.\n")
    source, transport = WebIdentitySource(str(token_file)), RecordingTransport()
    role_config = RoleConfig(arn=arn, session_name="web-1", duration_seconds=900)
    async with client(moto_url, transport=transport) as sts:
        first = await fetch_role_credentials(sts, source, role_config)
        token_file.write_text("eyJhbGciOiJub25lIn0.eyJzdWIiOiJzZWNvbmQifQ.\n")
        second = await fetch_role_credentials(sts, source, role_config)
    assert first.assumed_role_arn == second.assumed_role_arn == f"arn:aws:sts::{ACCOUNT}:assumed-role/{name}/web-1"
    assert first.access_key_id != second.access_key_id and near(second.expiration, 900)
    assert [b["Action"] for b in transport.bodies] == ["AssumeRoleWithWebIdentity"] * 2
    assert [b["WebIdentityToken"] for b in transport.bodies] == [
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJmaXJzdCJ9.", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJzZWNvbmQifQ."]


async def test_fetch_role_credentials_with_a_signing_source(moto_url, role):
    name, arn = role
    async with client(moto_url) as sts:
        creds = await fetch_role_credentials(sts, StaticSource(KEYS.access_key_id, KEYS.secret_access_key),
                                             RoleConfig(arn=arn, session_name="agent", duration_seconds=3600))
    assert creds.role_name == name and near(creds.expiration, 3600)


async def test_moto_errors_keep_their_code(moto_url, role):
    _, arn = role
    async with client(moto_url) as sts:
        with pytest.raises(StsError) as info:
            await sts.assume_role(KEYS, arn, "s" * 65)
    assert info.value.code == "ValidationError" and info.value.http_status == 400 and not info.value.retryable


async def test_nothing_listening_is_unavailable_after_retries():
    delays: list[float] = []

    async def record(seconds: float) -> None:
        delays.append(seconds)

    async with client(f"http://127.0.0.1:{free_port()}", sleep=record) as sts:
        with pytest.raises(StsUnavailable) as info:
            await sts.get_caller_identity(KEYS)
    assert info.value.attempts == 4 and len(delays) == 3 and info.value.retryable
    assert str(info.value).startswith("GetCallerIdentity: cannot reach 127.0.0.1:")


# ---- profiles resolved by `rolecall credential-process` against moto --------------------------------


def test_credential_process_profiles_against_moto(moto_url, role, tmp_path, aws_sandbox):
    """A web-identity profile and a role profile from static keys, with moto as the STS of AWS_ENDPOINT_URL_STS."""
    name, arn = role
    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJub25lIn0.eyJzdWIiOiJkZXYifQ.sig\n")
    (aws_sandbox / ".aws").mkdir(exist_ok=True)
    (aws_sandbox / ".aws" / "credentials").write_text(
        f"[keys]\naws_access_key_id = {KEYS.access_key_id}\naws_secret_access_key = {KEYS.secret_access_key}\n")
    (aws_sandbox / ".aws" / "config").write_text(
        f"[profile web]\nrole_arn = {arn}\nweb_identity_token_file = {token}\nrole_session_name = web\n\n"
        f"[profile chained]\nrole_arn = {arn}\nsource_profile = keys\nrole_session_name = chained\n"
        "duration_seconds = 7200\n")
    env = dict(os.environ, AWS_ENDPOINT_URL_STS=moto_url, AWS_EC2_METADATA_DISABLED="true")
    for profile in ("web", "chained"):
        done = subprocess.run([str(Path(sys.executable).with_name("rolecall")), "credential-process", "--profile",
                               profile], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        doc = json.loads(done.stdout)
        assert doc["Version"] == 1 and doc["Expiration"].endswith("Z")
        sts = boto3.client("sts", endpoint_url=moto_url, region_name="us-east-1", aws_access_key_id=doc["AccessKeyId"],
                           aws_secret_access_key=doc["SecretAccessKey"], aws_session_token=doc["SessionToken"])
        assert sts.get_caller_identity()["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{name}/{profile}"

"""The AWS SDK for JavaScript v3 reads the same credentials from rolecall.

``js/imds_client.mjs`` runs one SDK provider per node process:
``fromInstanceMetadata`` (IMDS), ``fromHttp`` (container endpoint) and the
default Node chain. A child process is outside the in-process net guard, so
each gets an explicit loopback endpoint in its environment, and
``AWS_EC2_METADATA_DISABLED`` is ``false`` only for the children meant to use IMDS.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import trio

from metadata_server import ContainerHandler, ImdsHandler, MetadataConfig, write_token_file
from tests.imds_support import Recorder, SimpleHolder, running, sample_credentials
from wire.clock import SystemClock
from wire.http import HttpResponse

pytestmark = pytest.mark.interop

from tests.interop import JS_DIR, require_node
MODULES = ["@smithy/credential-provider-imds", "@aws-sdk/credential-provider-http", "@aws-sdk/credential-provider-node"]


@pytest.fixture
def node():
    return require_node(*MODULES)


@pytest.fixture
def creds():
    return sample_credentials(SystemClock().now())


async def run_js(node: str, provider: str, tmp_path: Path, **env) -> dict:
    base = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": str(tmp_path / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "NO_PROXY": "*",
    }
    result = await trio.run_process(
        [node, str(JS_DIR / "imds_client.mjs"), provider], cwd=JS_DIR, env={**base, **env},
        capture_stdout=True, capture_stderr=True, check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)


def imds_env(address: str, **extra) -> dict:
    return {"AWS_EC2_METADATA_SERVICE_ENDPOINT": f"http://{address}", "AWS_EC2_METADATA_DISABLED": "false", **extra}


def assert_same(got: dict, creds) -> None:
    assert "error" not in got, got["error"] if "error" in got else ""
    assert (got["accessKeyId"], got["secretAccessKey"], got["sessionToken"]) == (
        creds.access_key_id, creds.secret_access_key, creds.token)
    assert got["expiration"] == creds.expiration.strftime("%Y-%m-%dT%H:%M:%S.000Z")


@pytest.mark.parametrize("mode", ["required", "optional"])
async def test_from_instance_metadata(node, tmp_path, creds, mode):
    handler = Recorder(ImdsHandler(MetadataConfig(tokens=mode), SimpleHolder(creds), SystemClock()))
    async with running(handler) as (address,):
        got = await run_js(node, "imds", tmp_path, **imds_env(address))
    assert_same(got, creds)
    assert handler.requests[0].method == "PUT"
    assert all(r.header("x-aws-ec2-metadata-token") for r in handler.requests[1:])


async def test_default_node_chain_uses_imds(node, tmp_path, creds):
    async with running(ImdsHandler(MetadataConfig(), SimpleHolder(creds), SystemClock())) as (address,):
        assert_same(await run_js(node, "chain", tmp_path, **imds_env(address)), creds)


async def test_v1_disabled_refuses_when_the_token_is_refused(node, tmp_path, creds):
    config = MetadataConfig(allowed_hosts=("169.254.169.254",))  # the loopback Host gets 403 on every request
    async with running(ImdsHandler(config, SimpleHolder(creds), SystemClock())) as (address,):
        got = await run_js(node, "imds", tmp_path, **imds_env(address, AWS_EC2_METADATA_V1_DISABLED="true"))
    assert got["error"].startswith("InstanceMetadataV1FallbackError:"), got


async def test_imdsv1_fallback_in_optional_mode(node, tmp_path, creds):
    imds = ImdsHandler(MetadataConfig(tokens="optional"), SimpleHolder(creds), SystemClock())

    def no_tokens(request):
        if request.path == "/latest/api/token":
            return HttpResponse(405, (("Allow", "OPTIONS, PUT"),), b"")
        return imds(request)

    async with running(no_tokens) as (address,):
        assert_same(await run_js(node, "imds", tmp_path, **imds_env(address)), creds)


async def test_no_credentials_is_an_error_not_empty_keys(node, tmp_path):
    async with running(ImdsHandler(MetadataConfig(), SimpleHolder(None), SystemClock())) as (address,):
        got = await run_js(node, "imds", tmp_path, **imds_env(address))
    assert "error" in got


async def test_from_http_with_token_file(node, tmp_path, creds):
    token_file = tmp_path / "token"
    token = write_token_file(token_file)
    handler = Recorder(ContainerHandler(SimpleHolder(creds), token, SystemClock()))
    async with running(handler) as (address,):
        env = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": f"http://{address}/v1/credentials",
               "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(token_file)}
        assert_same(await run_js(node, "http", tmp_path, **env), creds)
        assert_same(await run_js(node, "chain", tmp_path, **env), creds)
    assert handler.requests[0].header("authorization") == token


async def test_from_http_with_a_wrong_token_fails(node, tmp_path, creds):
    token_file = tmp_path / "token"
    write_token_file(token_file)
    handler = ContainerHandler(SimpleHolder(creds), "q" * 43, SystemClock())
    async with running(handler) as (address,):
        env = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": f"http://{address}/v1/credentials",
               "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(token_file)}
        got = await run_js(node, "http", tmp_path, **env)
    assert "403" in got["error"] and creds.secret_access_key not in got["error"]

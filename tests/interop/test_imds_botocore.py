"""botocore, unchanged, reads credentials from rolecall over loopback sockets.

``InstanceMetadataProvider`` (and the whole default chain) is pointed at the
server with ``AWS_EC2_METADATA_SERVICE_ENDPOINT``; ``ContainerProvider`` with
``AWS_CONTAINER_CREDENTIALS_FULL_URI`` and a token file. botocore is blocking,
so it runs in a worker thread while trio serves; the net guard is process-wide.
"""

from __future__ import annotations

import pytest
import trio
from botocore.credentials import ContainerProvider, InstanceMetadataProvider, create_credential_resolver
from botocore.exceptions import MetadataRetrievalError
from botocore.session import Session

from metadata_server import ContainerHandler, ImdsHandler, MetadataConfig, write_token_file
from tests.imds_support import Recorder, SimpleHolder, running, sample_credentials
from wire.clock import SystemClock
from wire.http import HttpResponse
from tests.servers import requires_ipv6

pytestmark = pytest.mark.interop


@pytest.fixture
def creds():
    return sample_credentials(SystemClock().now())


def point_botocore_at(monkeypatch, address, **env):
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "false")
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", f"http://{address}/")
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def imds_provider() -> InstanceMetadataProvider:
    provider = create_credential_resolver(Session()).get_provider("iam-role")
    assert isinstance(provider, InstanceMetadataProvider)
    return provider


def frozen(credentials):
    return None if credentials is None else credentials.get_frozen_credentials()


def assert_same(got, creds):
    assert (got.access_key, got.secret_key, got.token) == (creds.access_key_id, creds.secret_access_key, creds.token)


async def in_thread(fn, *args):
    return await trio.to_thread.run_sync(fn, *args)


@pytest.mark.parametrize("mode", ["required", "optional"])
async def test_instance_metadata_provider_gets_the_credentials(monkeypatch, creds, mode):
    handler = Recorder(ImdsHandler(MetadataConfig(tokens=mode), SimpleHolder(creds), SystemClock()))
    async with running(handler) as (address,):
        point_botocore_at(monkeypatch, address)
        provider = imds_provider()
        loaded = await in_thread(provider.load)
        assert_same(await in_thread(frozen, loaded), creds)
        # and through the whole default chain, as an application would
        chained = await in_thread(lambda: frozen(Session().get_credentials()))
        assert_same(chained, creds)
    assert loaded.method == "iam-role"
    assert [(r.method, r.path) for r in handler.requests[:3]] == [
        ("PUT", "/latest/api/token"),
        ("GET", "/latest/meta-data/iam/security-credentials/"),
        ("GET", f"/latest/meta-data/iam/security-credentials/{creds.role_name}"),
    ]
    assert all(r.header("x-aws-ec2-metadata-token") for r in handler.requests if r.method == "GET")


async def test_expiry_is_read_exactly(monkeypatch, creds):
    async with running(ImdsHandler(MetadataConfig(), SimpleHolder(creds), SystemClock())) as (address,):
        point_botocore_at(monkeypatch, address)
        loaded = await in_thread(imds_provider().load)
    assert loaded._expiry_time == creds.expiration  # no static-stability rewrite with 6 h left


async def test_v1_disabled_still_works_with_tokens(monkeypatch, creds):
    async with running(ImdsHandler(MetadataConfig(), SimpleHolder(creds), SystemClock())) as (address,):
        point_botocore_at(monkeypatch, address, AWS_EC2_METADATA_V1_DISABLED="true")
        assert_same(await in_thread(lambda: frozen(imds_provider().load())), creds)


async def test_v1_disabled_refuses_when_the_token_is_refused(monkeypatch, creds):
    """Host not allowed -> 403 on the PUT -> botocore must not fall back to IMDSv1: it raises."""
    config = MetadataConfig(allowed_hosts=("169.254.169.254",))
    handler = Recorder(ImdsHandler(config, SimpleHolder(creds), SystemClock()))
    async with running(handler) as (address,):
        point_botocore_at(monkeypatch, address, AWS_EC2_METADATA_V1_DISABLED="true")
        with pytest.raises(MetadataRetrievalError, match="IMDSv1 has been disabled"):
            await in_thread(imds_provider().load)
        with pytest.raises(MetadataRetrievalError):
            await in_thread(Session().get_credentials)
    assert {r.method for r in handler.requests} == {"PUT"}


async def test_without_v1_disabled_a_refused_token_yields_no_credentials(monkeypatch, creds):
    config = MetadataConfig(allowed_hosts=("169.254.169.254",))
    handler = Recorder(ImdsHandler(config, SimpleHolder(creds), SystemClock()))
    async with running(handler) as (address,):
        point_botocore_at(monkeypatch, address)
        assert await in_thread(imds_provider().load) is None  # v1 GETs are refused too: nothing leaks


@pytest.mark.parametrize(("mode", "served"), [("optional", True), ("required", False)])
async def test_imdsv1_fallback_follows_the_mode(monkeypatch, creds, mode, served):
    """A token PUT that never succeeds (404 as from a v1-only proxy): v1 works only in optional mode."""
    imds = ImdsHandler(MetadataConfig(tokens=mode), SimpleHolder(creds), SystemClock())

    def no_tokens(request):
        if request.path == "/latest/api/token":
            return HttpResponse(404, (), b"")
        return imds(request)

    handler = Recorder(no_tokens)
    async with running(handler) as (address,):
        point_botocore_at(monkeypatch, address)
        loaded = await in_thread(lambda: frozen(imds_provider().load()))
    if served:
        assert_same(loaded, creds)
    else:
        assert loaded is None
    assert not any(r.header("x-aws-ec2-metadata-token") for r in handler.requests)


async def test_no_credentials_held_means_none_not_empty_keys(monkeypatch):
    async with running(ImdsHandler(MetadataConfig(), SimpleHolder(None), SystemClock())) as (address,):
        point_botocore_at(monkeypatch, address)
        assert await in_thread(imds_provider().load) is None
        assert await in_thread(Session().get_credentials) is None


@requires_ipv6
async def test_ipv6_listener(monkeypatch, creds):
    config = MetadataConfig(listen=("[::1]:0",))
    async with running(ImdsHandler(config, SimpleHolder(creds), SystemClock()), ["[::1]:0"]) as (address,):
        point_botocore_at(monkeypatch, address)
        assert_same(await in_thread(lambda: frozen(imds_provider().load())), creds)


# -- container provider ------------------------------------------------------------------


async def test_container_provider_with_full_uri_and_token_file(monkeypatch, tmp_path, creds):
    token_file = tmp_path / "token"
    token = write_token_file(token_file)
    holder = SimpleHolder(creds)
    handler = ContainerHandler(holder, token, SystemClock())
    async with running(handler) as (address,):
        monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", f"http://{address}/v1/credentials")
        monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", str(token_file))
        loaded = await in_thread(ContainerProvider().load)
        assert_same(await in_thread(frozen, loaded), creds)
        assert loaded.account_id == creds.account_id
        # the default chain picks the container provider before IMDS
        assert_same(await in_thread(lambda: frozen(Session().get_credentials())), creds)
        # rotation: the agent serves new credentials; botocore's refresh fetches them
        fresh = sample_credentials(SystemClock().now())
        holder.set(fresh)
        refreshed = await in_thread(lambda: loaded._refresh_using())
        assert refreshed["secret_key"] == fresh.secret_access_key


async def test_container_provider_with_a_stale_token_fails_loudly(monkeypatch, tmp_path, creds):
    token_file = tmp_path / "token"
    write_token_file(token_file)
    handler = ContainerHandler(SimpleHolder(creds), "z" * 43, SystemClock())
    monkeypatch.setattr("botocore.utils.ContainerMetadataFetcher.SLEEP_TIME", 0)
    async with running(handler) as (address,):
        monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", f"http://{address}/v1/credentials")
        monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", str(token_file))
        with pytest.raises(Exception) as info:
            await in_thread(ContainerProvider().load)
    assert "403" in str(info.value) and creds.secret_access_key not in str(info.value)

"""botocore's ``TestInstanceMetadataFetcher`` and ``TestIMDSRegionProvider`` cases, replayed over HTTP.

botocore's own tests mock ``URLLib3Session.send`` (reference/sdk-clients.md §10).
Here the same cases run against a real rolecall server on a loopback port:
the good answers come from ``ImdsHandler`` itself, and each fault the original
test injects (a 429, an empty body, invalid JSON, a slow answer that times out,
a token path that answers 403/404/405/400) is injected by a thin wrapper in
front of it for exactly one request.
"""

from __future__ import annotations

import datetime as dt
import logging

import outcome
import pytest
import trio
from botocore.exceptions import InvalidIMDSEndpointError, MetadataRetrievalError
from botocore.utils import InstanceMetadataFetcher, InstanceMetadataRegionFetcher

from metadata_server import ImdsHandler, MetadataConfig
from tests.imds_support import SimpleHolder, running, sample_credentials
from wire.clock import SystemClock
from wire.http import HttpResponse
from tests.servers import requires_ipv6

DT_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
TIMEOUT = 0.5  # botocore's per-request timeout in these tests; a "slow" answer waits longer


def kind_of(path: str) -> str:
    if path == "/latest/api/token":
        return "token"
    if path.endswith("/security-credentials/"):
        return "role"
    if "/security-credentials/" in path:
        return "creds"
    return "other"


class Scripted:
    """The real handler, with one-shot faults queued per request kind."""

    def __init__(self, imds: ImdsHandler) -> None:
        self.imds = imds
        self.faults: list[tuple[str, object]] = []
        self.requests = []

    def fail(self, kind: str, fault: object) -> Scripted:
        self.faults.append((kind, fault))
        return self

    async def __call__(self, request):
        self.requests.append(request)
        kind = kind_of(request.path)
        for i, (wanted, fault) in enumerate(self.faults):
            if wanted == kind:
                del self.faults[i]
                if isinstance(fault, float):
                    await trio.sleep(fault)  # answer after the client gave up
                    break
                return fault
        return self.imds(request)

    def kinds(self):
        return [kind_of(r.path) for r in self.requests]


def answer(status: int, body: bytes = b"") -> HttpResponse:
    return HttpResponse(status, (("Content-Type", "text/plain"),), body)


@pytest.fixture
def creds():
    return sample_credentials(SystemClock().now())


def scripted(creds, **config) -> Scripted:
    return Scripted(ImdsHandler(MetadataConfig(**config), SimpleHolder(creds), SystemClock()))


def expected(creds) -> dict:
    return {
        "role_name": creds.role_name,
        "access_key": creds.access_key_id,
        "secret_key": creds.secret_access_key,
        "token": creds.token,
        "expiry_time": creds.expiration.strftime(DT_FORMAT),
    }


async def fetch(handler, *, num_attempts=1, env=None, config=None, user_agent=None, base_url=True):
    async with running(handler) as (address,):
        kwargs = dict(
            timeout=TIMEOUT,
            num_attempts=num_attempts,
            env={"AWS_EC2_METADATA_DISABLED": "false"} if env is None else env,
            config=config,
            user_agent=user_agent,
        )
        if base_url:
            kwargs["base_url"] = f"http://{address}/"
        else:
            kwargs["config"] = {**(config or {}), "ec2_metadata_service_endpoint": f"http://{address}/"}
        fetcher = InstanceMetadataFetcher(**kwargs)
        result = await trio.to_thread.run_sync(outcome.capture, fetcher.retrieve_iam_role_credentials)
    return result.unwrap()  # outside the server's nursery, so errors are not wrapped in a group


# -- disabling and endpoints ---------------------------------------------------------------


@pytest.mark.parametrize("value", ["true", "tRuE"])
async def test_disabled_by_environment(creds, value):
    handler = scripted(creds)
    assert await fetch(handler, env={"AWS_EC2_METADATA_DISABLED": value}) == {}
    assert handler.requests == []


async def test_disabling_env_var_not_true(creds):
    assert await fetch(scripted(creds), env={"AWS_EC2_METADATA_DISABLED": "false"}) == expected(creds)


async def test_custom_endpoint_wins_over_ipv6_mode(creds):
    handler = scripted(creds)
    result = await fetch(handler, base_url=False, config={"ec2_metadata_service_endpoint_mode": "ipv6"})
    assert result == expected(creds)


@requires_ipv6
async def test_ipv6_endpoint_in_brackets(creds):
    handler = ImdsHandler(MetadataConfig(listen=("[::1]:0",)), SimpleHolder(creds), SystemClock())
    async with running(handler, ["[::1]:0"]) as (address,):
        fetcher = InstanceMetadataFetcher(
            timeout=TIMEOUT, env={}, config={"ec2_metadata_service_endpoint": f"http://{address}/"}
        )
        assert fetcher.get_base_url() == f"http://{address}/"
        assert await trio.to_thread.run_sync(fetcher.retrieve_iam_role_credentials) == expected(creds)


def test_invalid_endpoint_is_refused_before_any_request():
    with pytest.raises(InvalidIMDSEndpointError):
        InstanceMetadataFetcher(config={"ec2_metadata_service_endpoint": "not.a:valid:dom@in"})


async def test_includes_user_agent_header(creds):
    handler = scripted(creds)
    await fetch(handler, user_agent="my-user-agent")
    assert len(handler.requests) == 3
    assert all(r.header("user-agent") == "my-user-agent" for r in handler.requests)


# -- retries -------------------------------------------------------------------------------


FAULTS = {
    "non_200": answer(429, b'{"message": "Slow down"}'),
    "empty": answer(200, b""),
    "timeout": TIMEOUT * 3,
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
async def test_role_name_request_is_retried(creds, fault):
    handler = scripted(creds).fail("role", FAULTS[fault])
    assert await fetch(handler, num_attempts=2) == expected(creds)
    assert handler.kinds() == ["token", "role", "role", "creds"]


@pytest.mark.parametrize("fault", sorted(FAULTS) + ["invalid_json"])
async def test_credentials_request_is_retried(creds, fault):
    handler = scripted(creds).fail("creds", FAULTS.get(fault) or answer(200, b'{"AccessKey":'))
    assert await fetch(handler, num_attempts=2) == expected(creds)
    assert handler.kinds() == ["token", "role", "creds", "creds"]


@pytest.mark.parametrize("kind", ["role", "creds"])
async def test_exhausted_retries_yield_nothing(creds, kind):
    assert await fetch(scripted(creds).fail(kind, answer(400)), num_attempts=1) == {}


async def test_missing_fields_in_credentials_response(creds):
    body = b'{"Code":"AssumeRoleUnauthorizedAccess","Message":"error"}'
    assert await fetch(scripted(creds).fail("creds", answer(200, body))) == {}


async def test_rolecall_without_credentials_yields_nothing(creds):
    """rolecall's own 503 (nothing valid held): retried, then no credentials — never empty keys."""
    handler = Scripted(ImdsHandler(MetadataConfig(), SimpleHolder(None), SystemClock()))
    assert await fetch(handler, num_attempts=2) == {}
    assert handler.kinds() == ["token", "role", "role"]


# -- tokens --------------------------------------------------------------------------------


async def test_token_is_included(creds):
    handler = scripted(creds)
    assert await fetch(handler) == expected(creds)
    token = handler.requests[0]
    assert (token.method, token.header("x-aws-ec2-metadata-token-ttl-seconds")) == ("PUT", "21600")
    gets = handler.requests[1:]
    assert len(gets) == 2 and all(len(r.header("x-aws-ec2-metadata-token")) == 56 for r in gets)


@pytest.mark.parametrize("status", [404, 403, 405])
@pytest.mark.parametrize(("mode", "served"), [("optional", True), ("required", False)])
async def test_token_not_supported_falls_back_to_v1(creds, status, mode, served):
    handler = scripted(creds, tokens=mode).fail("token", answer(status))
    assert await fetch(handler) == (expected(creds) if served else {})
    assert not any(r.header("x-aws-ec2-metadata-token") for r in handler.requests[1:])


async def test_token_timeout_falls_back_to_v1(creds):
    handler = scripted(creds, tokens="optional").fail("token", TIMEOUT * 3)
    assert await fetch(handler) == expected(creds)
    assert handler.kinds() == ["token", "role", "creds"]


async def test_token_bad_request_yields_no_credentials(creds):
    handler = scripted(creds).fail("token", answer(400))
    assert await fetch(handler) == {}
    assert handler.kinds() == ["token"]


async def test_v1_disabled_raises_when_no_token(creds):
    handler = scripted(creds, tokens="optional").fail("token", answer(403))
    with pytest.raises(MetadataRetrievalError):
        await fetch(handler, config={"ec2_metadata_v1_disabled": True})
    assert handler.kinds() == ["token"]


# -- static stability: what botocore does with the expiry rolecall serves ---------------------


def creds_left(minutes: float):
    now = SystemClock().now()
    return sample_credentials(now - dt.timedelta(hours=1), lifetime=dt.timedelta(hours=1, minutes=minutes))


@pytest.mark.parametrize(("window", "minutes"), [(None, 20), (900, 25)])
async def test_expiry_extension_14_minutes_before_expiry(monkeypatch, caplog, window, minutes):
    """As botocore's test: jitter pinned to 600 s, so the new expiry is now + window + 10 min."""
    monkeypatch.setattr("botocore.utils.random.randint", lambda low, high: 600)
    served = creds_left(14)
    config = {"ec2_credential_refresh_window": window} if window else None
    with caplog.at_level(logging.INFO, logger="botocore.utils"):
        result = await fetch(scripted(served), config=config)
    extended = dt.datetime.strptime(result["expiry_time"], DT_FORMAT).replace(tzinfo=dt.timezone.utc)
    assert abs((extended - SystemClock().now()).total_seconds() - minutes * 60) <= 2
    assert "Attempting credential expiration extension" in caplog.text


async def test_no_extension_with_hours_left(creds, caplog):
    with caplog.at_level(logging.INFO, logger="botocore.utils"):
        result = await fetch(scripted(creds))
    assert result["expiry_time"] == creds.expiration.strftime(DT_FORMAT)
    assert "extension" not in caplog.text


async def test_expired_credentials_are_never_served_so_never_extended():
    """botocore would extend already-expired credentials; rolecall answers 503 instead."""
    assert await fetch(scripted(creds_left(-14))) == {}


# -- region (TestIMDSRegionProvider) -------------------------------------------------------------


async def test_region_from_availability_zone(creds):
    handler = scripted(creds, region="eu-west-3", availability_zone="eu-west-3c")
    async with running(handler) as (address,):
        fetcher = InstanceMetadataRegionFetcher(timeout=TIMEOUT, base_url=f"http://{address}/", env={})
        assert await trio.to_thread.run_sync(fetcher.retrieve_region) == "eu-west-3"
    assert handler.requests[-1].path == "/latest/meta-data/placement/availability-zone/"

"""The container-credentials endpoint: pure handler, token file, and botocore's fetcher over loopback.

The HTTP-level half replays botocore's ``TestContainerMetadataFetcher`` cases
(allowed hosts, retries, non-200, extra headers) against a real server.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import stat

import pytest
import trio
from botocore.exceptions import MetadataRetrievalError
from botocore.utils import ContainerMetadataFetcher

from metadata_server import ContainerConfig, ContainerHandler, new_container_token, write_token_file
from tests.imds_support import Recorder, SimpleHolder, running, sample_credentials
from wire.clock import SystemClock
from tests.clocks import FixedClock
from wire.http import HttpRequest
from tests.servers import requires_ipv6

EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
PATH = "/v1/credentials"


@pytest.fixture
def creds():
    return sample_credentials(EPOCH)


@pytest.fixture
def token():
    return new_container_token()


@pytest.fixture
def clock():
    return FixedClock(EPOCH)


def call(handler, token, method="GET", path=PATH, *extra):
    headers = (("host", "127.0.0.1:5555"),) + ((("authorization", token),) if token is not None else ()) + extra
    return handler(HttpRequest(method, path, headers, b"", ("127.0.0.1", 5), ("127.0.0.1", 5555)))


def test_serves_the_credentials(creds, token, clock):
    response = call(ContainerHandler(SimpleHolder(creds), token, clock), token)
    assert response.status == 200
    assert ("Content-Type", "application/json") in response.headers
    assert json.loads(response.body) == {
        "AccessKeyId": creds.access_key_id,
        "SecretAccessKey": creds.secret_access_key,
        "Token": creds.token,
        "Expiration": "2026-01-01T06:00:00Z",
        "AccountId": "123456789012",
    }


def test_account_id_is_left_out_when_unknown(token, clock):
    creds = sample_credentials(EPOCH, account_id=None)
    body = json.loads(call(ContainerHandler(SimpleHolder(creds), token, clock), token).body)
    assert "AccountId" not in body


@pytest.mark.parametrize(
    "presented",
    [None, "", "Bearer {t}", "{t} ", "{t}x", "{t}"[:-1], "x" * 43, "é" * 43],
)
def test_wrong_or_missing_token_is_403_json(creds, token, clock, presented):
    handler = ContainerHandler(SimpleHolder(creds), token, clock)
    if presented is not None:
        presented = presented.replace("{t}", token)
    for method, path in [("GET", PATH), ("GET", "/other"), ("POST", PATH)]:
        response = call(handler, presented, method, path)
        assert response.status == 403
        assert "Message" in json.loads(response.body)
        assert creds.secret_access_key.encode() not in response.body


def test_two_authorization_headers_are_403(creds, token, clock):
    handler = ContainerHandler(SimpleHolder(creds), token, clock)
    assert call(handler, token, "GET", PATH, ("authorization", token)).status == 403


def test_method_and_path(creds, token, clock):
    handler = ContainerHandler(SimpleHolder(creds), token, clock)
    assert call(handler, token, "POST").status == 405
    assert call(handler, token, "GET", "/v1/credentials/").status == 404
    assert call(handler, token, "HEAD").status == 200
    assert call(handler, token, "GET", PATH + "?x=1").status == 200


def test_no_or_expired_credentials_are_503(creds, token, clock):
    holder = SimpleHolder(None)
    handler = ContainerHandler(holder, token, clock)
    assert call(handler, token).status == 503
    holder.set(creds)
    clock.advance(6 * 3600)
    response = call(handler, token)
    assert response.status == 503 and creds.token.encode() not in response.body
    assert set(json.loads(response.body)) == {"Code", "Message"}


def test_only_the_token_is_accepted_and_never_shown(creds, token, clock):
    handler = ContainerHandler(SimpleHolder(creds), token, clock)
    assert call(handler, new_container_token()).status == 403
    assert call(handler, token).status == 200
    assert token not in repr(handler)


def test_tokens_are_256_bit_random():
    tokens = {new_container_token() for _ in range(100)}
    assert len(tokens) == 100
    assert all(len(t) == 43 for t in tokens)  # 32 bytes, base64url


def test_token_file_is_0600_without_newline(tmp_path):
    path = tmp_path / "token"
    token = write_token_file(path)
    assert path.read_bytes() == token.encode()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = write_token_file(path, "t" * 40)
    assert again == "t" * 40 and path.read_text() == "t" * 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["token"]  # no temp file left behind


def test_token_file_refuses_bad_tokens(tmp_path):
    for bad in ["a\n", "a b", "", "tab\t"]:
        with pytest.raises(ValueError):
            write_token_file(tmp_path / "t", bad)
    assert not (tmp_path / "t").exists()


def test_short_handler_tokens_are_refused(creds, clock):
    with pytest.raises(ValueError):
        ContainerHandler(SimpleHolder(creds), "short", clock)


# -- botocore's ContainerMetadataFetcher over a real loopback socket --------------------


def fetcher():
    return ContainerMetadataFetcher(sleep=lambda seconds: None)


@pytest.mark.parametrize("listen", ["127.0.0.1:0", pytest.param("[::1]:0", marks=requires_ipv6)])
async def test_botocore_fetcher_gets_the_credentials(listen, token):
    creds = sample_credentials(SystemClock().now())
    handler = Recorder(ContainerHandler(SimpleHolder(creds), token, SystemClock()))
    async with running(handler, [listen]) as (address,):
        url = f"http://{address}{PATH}"
        result = await trio.to_thread.run_sync(fetcher().retrieve_full_uri, url, {"Authorization": token})
    assert result["SecretAccessKey"] == creds.secret_access_key
    assert result["AccountId"] == "123456789012"
    sent = handler.requests[0]
    assert sent.header("authorization") == token and sent.header("accept") == "application/json"


async def test_botocore_fetcher_via_localhost(token):
    creds = sample_credentials(SystemClock().now())
    async with running(ContainerHandler(SimpleHolder(creds), token, SystemClock())) as (address,):
        url = f"http://localhost:{address.rsplit(':', 1)[1]}{PATH}"
        result = await trio.to_thread.run_sync(fetcher().retrieve_full_uri, url, {"Authorization": token})
    assert result["Token"] == creds.token


@pytest.mark.parametrize("url", ["http://10.0.0.1/v1/credentials", "http://169.254.169.254/v1/credentials"])
def test_botocore_refuses_other_http_hosts_without_connecting(url):
    with pytest.raises(ValueError, match="Unsupported host"):
        fetcher().retrieve_full_uri(url, {"Authorization": "x"})


async def test_botocore_gets_a_clear_error_on_a_wrong_token(token):
    creds = sample_credentials(SystemClock().now())
    handler = Recorder(ContainerHandler(SimpleHolder(creds), token, SystemClock()))
    async with running(handler) as (address,):
        with pytest.raises(MetadataRetrievalError) as info:
            await trio.to_thread.run_sync(
                fetcher().retrieve_full_uri, f"http://{address}{PATH}", {"Authorization": "wrong"}
            )
    assert "403" in str(info.value) and creds.secret_access_key not in str(info.value)
    assert len(handler.requests) == ContainerMetadataFetcher.RETRY_ATTEMPTS  # retried, then raised


async def test_botocore_retries_until_credentials_arrive(token):
    """503 while nothing is held is retried; credentials set meanwhile are picked up."""
    holder = SimpleHolder(None)
    creds = sample_credentials(SystemClock().now())
    inner = ContainerHandler(holder, token, SystemClock())

    def handler(request):
        response = inner(request)
        holder.set(creds)  # the agent got its first credentials after the first request
        return response

    recorder = Recorder(handler)
    async with running(recorder) as (address,):
        result = await trio.to_thread.run_sync(
            fetcher().retrieve_full_uri, f"http://{address}{PATH}", {"Authorization": token}
        )
    assert result["AccessKeyId"] == creds.access_key_id
    assert len(recorder.requests) == 2


def test_container_config_path_in_uri():
    from metadata_server import container_uri

    assert container_uri("127.0.0.1:4321", ContainerConfig()) == "http://127.0.0.1:4321/v1/credentials"

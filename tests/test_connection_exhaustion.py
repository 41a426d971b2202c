"""Connection slots cannot be exhausted by one local client holding idle sockets.

A child process opens 10,000 connections to the server and holds them, sending
nothing. While they are held, a fresh SDK client must get its answer within the
SDKs' own 1 s: botocore's IMDS fetcher against the metadata server (cap 16,384
connections), and boto3's STS call against the backend (cap 1,024, so at the cap
each new connection evicts the one idle longest instead of queueing behind it).
Both servers run in this process on loopback, with the limits the daemon and
``rolecall backend serve`` use.
"""

from __future__ import annotations

import datetime as dt
import resource
import subprocess
import sys
import time

import pytest
import trio

from metadata_server import MetadataConfig, RoleCredentials, serve_metadata
from metadata_server.server import METADATA_LIMITS
from tests.imds_support import SimpleHolder
from tests.test_daemon import StsBackend
from wire.clock import SystemClock
from wire.listeners import format_address, open_tcp_listeners

IDLE = 10_000
HOLDER = r"""
import resource, socket, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
held = []
for _ in range(count):
    s = socket.socket()
    s.settimeout(10)
    s.connect((host, port))
    held.append(s)
print("held", len(held), flush=True)
sys.stdin.read()
"""


@pytest.fixture(autouse=True)
def enough_files():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < IDLE + 2000:
        pytest.skip(f"the open-file hard limit ({hard}) is below the {IDLE + 2000} these tests need")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def _hold(address: str) -> trio.Process:
    host, _, port = address.rpartition(":")
    process = await trio.lowlevel.open_process([sys.executable, "-c", HOLDER, host, port, str(IDLE)],
                                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    with trio.fail_after(120):
        line = b""
        while not line.endswith(b"\n"):
            chunk = await process.stdout.receive_some(64)
            assert chunk, "the holder died"
            line += chunk
    assert line == f"held {IDLE}\n".encode()
    # Up to the kernel's accept queue (somaxconn) of them may still wait to be accepted: let the server
    # take them in (at its cap each one evicts an idle one), so the fresh client meets 10,000 held sockets.
    await trio.sleep(2)
    return process


async def _release(process: trio.Process) -> None:
    await process.stdin.aclose()
    with trio.fail_after(30):
        await process.wait()


async def test_imds_answers_a_fresh_botocore_within_a_second(nursery, monkeypatch):
    from botocore.utils import InstanceMetadataFetcher

    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "false")  # deliberately pointed at our loopback server

    now = SystemClock().now()
    creds = RoleCredentials("app", "ASIAEXHAUSTION000001", "s" * 40, "t" * 600, now + dt.timedelta(hours=1), now)
    listeners = await open_tcp_listeners(["127.0.0.1:0"])
    address = format_address(listeners[0].socket.getsockname())  # the Host the handler must allow
    addresses = await nursery.start(lambda task_status: serve_metadata(
        MetadataConfig(listen=(address,)), SimpleHolder(creds), SystemClock(), listeners=listeners,
        limits=METADATA_LIMITS, task_status=task_status))
    holder = await _hold(addresses[0])
    try:
        def fetch():
            fetcher = InstanceMetadataFetcher(timeout=1, num_attempts=1, base_url=f"http://{addresses[0]}/")
            started = time.monotonic()
            got = fetcher.retrieve_iam_role_credentials()
            return got, time.monotonic() - started

        got, took = await trio.to_thread.run_sync(fetch)
    finally:
        await _release(holder)
    assert got.get("access_key") == "ASIAEXHAUSTION000001", got
    assert took < 1.0


async def test_the_backend_answers_a_fresh_boto3_within_a_second(nursery, tmp_path):
    import boto3
    from botocore.config import Config

    backend = StsBackend(tmp_path / "backend", SystemClock())
    await backend.start(nursery)
    holder = await _hold(backend.url.removeprefix("http://"))
    try:
        def call():
            sts = boto3.client("sts", endpoint_url=backend.url, region_name="us-east-1",
                               aws_access_key_id=backend.admin.access_key_id,
                               aws_secret_access_key=backend.admin.secret_access_key,
                               config=Config(connect_timeout=1, read_timeout=1, retries={"max_attempts": 1}))
            started = time.monotonic()
            arn = sts.get_caller_identity()["Arn"]
            return arn, time.monotonic() - started

        arn, took = await trio.to_thread.run_sync(call)
    finally:
        await _release(holder)
    assert arn.endswith(":user/admin") or ":user/" in arn
    assert took < 1.0

"""Prometheus metrics over real loopback sockets: the agent (in-process, virtual time, as
tests/test_daemon.py runs it) with ``[agent] metrics_listen``, and ``rolecall backend serve
--metrics-listen`` as a subprocess driven by boto3. Each scrape is fetched with httpx and parsed
with ``prometheus_client.parser``; the counters must show the calls made, and the text must hold
no key id, secret, token or ARN.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import boto3
import httpx
import pyotp
import pytest
import trio
import yaml
from botocore.config import Config
from botocore.exceptions import ClientError
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.metrics import AgentMetrics
from metadata_server.imds import FORBIDDEN, FORBIDDEN_HOST, FORBIDDEN_PEER, UNAUTHORIZED
from sts_backend.metrics import BackendMetrics
from tests.clocks import FixedClock
from tests.imds_support import http_request
from tests.test_daemon import CREDS, agent_config, backend, imds_credentials, start_agent  # noqa: F401 - backend: a fixture
from wire.http import HttpRequest, HttpResponse

REPO = Path(__file__).resolve().parents[1]
NO_RETRY = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=10)
_METRICS_LINE = re.compile(r"metrics on http://(127\.0\.0\.1:\d+)/metrics")


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """``{(sample name, sorted labels): value}`` of a scrape."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict, name: str, **labels: str) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


async def scrape(address: str, path: str = "/metrics", method: str = "GET") -> httpx.Response:
    async with httpx.AsyncClient(trust_env=False) as client:
        return await client.request(method, f"http://{address}{path}")


# ---- the agent ---------------------------------------------------------------------------------




async def test_agent_metrics_count_what_happened_and_hold_no_secret(nursery, backend, short_dir,
                                                                   wall_clock, autojump_clock, caplog):
    caplog.set_level("INFO")
    token_file = short_dir / "token"
    extra = (f'metrics_listen = "127.0.0.1:0"\n\n'
             f'[container]\nlisten = ["127.0.0.1:0"]\ntoken_file = "{token_file}"\n')
    agent = await start_agent(nursery, agent_config(short_dir, backend.url, backend.account, extra=extra),
                              wall_clock)
    (address,) = agent.metrics
    assert not address.endswith(":0")
    assert f"metrics on http://{address}/metrics" in caplog.text
    await agent.ready.wait()

    status, creds = await imds_credentials(agent.metadata[0])   # token PUT, role list GET, credentials GET
    assert status == 200
    imds = agent.metadata[0]
    assert (await http_request(imds, "GET", CREDS, [("Host", "evil.example")]))[0] == 403
    assert (await http_request(imds, "GET", CREDS, [("X-Forwarded-For", "10.0.0.9")]))[0] == 403
    assert (await http_request(imds, "GET", CREDS, [("X-aws-ec2-metadata-token", "forged")]))[0] == 401
    assert (await http_request(agent.container[0], "GET", "/v1/credentials", [("Authorization", "nope")]))[0] == 403
    await trio.sleep(100)

    answer = await scrape(address)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain; version=")
    found = samples(answer.text)
    assert value(found, "rolecall_agent_refreshes_total", role="default", result="success") == 1
    assert value(found, "rolecall_agent_refreshes_total", role="default", result="failure") == 0   # bound at start
    held = agent.rotators[None].current()
    left = (held.expiration - wall_clock.now()).total_seconds()
    assert value(found, "rolecall_agent_credentials_expiry_seconds", role="default") == pytest.approx(left, abs=1)
    assert 3000 < left < 3600
    assert value(found, "rolecall_agent_sts_request_duration_seconds_count", action="AssumeRole", result="ok") == 1
    requests = "rolecall_agent_requests_total"
    assert value(found, requests, endpoint="imds", path="token", status="200") == 1
    assert value(found, requests, endpoint="imds", path="credentials", status="200") == 2
    assert value(found, requests, endpoint="imds", path="credentials", status="403") == 2
    assert value(found, requests, endpoint="imds", path="credentials", status="401") == 1
    assert value(found, requests, endpoint="container", path="credentials", status="403") == 1
    refused = "rolecall_agent_refused_requests_total"
    assert {reason: value(found, refused, endpoint="imds", reason=reason) for reason in ("host", "hop", "token")} \
        == {"host": 1, "hop": 1, "token": 1}
    assert value(found, refused, endpoint="imds", reason="peer") is None
    assert value(found, refused, endpoint="container", reason="token") == 1
    assert not any(name.startswith("rolecall_agent_mfa") for name, _ in found)   # no MFA session configured

    secrets = [creds["AccessKeyId"], creds["SecretAccessKey"], creds["Token"], backend.account.agent.access_key_id,
               backend.account.agent.secret_access_key, token_file.read_text()]
    assert not any(secret in answer.text for secret in secrets)
    assert "arn:" not in answer.text

    assert (await scrape(address, "/")).status_code == 404
    assert (await scrape(address, "/metrics", "POST")).status_code == 405
    head = await scrape(address, "/metrics", "HEAD")
    assert head.status_code == 200 and head.content == b""


async def test_agent_failed_refreshes_and_no_credentials_show(nursery, backend, short_dir,
                                                             wall_clock, autojump_clock):
    account = backend.account
    missing = account.role_arn.rsplit("/", 1)[0] + "/no-such-role"
    config = agent_config(short_dir, backend.url, dataclasses.replace(account, role_arn=missing),
                          extra='metrics_listen = "127.0.0.1:0"\n')
    agent = await start_agent(nursery, config, wall_clock)
    await trio.sleep(120)   # the first attempt and a retry or more
    found = samples((await scrape(agent.metrics[0])).text)
    failures = value(found, "rolecall_agent_refreshes_total", role="default", result="failure")
    assert failures is not None and failures >= 2
    assert value(found, "rolecall_agent_refreshes_total", role="default", result="success") == 0
    assert value(found, "rolecall_agent_credentials_expiry_seconds", role="default") == 0
    assert value(found, "rolecall_agent_sts_request_duration_seconds_count", action="AssumeRole",
                 result="error") == failures
    assert "no-such-role" not in (await scrape(agent.metrics[0])).text


async def test_agent_metrics_are_off_by_default(nursery, backend, short_dir, wall_clock,
                                               autojump_clock, caplog):
    caplog.set_level("INFO")
    agent = await start_agent(nursery, agent_config(short_dir, backend.url, backend.account), wall_clock)
    await agent.ready.wait()
    assert agent.metrics == []
    assert "metrics on" not in caplog.text


def test_per_role_labels_are_rule_names_and_counting_is_per_answer():
    """The pure parts: rule names as role labels, path classes, and which 403 is which refusal."""
    metrics = AgentMetrics(wall_clock=None)
    metrics.refresh_observer("build")(True)
    metrics.refresh_observer(None)(False)
    answers = iter([FORBIDDEN_HOST, UNAUTHORIZED, HttpResponse(404, (), b""), HttpResponse(200, (), b"x"),
                    FORBIDDEN_PEER, FORBIDDEN, HttpResponse(404, (), b"")])
    handler = metrics.metered(lambda req: next(answers))
    for path in ("/latest/meta-data/iam/info", "/latest/meta-data/iam/security-credentials/",
                 "/latest/meta-data/nothing-here", "//latest/api/token", "/", "/latest/api/token/", "/etc/passwd"):
        handler(HttpRequest("GET", path, (), b""))
    found = samples(_text(metrics))
    assert value(found, "rolecall_agent_refreshes_total", role="build", result="success") == 1
    assert value(found, "rolecall_agent_refreshes_total", role="default", result="failure") == 1
    assert value(found, "rolecall_agent_requests_total", endpoint="imds", path="credentials", status="403") == 1
    assert value(found, "rolecall_agent_requests_total", endpoint="imds", path="credentials", status="401") == 1
    assert value(found, "rolecall_agent_requests_total", endpoint="imds", path="metadata", status="404") == 1
    assert value(found, "rolecall_agent_requests_total", endpoint="imds", path="token", status="200") == 1
    assert value(found, "rolecall_agent_refused_requests_total", endpoint="imds", reason="host") == 1
    assert value(found, "rolecall_agent_refused_requests_total", endpoint="imds", reason="token") == 1
    assert value(found, "rolecall_agent_refused_requests_total", endpoint="imds", reason="peer") == 1
    # "/" (peer refused) and a versioned token path: a 403 that is no defence's is a status, not a refusal
    assert value(found, "rolecall_agent_requests_total", endpoint="imds", path="metadata", status="403") == 2
    assert value(found, "rolecall_agent_requests_total", endpoint="imds", path="other", status="404") == 1
    assert sum(v for (name, _), v in found.items() if name == "rolecall_agent_refused_requests_total") == 3


def test_store_events_are_told_apart_by_sqlite_code(tmp_path):
    """A real SQLITE_BUSY (a second connection's write while the first holds the lock) is ``busy``."""
    first = sqlite3.connect(tmp_path / "db", isolation_level=None)
    first.execute("CREATE TABLE t (x)")
    first.execute("BEGIN EXCLUSIVE")
    second = sqlite3.connect(tmp_path / "db", timeout=0)
    with pytest.raises(sqlite3.OperationalError) as busy:
        second.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.OperationalError) as broken:
        sqlite3.connect(":memory:").execute("SELECT * FROM no_such_table")
    metrics = BackendMetrics()
    metrics.store_error(busy.value)
    metrics.store_error(broken.value)
    metrics.store_error(None)   # a lane's connection could not be opened
    found = samples(_text(metrics))
    assert value(found, "rolecall_backend_store_events_total", event="busy") == 1
    assert value(found, "rolecall_backend_store_events_total", event="unavailable") == 2
    first.close()
    second.close()


def _text(metrics) -> str:
    return generate_latest(metrics.registry).decode()


# ---- the backend -------------------------------------------------------------------------------


def rolecall(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60)


@pytest.fixture
def served_backend(tmp_path):
    """``rolecall backend serve --metrics-listen 127.0.0.1:0`` with small STS and MFA quotas."""
    data_dir = tmp_path / "data"
    done = rolecall("backend", "init", "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stderr
    admin = json.loads(done.stdout)
    for name, number in (("StsRequestsPerSecondPerKey", "1"), ("StsBurstPerKey", "4"),
                         ("MfaFailuresBeforeLockout", "2")):
        done = rolecall("backend", "set-quota", "--data-dir", str(data_dir), name, number)
        assert done.returncode == 0, done.stderr
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "backend", "serve", "--data-dir", str(data_dir),
                             "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"],
                            cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines = []
    try:
        for line in proc.stderr:
            lines.append(line)
            if "listening on" in line:
                break
        text = "".join(lines)
        url = re.search(r"listening on (http://\S+)", text).group(1)
        metrics = _METRICS_LINE.search(text).group(1)
        yield url, metrics, admin
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0


def test_backend_metrics_count_calls_errors_mfa_and_throttling(served_backend):
    url, address, admin = served_backend
    key = dict(aws_access_key_id=admin["AccessKeyId"], aws_secret_access_key=admin["SecretAccessKey"])
    sts = boto3.client("sts", endpoint_url=url, region_name="us-east-1", config=NO_RETRY, **key)
    iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1", config=NO_RETRY, **key)
    sts.get_caller_identity()
    sts.get_caller_identity()
    device = iam.create_virtual_mfa_device(VirtualMFADeviceName="metrics")["VirtualMFADevice"]
    totp, now = pyotp.TOTP(device["Base32StringSeed"].decode()), dt.datetime.now(dt.timezone.utc)
    iam.enable_mfa_device(UserName=admin["UserName"], SerialNumber=device["SerialNumber"],
                          AuthenticationCode1=totp.at(now - dt.timedelta(seconds=60)),
                          AuthenticationCode2=totp.at(now - dt.timedelta(seconds=30)))
    wrong = f"{(int(totp.at(now)) + 500_000) % 1_000_000:06d}"
    for _ in range(2):   # a failure, then the failure that locks the device (quota: 2)
        with pytest.raises(ClientError, match="AccessDenied"):
            sts.get_session_token(SerialNumber=device["SerialNumber"], TokenCode=wrong)
    answered = 2
    for _ in range(50):   # a burst of 4 refilled at 1 a second: soon throttled
        try:
            sts.get_caller_identity()
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "Throttling"
            break
        answered += 1
    else:
        pytest.fail("never throttled")
    forged = boto3.client("sts", endpoint_url=url, region_name="us-east-1", config=NO_RETRY,
                          aws_access_key_id=admin["AccessKeyId"], aws_secret_access_key="x" * 40)
    with pytest.raises(ClientError, match="SignatureDoesNotMatch"):
        forged.get_caller_identity()
    bogus = "NoSuchAction" + "x" * 200
    assert httpx.post(url, data={"Action": bogus, "Version": "2011-06-15"}, trust_env=False).status_code >= 400

    answer = httpx.get(f"http://{address}/metrics", trust_env=False)
    assert answer.status_code == 200
    found = samples(answer.text)
    requests = "rolecall_backend_requests_total"
    assert value(found, requests, action="GetCallerIdentity", code="OK") == answered
    assert value(found, requests, action="GetCallerIdentity", code="Throttling") == 1
    assert value(found, requests, action="GetCallerIdentity", code="SignatureDoesNotMatch") == 1
    assert value(found, requests, action="GetSessionToken", code="AccessDenied") == 2
    assert value(found, requests, action="CreateVirtualMFADevice", code="OK") == 1
    assert value(found, requests, action="EnableMFADevice", code="OK") == 1
    assert sum(v for (name, labels), v in found.items() if name == requests and ("action", "other") in labels) == 1
    assert value(found, "rolecall_backend_request_duration_seconds_count", action="GetCallerIdentity") \
        == answered + 2
    assert value(found, "rolecall_backend_mfa_failures_total") == 2
    assert value(found, "rolecall_backend_mfa_lockouts_total") == 1
    assert value(found, "rolecall_backend_throttled_total") == 1
    assert value(found, "rolecall_backend_store_events_total", event="busy") == 0
    assert value(found, "rolecall_backend_lane_workers", lane="write") == 1
    assert value(found, "rolecall_backend_lane_workers", lane="web_identity") >= 1
    assert value(found, "rolecall_backend_lane_queued_calls", lane="write") == 0

    for secret in (admin["AccessKeyId"], admin["SecretAccessKey"], device["Base32StringSeed"].decode(), "NoSuch"):
        assert secret not in answer.text
    assert "arn:" not in answer.text


def test_backend_metrics_off_loopback_are_refused_without_the_opt_in(tmp_path):
    done = rolecall("backend", "serve", "--data-dir", str(tmp_path / "none"), "--metrics-listen", "192.0.2.1:9100")
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1
    assert "metrics address 192.0.2.1:9100 is not loopback" in done.stderr
    assert "--metrics-allow-remote" in done.stderr


# ---- pure parts: the scrape-time gauges, the alert rules ------------------------------------------


class _Held:
    def __init__(self, expiration):
        self.expiration = expiration


class _Rotator:
    def __init__(self, held):
        self.held = held

    def current(self):
        return self.held


class _Mfa:
    def __init__(self, until):
        self.until = until

    def status(self):
        return {"mfa_serial": "arn:aws:iam::123456789012:mfa/me", "mfa_expiration": self.until, "mfa_waiting": False}


def _agent_scrape(rotators, mfa) -> tuple[dict, dt.datetime]:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    metrics = AgentMetrics(FixedClock(now))
    metrics.refresh_observer(None)
    metrics.watch(rotators, lambda: mfa)
    return samples(_text(metrics)), now


def test_expiry_and_mfa_gauges_are_read_at_scrape_time():
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    rotators = {None: _Rotator(_Held(now + dt.timedelta(seconds=1234))), "ci": _Rotator(None)}
    found, _ = _agent_scrape(rotators, _Mfa(now + dt.timedelta(hours=2)))
    assert value(found, "rolecall_agent_credentials_expiry_seconds", role="default") == 1234
    assert value(found, "rolecall_agent_credentials_expiry_seconds", role="ci") == 0
    assert value(found, "rolecall_agent_mfa_session_remaining_seconds") == 7200
    found, _ = _agent_scrape(rotators, _Mfa(None))   # a session configured, none held yet
    assert value(found, "rolecall_agent_mfa_session_remaining_seconds") == 0
    found, _ = _agent_scrape(rotators, None)   # no [source] mfa_serial
    assert not any(name.startswith("rolecall_agent_mfa") for name, _ in found)


def test_the_alert_rules_use_metrics_that_exist():
    class Lanes:
        def lane_statistics(self):
            return {"write": (0, 0, 1), "web_identity": (0, 0, 4)}

    backend_metrics = BackendMetrics()
    backend_metrics.watch(Lanes())
    found, now = _agent_scrape({None: _Rotator(_Held(dt.datetime(2026, 1, 1, 1, tzinfo=dt.timezone.utc)))}, None)
    exposed = {name for name, _ in found} | {name for name, _ in samples(_text(backend_metrics))}
    rules = yaml.safe_load((REPO / "examples" / "rolecall-alerts.yml").read_text())
    used = {name for group in rules["groups"] for rule in group["rules"]
            for name in re.findall(r"rolecall_[a-z_]+", rule["expr"])}
    assert {"rolecall_agent_credentials_expiry_seconds", "rolecall_agent_refreshes_total"} <= used
    assert used <= exposed, used - exposed

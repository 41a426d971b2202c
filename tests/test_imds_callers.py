"""The IMDS handler with per-caller roles: each caller sees only its role, tokens are bound to callers.

Pure handler tests: the caller identity is what the serving layer would have put
on the request (``HttpRequest.caller``); real sockets and real uids:
tests/test_per_caller_roles.py.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import pytest

from metadata_server import ImdsHandler, MetadataConfig
from tests.clocks import FixedClock
from tests.imds_support import SimpleHolder, sample_credentials
from wire.http import HttpRequest

EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
CREDS = "/latest/meta-data/iam/security-credentials/"
HOST = ("host", "169.254.169.254")


@dataclass(frozen=True)
class Caller:
    uid: int
    cgroup_id: int | None = None
    cgroup: str | None = None


WEB, BATCH, STRANGER = Caller(1001, 7, "/system.slice/web.service"), Caller(1002, 8), Caller(1003, 9)


class Mono:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def holders():
    return {"web": SimpleHolder(sample_credentials(EPOCH, role_name="web")),
            "batch": SimpleHolder(sample_credentials(EPOCH, role_name="batch"))}


def handler(holders, default=None):
    by_uid = {1001: holders["web"], 1002: holders["batch"]}

    def roles(caller, peer_ip):
        return by_uid.get(caller.uid, default) if caller is not None else default

    return ImdsHandler(MetadataConfig(tokens="optional"), SimpleHolder(None), FixedClock(EPOCH), Mono(), roles=roles)


def call(imds, caller, method="GET", target=CREDS, *headers):
    return imds(HttpRequest(method, target, (HOST, *headers), b"", ("127.0.0.1", 40000), ("127.0.0.1", 8169),
                            caller=caller))


def token(imds, caller) -> str:
    answer = call(imds, caller, "PUT", "/latest/api/token", ("x-aws-ec2-metadata-token-ttl-seconds", "60"))
    assert answer.status == 200
    return answer.body.decode()


def test_each_caller_lists_and_reads_only_its_own_role(holders):
    imds = handler(holders)
    assert call(imds, WEB).body == b"web" and call(imds, BATCH).body == b"batch"
    web = json.loads(call(imds, WEB, "GET", CREDS + "web").body)
    assert web["AccessKeyId"] == holders["web"].current().access_key_id
    assert call(imds, BATCH, "GET", CREDS + "web").status == 404      # another role's name: not there
    info = json.loads(call(imds, BATCH, "GET", "/latest/meta-data/iam/info").body)
    assert info["InstanceProfileArn"].endswith("/batch")


def test_a_caller_no_rule_matches_gets_403_json_without_a_default(holders):
    imds = handler(holders)
    for caller in (STRANGER, None):
        answer = call(imds, caller)
        assert answer.status == 403 and json.loads(answer.body)["Code"] == "AccessDenied"
        assert call(imds, caller, "GET", CREDS + "web").status == 403
        assert call(imds, caller, "GET", "/latest/meta-data/instance-id").status == 200   # the host's, as ever
    defaulted = handler(holders, default=holders["batch"])
    assert call(defaulted, STRANGER).body == b"batch" and call(defaulted, None).body == b"batch"


def test_tokens_are_bound_to_the_caller_that_asked(holders):
    imds = handler(holders)
    mine = token(imds, WEB)
    assert call(imds, WEB, "GET", CREDS, ("x-aws-ec2-metadata-token", mine)).status == 200
    assert call(imds, BATCH, "GET", CREDS, ("x-aws-ec2-metadata-token", mine)).status == 401
    moved = Caller(1001, 99, "/user.slice/other.scope")   # same uid, another cgroup: another caller
    assert call(imds, moved, "GET", CREDS, ("x-aws-ec2-metadata-token", mine)).status == 401
    assert call(imds, None, "GET", CREDS, ("x-aws-ec2-metadata-token", mine)).status == 401


def test_without_roles_tokens_are_not_bound(holders):
    imds = ImdsHandler(MetadataConfig(tokens="optional"), holders["web"], FixedClock(EPOCH), Mono())
    mine = token(imds, WEB)
    answer = call(imds, BATCH, "GET", CREDS, ("x-aws-ec2-metadata-token", mine))
    assert answer.status == 200 and answer.body == b"web"

"""The agent with ``[source] web_identity_token_file`` in front of the included backend.

Everything over real loopback sockets: the agent (IMDS and control socket) and the
backend (``Backend`` on the serving layer, as ``rolecall backend serve`` runs it: the
web-identity lane in worker threads) in this test's trio loop, the identity provider
(``LoopbackIdP``) in threads of its own. The agent reads the token file, calls the
unsigned AssumeRoleWithWebIdentity, and serves the role's credentials; a token the
backend refuses leaves it unready with AWS's error code in its status.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
import trio

from agent.sts_client import StsClient
from sts_backend import server as backend_server
from sts_backend.app import Backend
from sts_backend.iam import Caller, handle_iam
from sts_backend.store import Store
from tests.idp_support import LoopbackIdP
from tests.test_daemon import control, imds_credentials, start_agent
from wire.clock import SystemClock
from wire.sigv4 import Credentials

ACCOUNT = "123456789012"
ROLE = "web-app"


@pytest.fixture
def idp():
    provider = LoopbackIdP()
    yield provider
    provider.close()


async def start_backend(nursery, data_dir: Path, idp: LoopbackIdP, clock) -> str:
    """The backend, with the IdP registered and a role trusting its tokens for subject system:app."""
    store = Store.create(data_dir, ACCOUNT, clock)
    root = Caller(ACCOUNT, f"arn:aws:iam::{ACCOUNT}:root", "root")
    arn = handle_iam("CreateOpenIDConnectProvider", {"Url": idp.url, "ClientIDList": ["sts.amazonaws.com"]},
                     root, store, clock)["OpenIDConnectProviderArn"]
    prefix = idp.url.split("://", 1)[1]
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Federated": arn}, "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {f"{prefix}:sub": "system:app", f"{prefix}:aud": "sts.amazonaws.com"}}}]}
    handle_iam("CreateRole", {"RoleName": ROLE, "AssumeRolePolicyDocument": json.dumps(trust)}, root, store, clock)
    app = Backend(store, clock)
    urls = await nursery.start(partial(backend_server.serve, app, ["127.0.0.1:0"], stop=trio.Event()))
    return urls[0]


def web_identity_config(directory: Path, sts_url: str, token: str) -> Path:
    token_file = directory / "token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    path = directory / "agent.toml"
    path.write_text(f'[sts]\nendpoint_url = "{sts_url}"\nregion = "us-east-1"\n\n'
                    f'[source]\nweb_identity_token_file = "{token_file}"\n\n'
                    f'[role]\narn = "arn:aws:iam::{ACCOUNT}:role/{ROLE}"\nsession_name = "agent-web"\n\n'
                    f'[metadata]\nlisten = ["127.0.0.1:0"]\ntokens = "required"\n\n'
                    f'[agent]\ncontrol_socket = "{directory / "agent.sock"}"\n')
    return path


async def test_the_agent_serves_role_credentials_from_a_web_identity_token(nursery, tmp_path, short_dir, idp):
    clock = SystemClock()
    sts_url = await start_backend(nursery, tmp_path / "backend", idp, clock)
    agent = await start_agent(nursery, web_identity_config(short_dir, sts_url, idp.token(clock.now())), clock)
    with trio.fail_after(30):
        await agent.ready.wait()
    status, creds = await imds_credentials(agent.metadata[0])
    assert status == 200 and creds["AccessKeyId"].startswith("ASIA") and creds["Code"] == "Success"
    async with StsClient(sts_url, "us-east-1", clock=clock) as sts:
        identity = await sts.get_caller_identity(Credentials(creds["AccessKeyId"], creds["SecretAccessKey"],
                                                             creds["Token"]))
    assert identity["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/agent-web"
    answer = await control(agent.control_socket)
    assert answer["ready"] is True and answer["last_error"] is None


@pytest.mark.parametrize("claims,code", [
    ({"aud": "someone-else"}, "InvalidIdentityToken"),
    ({"lifetime": -60}, "ExpiredTokenException"),
    ({"sub": "system:intruder"}, "AccessDenied"),
])
async def test_the_agent_reports_a_refused_token(nursery, tmp_path, short_dir, idp, claims, code):
    clock = SystemClock()
    sts_url = await start_backend(nursery, tmp_path / "backend", idp, clock)
    agent = await start_agent(nursery, web_identity_config(short_dir, sts_url, idp.token(clock.now(), **claims)),
                              clock)
    with trio.fail_after(20):
        while not (answer := await control(agent.control_socket))["last_error"]:
            await trio.sleep(0.05)
    assert answer["ready"] is False and answer["last_error"].startswith(f"{code}: ")
    assert (await imds_credentials(agent.metadata[0]))[0] != 200

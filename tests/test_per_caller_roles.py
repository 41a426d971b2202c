"""Per-caller roles end to end: the agent, the included backend, and botocore clients run as other users.

Runs as root (it starts clients under other uids with ``setpriv --reuid``); skips with
the reason otherwise. The agent and the backend run in this test's trio loop in real
time, over loopback sockets; each client is botocore's own IMDS provider
(``InstanceMetadataFetcher``) in a child process of its own uid, pointed at the
agent's address (never at 169.254.169.254). The kernel names each connection's
caller (``wire.peer_identity``); nothing the client sends is believed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
from pathlib import Path

import pytest
import trio

from agent.config import load_config
from agent.daemon import run_agent
from tests.test_daemon import StsBackend, agent_config, control
from wire.clock import SystemClock
from wire.peer_identity import cgroup2_mount

WEB_UID, BATCH_UID = 65534, 65533   # nobody, and a uid no user owns: match rules need no account

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="per-caller role tests start clients as other users: need root"),
    pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is not installed"),
]

FETCH = r"""
import json, sys
from botocore.utils import InstanceMetadataFetcher
got = InstanceMetadataFetcher(timeout=3, num_attempts=1, base_url=sys.argv[1]).retrieve_iam_role_credentials()
print(json.dumps({"role": got.get("role_name"), "key": got.get("access_key")}))
"""

# IMDSv2 by hand: "token" prints a token; "use TOKEN [HOST]" prints the status and body of the role list.
RAW = r"""
import http.client, sys
host, port = sys.argv[1].removeprefix("http://").rsplit(":", 1)
c = http.client.HTTPConnection(host, int(port), timeout=3)
if sys.argv[2] == "token":
    c.request("PUT", "/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    print(c.getresponse().read().decode())
else:
    token = {"X-aws-ec2-metadata-token": sys.argv[3]} if sys.argv[3] else {}   # "": IMDSv1
    host = {"Host": sys.argv[4]} if len(sys.argv) > 4 else {}                # as a forwarder's owner would send
    c.request("GET", "/latest/meta-data/iam/security-credentials/", headers={**token, **host})
    r = c.getresponse()
    print(r.status, r.read().decode())
"""

# A forwarder on loopback: whoever connects to it reaches the agent through the forwarder's own socket.
FORWARD = r"""
import socket, sys, threading
target_host, target_port = sys.argv[1].removeprefix("http://").rsplit(":", 1)
server = socket.create_server(("127.0.0.1", 0))
print(server.getsockname()[1], flush=True)
def pump(a, b):
    try:
        while data := a.recv(65536):
            b.sendall(data)
    except OSError:
        pass
    finally:
        b.close()
while True:
    client, _ = server.accept()
    upstream = socket.create_connection((target_host, int(target_port)))
    threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
    threading.Thread(target=pump, args=(upstream, client), daemon=True).start()
"""


def as_user(uid: int | None, script: str, *args: str) -> list[str]:
    command = [sys.executable, "-c", script, *args]
    if uid is None:
        return command
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *command]


CLIENT_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/", "AWS_CONFIG_FILE": "/dev/null",
              "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}


async def run(uid: int | None, script: str, *args: str) -> str:
    done = await trio.run_process(as_user(uid, script, *args), capture_stdout=True, capture_stderr=True,
                                  check=False, env=CLIENT_ENV)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode().strip()


async def fetch(uid: int | None, url: str) -> dict:
    return json.loads(await run(uid, FETCH, url))


@pytest.fixture
async def world(nursery, tmp_path):
    """The backend with the demo account and three more roles the agent's user may assume."""
    clock = SystemClock()
    backend = StsBackend(tmp_path / "backend", clock)
    await backend.start(nursery)
    account = await backend.demo()
    agent_arn = f"arn:aws:iam::{account.account_id}:user/rolecall-agent"
    trust = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": agent_arn}, "Action": "sts:AssumeRole"}]})
    ids = backend.store.principal_ids([agent_arn])
    assert ids[agent_arn], "the demo agent user is not where this test expects it"
    arns = {name: backend.store.create_role(name, trust, principal_ids=ids).arn for name in ("web", "batch", "cg")}
    return backend, account, arns


def roles_config(directory: Path, backend, account, arns, *, default: bool, cgroup: str | None = None) -> Path:
    rules = (f'\n[roles.web]\narn = "{arns["web"]}"\nsession_name = "web-{{hostname}}"\nmatch = {{ uid = {WEB_UID} }}\n'
             f'\n[roles.batch]\narn = "{arns["batch"]}"\nmatch = {{ uid = {BATCH_UID} }}\n')
    if cgroup:
        rules += f'\n[roles.grouped]\narn = "{arns["cg"]}"\nmatch = {{ cgroup = "{cgroup}" }}\n'
    path = agent_config(directory, backend.url, account, tokens="optional", extra=rules)
    if not default:
        text = path.read_text()
        start = text.index("[role]\n")
        path.write_text(text[:start] + text[text.index("[metadata]"):])
    return path


async def start(nursery, path: Path):
    config = load_config(str(path), environ={})
    agent = await nursery.start(lambda task_status: run_agent(config, handle_signals=False, inherited=[],
                                                               task_status=task_status))
    with trio.fail_after(30):
        await agent.ready.wait()
    return agent, "http://" + agent.metadata[0]


@pytest.fixture
async def probe():
    """Skip when this machine cannot run botocore as another uid (a venv only root may read)."""
    done = await trio.run_process(as_user(WEB_UID, "import botocore"), capture_stderr=True, check=False,
                                  env=CLIENT_ENV)
    if done.returncode:
        pytest.skip(f"python cannot import botocore as uid {WEB_UID}: {done.stderr.decode().strip()[-200:]}")


async def test_each_caller_gets_exactly_its_role_and_others_the_default(nursery, world, short_dir, probe):
    backend, account, arns = world
    agent, url = await start(nursery, roles_config(short_dir, backend, account, arns, default=True))
    web, batch, root = await fetch(WEB_UID, url), await fetch(BATCH_UID, url), await fetch(None, url)
    held = {name: rotator.current().access_key_id for name, rotator in agent.rotators.items()}
    assert web == {"role": "web", "key": held["web"]}
    assert batch == {"role": "batch", "key": held["batch"]}
    assert root == {"role": account.role_arn.rsplit("/", 1)[1], "key": held[None]}
    status = await control(agent.control_socket)
    assert status["ready"] is True
    assert [(r["name"], r["role_arn"], r["ready"]) for r in status["roles"]] == [
        (None, account.role_arn, True), ("web", arns["web"], True), ("batch", arns["batch"], True)]


async def test_without_a_default_an_unmatched_caller_gets_403(nursery, world, short_dir, probe):
    backend, account, arns = world
    agent, url = await start(nursery, roles_config(short_dir, backend, account, arns, default=False))
    assert await fetch(None, url) == {"role": None, "key": None}     # botocore got 403 and gave up
    status, body = (await run(None, RAW, url, "use", "")).split(" ", 1)
    assert status == "403" and json.loads(body)["Code"] == "AccessDenied"
    assert (await fetch(WEB_UID, url))["role"] == "web"


async def test_a_token_of_one_user_is_refused_for_another(nursery, world, short_dir, probe):
    backend, account, arns = world
    agent, url = await start(nursery, roles_config(short_dir, backend, account, arns, default=True))
    token = await run(WEB_UID, RAW, url, "token")
    assert (await run(WEB_UID, RAW, url, "use", token)) == "200 web"
    assert (await run(BATCH_UID, RAW, url, "use", token)).startswith("401 ")
    assert (await run(None, RAW, url, "use", token)).startswith("401 ")


async def test_a_forwarder_only_ever_yields_its_own_users_role(nursery, world, short_dir, probe):
    backend, account, arns = world
    agent, url = await start(nursery, roles_config(short_dir, backend, account, arns, default=True))
    forwarder = await nursery.start(_forwarder, url)
    # The Host check would refuse the forwarder's own address; its owner sends the agent's, as an attacker would.
    via = f"http://127.0.0.1:{forwarder}"
    assert await run(BATCH_UID, RAW, via, "use", "", url.removeprefix("http://")) == "200 web"
    assert await run(BATCH_UID, RAW, url, "use", "") == "200 batch"      # directly: its own


async def _forwarder(url: str, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """The forwarder as uid WEB_UID; reports its port, runs until the test's nursery ends."""
    proc = await trio.lowlevel.open_process(as_user(WEB_UID, FORWARD, url), stdout=-1, env=CLIENT_ENV)
    try:
        port = b""
        while not port.endswith(b"\n"):
            port += await proc.stdout.receive_some(16)
        task_status.started(int(port))
        await trio.sleep_forever()
    finally:
        proc.kill()
        with trio.CancelScope(shield=True):
            await proc.wait()
            await proc.stdout.aclose()


async def test_a_caller_in_a_cgroup_gets_the_cgroups_role(nursery, world, short_dir, probe):
    mount = cgroup2_mount()
    if mount is None:
        pytest.skip("no cgroup2 hierarchy is mounted here")
    name = f"/rolecall-test-{secrets.token_hex(4)}"
    directory = Path(mount[0] + name)
    try:
        directory.mkdir()
    except OSError as exc:
        pytest.skip(f"cannot create a cgroup under {mount[0]}: {exc.strerror}")
    try:
        backend, account, arns = world
        agent, url = await start(nursery, roles_config(short_dir, backend, account, arns, default=True, cgroup=name))
        # a shell moves itself into the new cgroup, then becomes the client: its sockets are created there
        script = f'echo $$ > "{directory}/cgroup.procs" && exec "$@"'
        done = await trio.run_process(["sh", "-c", script, "sh", *as_user(None, FETCH, url)], capture_stdout=True,
                                      capture_stderr=True, check=False, env=CLIENT_ENV)
        if done.returncode and b"cgroup.procs" in done.stderr:
            pytest.skip(f"cannot move a process into {directory}: {done.stderr.decode().strip()}")
        assert done.returncode == 0, done.stderr.decode()
        assert json.loads(done.stdout)["role"] == "cg"
        assert (await fetch(None, url))["role"] == account.role_arn.rsplit("/", 1)[1]   # outside it: the default
    finally:
        try:
            directory.rmdir()
        except OSError:
            pass

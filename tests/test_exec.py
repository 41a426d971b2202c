"""`rolecall exec` in-process: a real child process reads the container endpoint while virtual time runs.

The backend, the resolver and the exec runner share one ``TrioWallClock``
started at the real time, so the credentials the child sees are valid by its
own (real) clock. The test travels in time by jumping that wall clock past each
refresh point (the rotator notices a jump and re-checks at once), instead of
waiting. The child is a real Python process using botocore's own
``ContainerProvider``.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import pytest
import trio
import trio.testing

from agent.errors import AgentError
from agent.exec_runner import child_environment, exit_status, run_exec
from agent.profile_chain import ProfileResolver
from tests.laptop_support import start_laptop, write_profiles
from wire.clock import SystemClock
from tests.clocks import TrioWallClock
from wire.session_cache import SessionCache

CHILD = r"""
import json, os, sys, time
from botocore.credentials import ContainerProvider
out, keys = sys.argv[1], []
env = sorted(k for k in os.environ if k.startswith(("AWS_", "ROLECALL_")))
for _ in range(600):
    key = ContainerProvider().load().get_frozen_credentials().access_key
    if key not in keys:
        keys.append(key)
        with open(out + ".progress", "a") as f:
            f.write(key + "\n")
    if len(keys) >= 3:
        break
    time.sleep(0.05)
json.dump({"keys": keys, "env": env, "token_file": os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"]},
          open(out, "w"))
sys.exit(7)
"""


@pytest.fixture
def autojump_clock():
    """Jumps after 10 ms of real idleness: the child is a real process, and keyring calls run in threads."""
    return trio.testing.MockClock(autojump_threshold=0.01)


@pytest.fixture
async def exec_setup(nursery, tmp_path, aws_sandbox, monkeypatch):
    clock = TrioWallClock(SystemClock().now())
    backend, user, keystore = await start_laptop(nursery, tmp_path, clock, "eve")
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", backend.url)
    write_profiles(aws_sandbox, user, extra=f"[profile short]\nrole_arn = {user.open_role}\nsource_profile = base\n"
                                            "duration_seconds = 900\nregion = eu-west-1\n")
    resolver = ProfileResolver(keystore=keystore, cache=SessionCache(), clock=clock)
    return backend, resolver, clock


async def test_the_child_sees_fresh_credentials_across_rotations(exec_setup, autojump_clock, tmp_path, monkeypatch):
    backend, resolver, clock = exec_setup
    monkeypatch.setenv("AWS_PROFILE", "base")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFROMTHESHELLXXXX")
    out, status = tmp_path / "child.json", []

    async def child():
        status.append(await run_exec(resolver, "short", [sys.executable, "-c", CHILD, str(out)], clock=clock,
                                     handle_signals=False))

    def seen_keys() -> int:
        progress = tmp_path / "child.json.progress"
        return len(progress.read_text().splitlines()) if progress.exists() else 0

    async with trio.open_nursery() as nursery:
        nursery.start_soon(child)
        for wanted in (1, 2):
            with trio.fail_after(600):
                while seen_keys() < wanted:
                    await trio.sleep(0.05)
            clock.jump(600)  # time travel past the refresh point of the 15-minute credentials
    assert status == [7]
    seen = json.loads(out.read_text())
    assert len(seen["keys"]) == 3  # the first credentials and two rotations, each served to the child
    assert backend.calls["AssumeRole"] >= 3
    assert "AWS_PROFILE" not in seen["env"] and "AWS_ACCESS_KEY_ID" not in seen["env"]
    assert {"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "AWS_REGION",
            "AWS_DEFAULT_REGION", "ROLECALL_EXEC"} <= set(seen["env"])
    assert not os.path.exists(seen["token_file"]) and not os.path.exists(os.path.dirname(seen["token_file"]))


async def test_refuses_to_nest(exec_setup, autojump_clock):
    backend, resolver, clock = exec_setup
    with pytest.raises(AgentError, match="already inside `rolecall exec` for profile 'outer'"):
        await run_exec(resolver, "short", ["true"], clock=clock, environ={"ROLECALL_EXEC": "outer"})
    assert backend.calls["AssumeRole"] == 0


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 42), (signal.SIGINT, 43), (signal.SIGHUP, 44)])
async def test_signals_reach_the_child_and_its_status_comes_back(nursery, tmp_path, aws_sandbox, monkeypatch,
                                                                 signum, code):
    clock = SystemClock()
    backend, user, keystore = await start_laptop(nursery, tmp_path, clock, "sig")
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", backend.url)
    write_profiles(aws_sandbox, user)
    ready = tmp_path / "ready"
    child = (f"import signal, sys, time\nsignal.signal({int(signum)}, lambda *a: sys.exit({code}))\n"
             f"open({str(ready)!r}, 'w').close()\ntime.sleep(60)\nsys.exit(1)\n")
    resolver = ProfileResolver(keystore=keystore, cache=SessionCache(), clock=clock)
    result = []

    async def run():
        result.append(await run_exec(resolver, "open-role", [sys.executable, "-c", child], clock=clock))

    async with trio.open_nursery() as inner:
        inner.start_soon(run)
        with trio.fail_after(30):
            while not ready.exists():
                await trio.sleep(0.02)
        os.kill(os.getpid(), signum)  # to rolecall: passed on to the child (no terminal sent it one too)
    assert result == [code]


def test_child_environment_and_exit_status():
    env = child_environment({"AWS_PROFILE": "x", "AWS_SESSION_TOKEN": "t", "AWS_SECURITY_TOKEN": "t", "PATH": "/bin",
                             "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2", "AWS_WEB_IDENTITY_TOKEN_FILE": "/t",
                             "AWS_REGION": "us-west-2"},
                            "http://127.0.0.1:1/credentials", "/run/t", "eu-west-1", "dev")
    assert env == {"PATH": "/bin", "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:1/credentials",
                   "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": "/run/t", "ROLECALL_EXEC": "dev",
                   "AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-west-1"}
    assert child_environment({"AWS_REGION": "us-west-2"}, "u", "t", None, "p")["AWS_REGION"] == "us-west-2"
    assert (exit_status(0), exit_status(3), exit_status(-signal.SIGTERM)) == (0, 3, 128 + signal.SIGTERM)

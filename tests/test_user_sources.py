"""A user's agent: keyring and profile sources, the MFA session it holds, and its control-socket answers.

The backend runs in-process on loopback and shares the ``wall_clock`` that
trio's MockClock drives; MFA codes are the device's real codes at that time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import trio
import trio.testing

from agent.errors import MfaError, SourceError
from agent.keystore import KeyStore
from agent.profile_chain import MFA_SESSION_SECONDS, ProfileResolver, session_key
from agent.sources import StaticSource
from agent.sts_client import StsClient
from agent.user_sources import PROMPT_COOLDOWN, KeyringSource, MfaSession, ProfileSource
from tests.laptop_support import MemoryKeyring, code_at, make_user, write_profiles
from tests.test_daemon import StsBackend, start_agent
from wire.session_cache import SessionCache


@pytest.fixture
def autojump_clock():
    """Jumps after 20 ms of real idleness: keyring calls run in worker threads trio cannot see."""
    return trio.testing.MockClock(autojump_threshold=0.02)


@pytest.fixture
async def world(nursery, tmp_path, wall_clock):
    backend = StsBackend(tmp_path / "backend", wall_clock)
    await backend.start(nursery)
    user = await make_user(backend.url, backend.admin, wall_clock, "ada")
    backend.calls.clear()
    return backend, user


class Prompt:
    def __init__(self, seed, clock, fail: bool = False) -> None:
        self.seed, self.clock, self.fail, self.calls = seed, clock, fail, 0

    async def __call__(self, serial: str) -> str:
        self.calls += 1
        if self.fail:
            raise MfaError("the dialog was cancelled")
        return code_at(self.seed, self.clock.now())


def mfa_session(backend, user, clock, prompt, client) -> MfaSession:
    return MfaSession(StaticSource(user.keys.access_key_id, user.keys.secret_access_key), user.mfa_serial, client,
                      SessionCache(), clock, prompt=prompt, login_hint="rolecall mfa login --agent")


async def test_the_session_is_shared_through_the_cache_and_renewed_near_its_end(world, wall_clock, autojump_clock):
    backend, user = world
    prompt = Prompt(user.seed, wall_clock)
    async with StsClient(backend.url, "us-east-1", clock=wall_clock) as client:
        first = mfa_session(backend, user, wall_clock, prompt, client)
        creds = await first.get()
        assert creds.session_token and prompt.calls == 1 and backend.calls["GetSessionToken"] == 1
        assert first.status()["mfa_expiration"] == first.held.expiration and not first.status()["mfa_waiting"]
        key = session_key(user.keys.access_key_id, user.mfa_serial, backend.url, "us-east-1")
        assert SessionCache().get(key).access_key_id == creds.access_key_id
        # a restarted agent (a new source) picks the session up from the cache: no prompt
        again = mfa_session(backend, user, wall_clock, prompt, client)
        assert (await again.get()).access_key_id == creds.access_key_id and prompt.calls == 1
        wall_clock.jump(MFA_SESSION_SECONDS - 10 * 60)  # inside the last 15 minutes
        renewed = await again.get()
        assert renewed.access_key_id != creds.access_key_id and prompt.calls == 2


async def test_without_a_code_it_waits_and_never_storms_dialogs(world, wall_clock, autojump_clock):
    autojump_clock.autojump_threshold = 0  # no keyring threads here: jump at once through the cooldown
    backend, user = world
    prompt = Prompt(user.seed, wall_clock, fail=True)
    async with StsClient(backend.url, "us-east-1", clock=wall_clock) as client:
        session = mfa_session(backend, user, wall_clock, prompt, client)
        for _ in range(3):
            with pytest.raises(SourceError, match=r"run `rolecall mfa login --agent` to give the agent a code"):
                await session.get()
        assert prompt.calls == 1 and session.waiting
        await trio.sleep(PROMPT_COOLDOWN)
        with pytest.raises(SourceError):
            await session.get()
        assert prompt.calls == 2
        held = await session.accept_code(code_at(user.seed, wall_clock.now()))
        assert not session.waiting and (await session.get()).access_key_id == held.access_key_id
    assert backend.calls["GetSessionToken"] == 1


async def test_keyring_and_profile_sources(world, wall_clock, autojump_clock, aws_sandbox, monkeypatch):
    backend, user = world
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", backend.url)
    keystore = KeyStore(MemoryKeyring(), clock=wall_clock)
    ring = KeyringSource(keystore, "base")
    with pytest.raises(SourceError, match="run `rolecall keys add --profile base`"):
        await ring.get()
    await keystore.put("base", user.keys.access_key_id, user.keys.secret_access_key)
    assert (await ring.get()).access_key_id == user.keys.access_key_id
    write_profiles(aws_sandbox, user)
    resolver = ProfileResolver(keystore=keystore, cache=SessionCache(), clock=wall_clock, terminal=False)
    # a profile of keys gives the long-term keys themselves (an MFA session may be made from them) ...
    assert (await ProfileSource(resolver, "base").get()).access_key_id == user.keys.access_key_id
    # ... a role profile what its chain resolves to
    role = await ProfileSource(resolver, "open-role").get()
    assert role.access_key_id.startswith("ASIA") and backend.calls["AssumeRole"] == 1
    with pytest.raises(SourceError, match="profile 'nope' not found"):
        await ProfileSource(resolver, "nope").get()


async def _ask(path: str, message: dict) -> dict:
    stream = await trio.open_unix_socket(path)
    async with stream:
        await stream.send_all(json.dumps(message).encode() + b"\n")
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    return json.loads(data)


async def test_the_credentials_op_answers_only_its_own_role_and_user(world, nursery, short_dir, wall_clock,
                                                                    autojump_clock):
    backend, user = world
    config = short_dir / "agent.toml"
    config.write_text(f'[sts]\nendpoint_url = "{backend.url}"\nregion = "us-east-1"\n\n'
                      f'[source]\naccess_key_id = "{user.keys.access_key_id}"\n'
                      f'secret_access_key = "{user.keys.secret_access_key}"\n\n'
                      f'[role]\narn = "{user.open_role}"\nsession_name = "agent"\n\n'
                      f'[metadata]\nlisten = ["127.0.0.1:0"]\n\n[agent]\ncontrol_socket = "{short_dir / "s"}"\n')
    agent = await start_agent(nursery, config, wall_clock)
    await agent.ready.wait()
    path = agent.control_socket
    held = agent.rotator.current()
    answer = await _ask(path, {"op": "credentials", "role_arn": user.open_role, "session_name": "agent"})
    assert answer["AccessKeyId"] == held.access_key_id and answer["SessionToken"] == held.token
    assert answer["Expiration"].endswith("Z") and answer["RoleArn"] == user.open_role
    assert "error" in await _ask(path, {"op": "credentials", "role_arn": user.mfa_role})
    assert "error" in await _ask(path, {"op": "credentials", "role_arn": user.open_role, "session_name": "x"})
    assert "holds no MFA session" in (await _ask(path, {"op": "mfa-code", "code": "123456"}))["error"]
    if os.geteuid() != 0:
        pytest.skip("another user's request needs root to switch users")
    os.chmod(path, 0o666)  # as a 0660 socket of group rolecall would let a group member in
    os.chmod(os.path.dirname(path), 0o711)
    probe = ("import json, os, socket, sys\nos.setgid(65534); os.setuid(65534)\n"
             "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
             "s.sendall(b'{\"op\": \"credentials\"}\\n'); print(s.makefile().readline())")
    done = await trio.to_thread.run_sync(lambda: subprocess.run([sys.executable, "-c", probe, path],
                                                                capture_output=True, text=True, timeout=30))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"error": "credentials is answered only to the agent's own user"}

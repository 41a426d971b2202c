"""Profiles resolved in-process against the included backend on loopback, in virtual time.

The backend (``tests.test_daemon.StsBackend``, counting calls per Action) and
the resolver share the ``wall_clock`` that trio's ``autojump_clock`` drives, so
an 8-hour MFA session ends in an instant. Prompts are counting stand-ins that
compute the device's real code at the virtual time.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import sys

import pytest
import trio
import trio.testing

from agent.errors import MfaError, SourceError, StsError
from agent.profile_chain import MFA_SESSION_SECONDS, ProfileResolver, session_key
from metadata_server import ContainerHandler, ImdsHandler, MetadataConfig, write_token_file
from metadata_server.credentials import RoleCredentials
from tests.imds_support import SimpleHolder
from tests.laptop_support import code_at, start_laptop, write_profiles
from tests.servers import start_server
from wire.http import HttpResponse
from wire.aws_config import ProfileError
from wire.session_cache import SessionCache


@pytest.fixture
def autojump_clock():
    """Virtual time that jumps only after 20 ms of real idleness: keyring calls run in worker
    threads, which trio cannot see working, and an instant jump would time them out."""
    return trio.testing.MockClock(autojump_threshold=0.02)


class Prompt:
    """An MFA prompt that types the device's current code (by the wall clock) and counts."""

    def __init__(self, seed: str, clock) -> None:
        self.seed, self.clock, self.serials = seed, clock, []

    async def __call__(self, serial: str) -> str:
        self.serials.append(serial)
        return code_at(self.seed, self.clock.now())


@pytest.fixture
async def setup(nursery, tmp_path, wall_clock, aws_sandbox, monkeypatch):
    backend, user, keystore = await start_laptop(nursery, tmp_path, wall_clock, "alice")
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", backend.url)
    write_profiles(aws_sandbox, user)
    prompt = Prompt(user.seed, wall_clock)
    cache = SessionCache()
    resolver = ProfileResolver(keystore=keystore, cache=cache, clock=wall_clock, prompt=prompt)
    return backend, user, resolver, prompt, cache


async def test_mfa_role_profile_one_prompt_then_the_cache(setup, autojump_clock, wall_clock):
    backend, user, resolver, prompt, cache = setup
    first = await resolver.credentials("dev-role")
    assert first.role_arn.startswith(f"arn:aws:sts::{user.account}:assumed-role/alice-mfa/laptop")
    assert prompt.serials == [user.mfa_serial]
    assert dict(backend.calls) == {"GetSessionToken": 1, "AssumeRole": 1}
    # chained from the MFA session: one hour, as STS caps role chaining
    assert first.expiration - wall_clock.now() == dt.timedelta(hours=1)
    assert await resolver.credentials("dev-role") == first
    wall_clock.jump(44 * 60)  # 16 min left: still served from the cache
    assert await resolver.credentials("dev-role") == first
    wall_clock.jump(2 * 60)  # 14 min left: a new role session from the MFA session, no prompt
    second = await resolver.credentials("dev-role")
    assert second.access_key_id != first.access_key_id and len(prompt.serials) == 1
    assert dict(backend.calls) == {"GetSessionToken": 1, "AssumeRole": 2}


async def test_the_mfa_session_lasts_eight_hours_then_prompts_again(setup, autojump_clock, wall_clock):
    backend, user, resolver, prompt, cache = setup
    await resolver.credentials("dev-role")
    session = cache.get(session_key(user.keys.access_key_id, user.mfa_serial, backend.url, "us-east-1"))
    assert session.kind == "mfa-session" and session.profiles == ("base",)
    assert session.expiration - wall_clock.now() == dt.timedelta(seconds=MFA_SESSION_SECONDS)
    wall_clock.jump(MFA_SESSION_SECONDS - 14 * 60)
    await resolver.credentials("dev-role")
    assert len(prompt.serials) == 2 and backend.calls["GetSessionToken"] == 2


async def test_profiles_sharing_the_serial_share_one_session_and_one_prompt(setup, autojump_clock, aws_sandbox):
    backend, user, resolver, prompt, cache = setup
    config = aws_sandbox / ".aws" / "config"
    config.write_text(config.read_text() + f"[profile dev-role-2]\nrole_arn = {user.mfa_role}\nsource_profile = base\n"
                                           f"mfa_serial = {user.mfa_serial}\nrole_session_name = other\n")
    a = await resolver.credentials("dev-role")
    b = await resolver.credentials("dev-role-2")
    assert a.access_key_id != b.access_key_id and b.role_arn.endswith("/other")
    assert len(prompt.serials) == 1
    assert dict(backend.calls) == {"GetSessionToken": 1, "AssumeRole": 2}


async def test_concurrent_callers_prompt_once_and_call_sts_once(setup, autojump_clock):
    backend, user, resolver, prompt, cache = setup
    results = []

    async def one():
        results.append(await resolver.credentials("dev-role"))

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(one)
    assert len({r.access_key_id for r in results}) == 1 and len(results) == 5
    assert len(prompt.serials) == 1
    assert dict(backend.calls) == {"GetSessionToken": 1, "AssumeRole": 1}


async def test_a_role_longer_than_an_hour_takes_the_code_on_assume_role(setup, autojump_clock, aws_sandbox,
                                                                        wall_clock):
    backend, user, resolver, prompt, cache = setup
    write_profiles(aws_sandbox, user, role_extra="duration_seconds = 7200\n")
    got = await resolver.credentials("dev-role")
    assert dict(backend.calls) == {"AssumeRole": 1} and len(prompt.serials) == 1
    assert got.expiration - wall_clock.now() == dt.timedelta(hours=2)


async def test_plain_keys_get_a_short_session_never_the_keys(setup, autojump_clock, wall_clock):
    backend, user, resolver, prompt, cache = setup
    got = await resolver.credentials("base")
    assert got.access_key_id.startswith("ASIA") and got.access_key_id != user.keys.access_key_id
    assert got.expiration - wall_clock.now() == dt.timedelta(hours=1)
    assert dict(backend.calls) == {"GetSessionToken": 1} and prompt.serials == []
    for path in (SessionCache().directory,):
        for name in os.listdir(path):
            text = open(os.path.join(path, name)).read()
            assert user.keys.secret_access_key not in text
            if name.endswith(".json"):
                assert stat.S_IMODE(os.stat(os.path.join(path, name)).st_mode) == 0o600


async def test_open_role_from_long_term_keys_needs_no_session(setup, autojump_clock):
    backend, user, resolver, prompt, cache = setup
    got = await resolver.credentials("open-role")
    assert got.role_arn.split("/")[1] == "alice-open"
    assert dict(backend.calls) == {"AssumeRole": 1} and prompt.serials == []


async def test_fresh_skips_the_profile_entry_but_reuses_the_session(setup, autojump_clock):
    backend, user, resolver, prompt, cache = setup
    first = await resolver.credentials("dev-role")
    again = await resolver.credentials("dev-role", fresh=True)
    assert again.access_key_id != first.access_key_id and len(prompt.serials) == 1
    assert cache.get(resolver.plan("dev-role").cache_key()) == again


async def test_a_cached_session_needs_no_keyring_read(setup, autojump_clock, wall_clock):
    """Role sessions renewed from a cached MFA session never open the keyring (no unlock prompt storms)."""
    backend, user, resolver, prompt, cache = setup
    keyring = resolver.keystore._backend
    await resolver.credentials("dev-role")
    assert keyring.reads == 1
    for _ in range(3):
        wall_clock.jump(50 * 60)  # each time a new role session, from the 8-hour MFA session
        await resolver.credentials("dev-role")
    assert keyring.reads == 1 and backend.calls["AssumeRole"] == 4 and len(prompt.serials) == 1


async def test_login_reuses_a_valid_session_unless_forced(setup, autojump_clock, wall_clock):
    backend, user, resolver, prompt, cache = setup
    session, creds = await resolver.login("dev-role")
    assert session.kind == "mfa-session" and creds.kind == "profile" and len(prompt.serials) == 1
    wall_clock.jump(30)  # the next TOTP step: codes are single-use
    same, _ = await resolver.login("dev-role")
    assert same.access_key_id == session.access_key_id and len(prompt.serials) == 1
    forced, forced_creds = await resolver.login("dev-role", force=True)
    assert forced.access_key_id != session.access_key_id and len(prompt.serials) == 2
    assert forced_creds.access_key_id != creds.access_key_id
    with pytest.raises(SourceError, match="has no mfa_serial"):
        await resolver.login("open-role")


async def test_a_wrong_code_is_aws_s_refusal_and_nothing_is_cached(setup, autojump_clock, wall_clock):
    backend, user, resolver, prompt, cache = setup

    async def wrong(serial: str) -> str:
        return "000000" if code_at(user.seed, wall_clock.now()) != "000000" else "111111"

    resolver.prompt = wrong
    with pytest.raises(StsError) as info:
        await resolver.credentials("dev-role")
    assert info.value.code == "AccessDenied" and "MultiFactorAuthentication" in info.value.message
    assert list(cache.items()) == []


async def test_missing_keys_say_how_to_add_them(setup, autojump_clock):
    backend, user, resolver, prompt, cache = setup
    await resolver.keystore.delete("base")
    with pytest.raises(ProfileError, match=r"run `rolecall keys add --profile base`"):
        await resolver.credentials("dev-role")


async def test_credential_process_source_with_long_term_output_gets_a_session(setup, autojump_clock, aws_sandbox):
    backend, user, resolver, prompt, cache = setup
    doc = json.dumps({"Version": 1, "AccessKeyId": user.keys.access_key_id,
                      "SecretAccessKey": user.keys.secret_access_key})
    script = aws_sandbox / "creds.py"
    script.write_text(f"print({doc!r})\n")
    config = aws_sandbox / ".aws" / "config"
    config.write_text(config.read_text() + f"[profile proc]\ncredential_process = {sys.executable} {script}\n\n"
                                           f"[profile proc-role]\nrole_arn = {user.open_role}\nsource_profile = proc\n")
    session = await resolver.credentials("proc")
    assert session.access_key_id.startswith("ASIA") and dict(backend.calls) == {"GetSessionToken": 1}
    role = await resolver.credentials("proc-role")
    assert role.role_arn.split("/")[1] == "alice-open" and backend.calls["AssumeRole"] == 1


async def test_credential_process_failures_are_one_line(setup, autojump_clock, aws_sandbox, monkeypatch):
    backend, user, resolver, prompt, cache = setup
    config = aws_sandbox / ".aws" / "config"
    config.write_text(config.read_text() + "[profile broken]\ncredential_process = sh -c 'echo nope >&2; exit 3'\n\n"
                                           "[profile garbage]\ncredential_process = echo not-json\n\n"
                                           "[profile stringy]\ncredential_process = echo '{\"Version\": \"1\"}'\n")
    with pytest.raises(SourceError, match=r"failed \(exit status 3\): nope$"):
        await resolver.credentials("broken")
    with pytest.raises(SourceError, match="not JSON"):
        await resolver.credentials("garbage")
    with pytest.raises(SourceError, match="must be the integer 1"):
        await resolver.credentials("stringy")
    monkeypatch.setenv("ROLECALL_PROFILE_CHAIN", "dev,broken")
    with pytest.raises(SourceError, match="credential_process loop: dev -> broken -> broken"):
        await resolver.credentials("broken")


async def _session_of(backend, user, clock):
    from agent.sts_client import StsClient

    async with StsClient(backend.url, "us-east-1", clock=clock) as sts:
        return await sts.get_session_token(user.keys.credentials(), duration_seconds=3600)


async def test_container_credential_source(setup, autojump_clock, aws_sandbox, monkeypatch, nursery, wall_clock):
    backend, user, resolver, prompt, cache = setup
    got = await _session_of(backend, user, wall_clock)
    holder = SimpleHolder(RoleCredentials("session", got.access_key_id, got.secret_access_key, got.session_token,
                                          got.expiration, wall_clock.now()))
    token = write_token_file(aws_sandbox / "token")
    server = await start_server(nursery, ContainerHandler(holder, token, wall_clock, path="/creds"))
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", server.url + "/creds")
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", str(aws_sandbox / "token"))
    config = aws_sandbox / ".aws" / "config"
    config.write_text(config.read_text() + f"[profile ecs]\nrole_arn = {user.open_role}\n"
                                           "credential_source = EcsContainer\n")
    backend.calls.clear()
    role = await resolver.credentials("ecs")
    assert role.role_arn.split("/")[1] == "alice-open" and dict(backend.calls) == {"AssumeRole": 1}
    (aws_sandbox / "token").write_text("x" * 43)
    cache.clear()
    with pytest.raises(SourceError, match=r"HTTP 403 from http://127\.0\.0\.1:\d+/creds"):
        await resolver.credentials("ecs")
    huge = await start_server(nursery, lambda req: HttpResponse(200, (("Content-Type", "application/json"),),
                                                                b" " * 100_000 + b"{}"))
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", huge.url + "/creds")
    with pytest.raises(SourceError, match="larger than 65536 bytes"):  # never held whole
        await resolver.credentials("ecs")


async def test_instance_metadata_credential_source(setup, autojump_clock, aws_sandbox, monkeypatch, nursery,
                                                   wall_clock):
    backend, user, resolver, prompt, cache = setup
    got = await _session_of(backend, user, wall_clock)
    holder = SimpleHolder(RoleCredentials("host", got.access_key_id, got.secret_access_key, got.session_token,
                                          got.expiration, wall_clock.now()))
    server = await start_server(nursery, ImdsHandler(MetadataConfig(listen=("127.0.0.1:0",)), holder, wall_clock))
    config = aws_sandbox / ".aws" / "config"
    config.write_text(config.read_text() + f"[profile ec2]\nrole_arn = {user.open_role}\n"
                                           "credential_source = Ec2InstanceMetadata\n")
    with pytest.raises(SourceError, match="disabled"):  # the suite's AWS_EC2_METADATA_DISABLED=true is honoured
        await resolver.credentials("ec2")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "false")
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", server.url)
    # the IMDS handler checks Host against its listen addresses: serve the port it really got
    server.server.handler = ImdsHandler(MetadataConfig(listen=(server.addresses[0],)), holder, wall_clock)
    backend.calls.clear()
    role = await resolver.credentials("ec2")
    assert role.role_arn.split("/")[1] == "alice-open" and dict(backend.calls) == {"AssumeRole": 1}


async def test_environment_credential_source(setup, autojump_clock, aws_sandbox, monkeypatch):
    backend, user, resolver, prompt, cache = setup
    config = aws_sandbox / ".aws" / "config"
    config.write_text(config.read_text() + f"[profile envy]\nrole_arn = {user.open_role}\n"
                                           "credential_source = Environment\n")
    with pytest.raises(SourceError, match="needs AWS_ACCESS_KEY_ID"):
        await resolver.credentials("envy")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", user.keys.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", user.keys.secret_access_key)
    assert (await resolver.credentials("envy")).role_arn.split("/")[1] == "alice-open"


async def test_no_way_to_prompt_says_to_run_mfa_login(setup, autojump_clock, monkeypatch):
    backend, user, resolver, prompt, cache = setup
    monkeypatch.setattr("agent.mfa_prompt.has_terminal", lambda: False)
    monkeypatch.delenv("DISPLAY", raising=False)
    resolver.prompt = None
    with pytest.raises(MfaError, match=r"run `rolecall mfa login --profile dev-role` in a terminal first"):
        await resolver.credentials("dev-role")
    assert backend.calls["GetSessionToken"] == 0

"""agent.sources: the agent's own identity, and the one STS call each kind makes.

Files live in tmp_path; the environment is a plain dict. ``fetch_role_credentials``
runs against a recording stand-in for ``StsClient`` (the real client is tested
against the real backend in tests/test_sts_client.py).
"""

from __future__ import annotations

import pytest

from agent.config import parse_config
from agent.config_types import RoleConfig, SourceConfig
from agent.errors import SourceError
from agent.sources import (MAX_SECRET_FILE, CredentialSource, EnvSource, FileSecretSource, StaticSource,
                           WebIdentitySource, fetch_role_credentials, read_secret_file, read_token_file,
                           source_from_config)
from wire.sigv4 import Credentials

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
ROTATED = "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ3ZWIifQ.c2lnbmF0dXJl"
KEY_ID = "AKIAIOSFODNN7EXAMPLE"


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text and ROTATED not in text and TOKEN not in text


# ---- static -------------------------------------------------------------------------------------


async def test_static_source():
    source = StaticSource(KEY_ID, SECRET)
    assert await source.get() == Credentials(KEY_ID, SECRET)
    source.reload()
    assert await source.get() == Credentials(KEY_ID, SECRET)
    assert isinstance(source, CredentialSource)
    assert source.description == f"static key {KEY_ID}"
    assert_no_secret(repr(source), source.description)


# ---- secret file ----------------------------------------------------------------------------------


async def test_file_secret_read_at_start_and_on_reload(tmp_path):
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")
    source = FileSecretSource(KEY_ID, str(path))
    assert await source.get() == Credentials(KEY_ID, SECRET)
    path.write_text(ROTATED + "\r\n")
    assert (await source.get()).secret_access_key == SECRET     # not re-read until reload
    source.reload()
    assert await source.get() == Credentials(KEY_ID, ROTATED)
    assert isinstance(source, CredentialSource)
    assert_no_secret(repr(source), source.description)
    assert source.description == f"key {KEY_ID} with its secret in {path}"


async def test_failed_reload_keeps_the_previous_secret(tmp_path):
    path = tmp_path / "secret"
    path.write_text(SECRET)
    source = FileSecretSource(KEY_ID, str(path))
    path.write_text("")
    with pytest.raises(SourceError, match="is empty"):
        source.reload()
    path.unlink()
    with pytest.raises(SourceError) as info:
        source.reload()
    assert str(info.value) == f"cannot read {path}: No such file or directory"
    assert (await source.get()).secret_access_key == SECRET


def test_file_secret_unusable_at_start(tmp_path):
    with pytest.raises(SourceError, match="No such file"):
        FileSecretSource(KEY_ID, str(tmp_path / "missing"))


@pytest.mark.parametrize("content, reason", [
    (b"", "{path} is empty"),
    (b"  \n\n", "{path} is empty"),
    (f"{SECRET} {SECRET}".encode(), "{path} must hold one secret key: printable ASCII without spaces"),
    (f"{SECRET}\x00".encode(), "{path} must hold one secret key: printable ASCII without spaces"),
    (b"\xff" + SECRET.encode(), "{path} is not UTF-8 text"),
    (SECRET.encode() * 200, "{path} is larger than 4096 bytes"),
])
def test_read_secret_file_refusals(tmp_path, content, reason):
    path = tmp_path / "secret"
    path.write_bytes(content)
    with pytest.raises(SourceError) as info:
        read_secret_file(str(path))
    assert str(info.value) == reason.format(path=path)
    assert_no_secret(str(info.value))


def test_read_secret_file_limits(tmp_path):
    path = tmp_path / "secret"
    path.write_bytes(b"k" * MAX_SECRET_FILE)
    with pytest.raises(SourceError, match="printable ASCII"):   # 4096 fits the file limit, not a key's
        read_secret_file(str(path))
    path.write_text(f"\n  {SECRET}  \n")
    assert read_secret_file(str(path)) == SECRET


def test_unreadable_file(tmp_path):
    with pytest.raises(SourceError) as info:
        read_secret_file(str(tmp_path))     # a directory
    assert str(info.value) == f"cannot read {tmp_path}: Is a directory"


# ---- environment ----------------------------------------------------------------------------------


async def test_env_source_reads_at_start():
    environ = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET}
    source = EnvSource(environ)
    environ["AWS_SECRET_ACCESS_KEY"] = ROTATED
    assert await source.get() == Credentials(KEY_ID, SECRET)
    source.reload()
    assert await source.get() == Credentials(KEY_ID, ROTATED)
    assert source.description == f"environment key {KEY_ID}"
    assert_no_secret(repr(source))


async def test_env_source_with_session_token():
    source = EnvSource({"AWS_ACCESS_KEY_ID": "ASIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": SECRET,
                        "AWS_SESSION_TOKEN": TOKEN})
    assert await source.get() == Credentials("ASIAEXAMPLE", SECRET, TOKEN)
    assert_no_secret(repr(source))
    empty_token = EnvSource({"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_SESSION_TOKEN": ""})
    assert (await empty_token.get()).session_token is None


@pytest.mark.parametrize("environ", [{}, {"AWS_ACCESS_KEY_ID": KEY_ID}, {"AWS_SECRET_ACCESS_KEY": SECRET},
                                     {"AWS_ACCESS_KEY_ID": " ", "AWS_SECRET_ACCESS_KEY": SECRET}])
def test_env_source_missing(environ):
    with pytest.raises(SourceError) as info:
        EnvSource(environ)
    assert str(info.value) == ("[source] env = true needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                               "in the agent's environment")


async def test_env_source_failed_reload_keeps_keys():
    environ = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET}
    source = EnvSource(environ)
    del environ["AWS_SECRET_ACCESS_KEY"]
    with pytest.raises(SourceError):
        source.reload()
    assert await source.get() == Credentials(KEY_ID, SECRET)


async def test_env_source_defaults_to_the_process_environment(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    assert await EnvSource().get() == Credentials(KEY_ID, SECRET)


# ---- web identity -------------------------------------------------------------------------------


async def test_web_identity_token_read_on_every_call(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    source = WebIdentitySource(str(path))
    assert await source.token() == TOKEN
    path.write_text("eyJuZXc.eyJ0b2tlbg.sig")
    assert await source.token() == "eyJuZXc.eyJ0b2tlbg.sig"
    path.unlink()
    with pytest.raises(SourceError, match="No such file"):
        await source.token()
    assert not isinstance(source, CredentialSource)     # it signs nothing
    assert repr(source) == f"WebIdentitySource({str(path)!r})"


@pytest.mark.parametrize("content, reason", [
    ("", "{path} is empty"),
    ("abc", "{path} must hold one token of 4-20000 printable ASCII characters"),
    ("two tokens", "{path} must hold one token of 4-20000 printable ASCII characters"),
    ("t" * 20001, "{path} must hold one token of 4-20000 printable ASCII characters"),
    ("t" * 30000, "{path} is larger than 20002 bytes"),
])
def test_read_token_file_refusals(tmp_path, content, reason):
    path = tmp_path / "token"
    path.write_text(content)
    with pytest.raises(SourceError) as info:
        read_token_file(str(path))
    assert str(info.value) == reason.format(path=path)


def test_read_token_file_longest(tmp_path):
    path = tmp_path / "token"
    path.write_text("t" * 20000 + "\r\n")
    assert read_token_file(str(path)) == "t" * 20000


# ---- from config ---------------------------------------------------------------------------------


def config_for(source_lines: str, tmp_path, environ=None):
    text = f"""
[sts]
endpoint_url = "http://127.0.0.1:8900"
[source]
{source_lines}
[role]
arn = "arn:aws:iam::123456789012:role/app"
"""
    return parse_config(text, str(tmp_path / "agent.toml"), environ=environ or {}, uid=1000, hostname="h1")


async def test_source_from_config_each_kind(tmp_path):
    (tmp_path / "secret").write_text(SECRET)
    (tmp_path / "token").write_text(TOKEN)
    static = source_from_config(config_for(f'access_key_id = "{KEY_ID}"\nsecret_access_key = "{SECRET}"',
                                           tmp_path).source)
    assert isinstance(static, StaticSource) and await static.get() == Credentials(KEY_ID, SECRET)
    from_file = source_from_config(config_for(f'access_key_id = "{KEY_ID}"\nsecret_access_key_file = "secret"',
                                              tmp_path).source)
    assert isinstance(from_file, FileSecretSource) and from_file.path == str(tmp_path / "secret")
    env = source_from_config(config_for("env = true", tmp_path).source,
                             environ={"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET})
    assert isinstance(env, EnvSource) and await env.get() == Credentials(KEY_ID, SECRET)
    web = source_from_config(config_for('web_identity_token_file = "token"', tmp_path).source)
    assert isinstance(web, WebIdentitySource) and await web.token() == TOKEN


def test_source_from_config_when_the_file_went_away(tmp_path):
    (tmp_path / "secret").write_text(SECRET)
    config = config_for(f'access_key_id = "{KEY_ID}"\nsecret_access_key_file = "secret"', tmp_path)
    (tmp_path / "secret").unlink()
    with pytest.raises(SourceError, match="No such file"):
        source_from_config(config.source)
    with pytest.raises(ValueError):
        source_from_config(SourceConfig("keyring"))  # type: ignore[arg-type]


# ---- fetch_role_credentials: which call, with what -----------------------------------------------


class RecordingClient:
    """Stands in for StsClient: records the call, returns a marker."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple, dict]] = []

    async def assume_role(self, *args, **kwargs):
        self.calls.append(("assume_role", args, kwargs))
        return "role-credentials"

    async def assume_role_with_web_identity(self, *args, **kwargs):
        self.calls.append(("assume_role_with_web_identity", args, kwargs))
        return "web-credentials"


ROLE = RoleConfig(arn="arn:aws:iam::123456789012:role/app", session_name="web-1", duration_seconds=7200,
                  external_id="ext-1", policy='{"Version":"2012-10-17","Statement":[]}',
                  policy_arns=("arn:aws:iam::aws:policy/ReadOnlyAccess",), tags=(("team", "blue"),),
                  source_identity="alice")


async def test_fetch_with_a_signing_source():
    client = RecordingClient()
    assert await fetch_role_credentials(client, StaticSource(KEY_ID, SECRET), ROLE) == "role-credentials"
    assert client.calls == [("assume_role", (Credentials(KEY_ID, SECRET), ROLE.arn, "web-1"), {
        "external_id": "ext-1", "tags": (("team", "blue"),), "source_identity": "alice", "duration_seconds": 7200,
        "policy": ROLE.policy, "policy_arns": ("arn:aws:iam::aws:policy/ReadOnlyAccess",)})]


async def test_fetch_with_web_identity_reads_the_token_each_time(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN)
    client, source = RecordingClient(), WebIdentitySource(str(path))
    role = RoleConfig(arn=ROLE.arn, session_name="web-1")
    assert await fetch_role_credentials(client, source, role) == "web-credentials"
    path.write_text("eyJuZXc.eyJ0b2tlbg.sig")
    await fetch_role_credentials(client, source, role)
    assert [call[1][2] for call in client.calls] == [TOKEN, "eyJuZXc.eyJ0b2tlbg.sig"]
    assert client.calls[0] == ("assume_role_with_web_identity", (ROLE.arn, "web-1", TOKEN),
                               {"duration_seconds": 3600, "policy": None, "policy_arns": ()})

"""agent.config: every key of design.md's TOML, every refusal as one exact line.

Pure: ``parse_config`` on text, with the environment, uid and hostname passed
in. The few file reads (secret and token files, the CA bundle, the file itself
through ``load_config``) use tmp_path.
"""

from __future__ import annotations

import logging
import os

import certifi
import pytest

from agent.config import load_config, parse_config
from agent.config_types import AgentConfig, default_control_socket, default_session_name
from agent.errors import ConfigError
from metadata_server.config import ContainerConfig, MetadataConfig

PATH = "/etc/rolecall/agent.toml"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
ROLE = "arn:aws:iam::123456789012:role/app"
SOURCES = ("access_key_id with secret_access_key or secret_access_key_file, env = true, keyring, profile, "
           "or web_identity_token_file")
LEAD_3300 = "must be an integer from 600 to 3300 (botocore refreshes by itself in the last 10 minutes)"
DEFAULTS = {
    "sts": {"endpoint_url": '"http://127.0.0.1:8900"'},
    "source": {"access_key_id": '"AKIAIOSFODNN7EXAMPLE"', "secret_access_key": f'"{SECRET}"'},
    "role": {"arn": f'"{ROLE}"'},
}


def toml(**changes: dict | None) -> str:
    """DEFAULTS with ``changes``: a section set to None is dropped, a key set to None removed.

    Values are TOML literals (``'"text"'``, ``"3600"``, ``"[1, 2]"``).
    """
    sections = {name: dict(table) for name, table in DEFAULTS.items()}
    for name, table in changes.items():
        if table is None:
            sections.pop(name, None)
            continue
        target = sections.setdefault(name, {})
        for key, value in table.items():
            if value is None:
                target.pop(key, None)
            else:
                target[key] = value
    lines = []
    for name, table in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {value}" for key, value in table.items())
    return "\n".join(lines) + "\n"


def parse(text: str, environ=None, uid: int = 1000, hostname: str = "web-1", path: str = PATH) -> AgentConfig:
    return parse_config(text, path, environ={} if environ is None else environ, uid=uid, hostname=hostname)


def refusal(text: str, **kwargs) -> str:
    """The one-line ConfigError message for ``text``; never holding the secret."""
    with pytest.raises(ConfigError) as info:
        parse(text, **kwargs)
    message = str(info.value)
    assert "\n" not in message and SECRET not in message
    assert message.startswith(f"{kwargs.get('path', PATH)}: ")
    return message


def q(text: str) -> str:
    return f'"{text}"'


# ---- what a good file gives -------------------------------------------------------------------


def test_minimal_file_and_defaults():
    config = parse(toml())
    assert config.path == PATH
    assert config.sts.endpoint_url == "http://127.0.0.1:8900"
    assert config.sts.region == "us-east-1" and config.sts.timeout_seconds == 10.0 and config.sts.ca_bundle is None
    assert config.source.kind == "static" and config.source.access_key_id == "AKIAIOSFODNN7EXAMPLE"
    assert config.source.secret_access_key == SECRET
    role = config.role
    assert (role.arn, role.session_name, role.duration_seconds) == (ROLE, "web-1", 3600)
    assert (role.external_id, role.policy, role.policy_arns, role.tags, role.source_identity,
            role.refresh_before_expiry_seconds) == (None, None, (), (), None, None)
    assert (role.role_name, role.account_id) == ("app", "123456789012")
    assert config.metadata == MetadataConfig(region="us-east-1")
    assert config.container is None
    assert config.control_socket == "/run/rolecall/agent.sock"


def test_every_key(tmp_path):
    token = tmp_path / "container-token"
    text = f"""
[sts]
endpoint_url = "https://sts.example.test:8443/base"
region = "eu-west-1"
timeout_seconds = 2.5
ca_bundle = "{certifi.where()}"

[source]
access_key_id = "AKIAIOSFODNN7EXAMPLE"
secret_access_key = "{SECRET}"

[role]
arn = "arn:aws:iam::123456789012:role/team/app"
session_name = "web-1@example.com"
duration_seconds = 7200
external_id = "ext-123"
policy = '{{"Version": "2012-10-17", "Statement": []}}'
policy_arns = ["arn:aws:iam::aws:policy/ReadOnlyAccess", "arn:aws:iam::123456789012:policy/mine"]
tags = {{ team = "blue", "cost center" = "42" }}
source_identity = "alice"
refresh_before_expiry_seconds = 1800

[metadata]
listen = ["127.0.0.1:8169", "[::1]:0"]
tokens = "optional"
hop_limit = 2
allowed_hosts = ["169.254.169.254", "metadata.local:8169"]
allowed_peers = ["172.17.0.0/16"]
region = "eu-west-1"
availability_zone = "eu-west-1b"
instance_id = "i-0123456789abcdef0"

[container]
listen = "127.0.0.1:0"
token_file = "{token}"

[agent]
control_socket = "/run/user/1000/agent.sock"
"""
    config = parse(text)
    assert config.sts.endpoint_url == "https://sts.example.test:8443/base"
    assert (config.sts.region, config.sts.timeout_seconds, config.sts.ca_bundle) == ("eu-west-1", 2.5, certifi.where())
    role = config.role
    assert (role.role_name, role.session_name, role.duration_seconds) == ("app", "web-1@example.com", 7200)
    assert role.external_id == "ext-123" and role.policy.startswith('{"Version"')
    assert role.policy_arns == ("arn:aws:iam::aws:policy/ReadOnlyAccess", "arn:aws:iam::123456789012:policy/mine")
    assert role.tags == (("team", "blue"), ("cost center", "42"))
    assert (role.source_identity, role.refresh_before_expiry_seconds) == ("alice", 1800)
    assert config.metadata == MetadataConfig(
        listen=("127.0.0.1:8169", "[::1]:0"), tokens="optional", hop_limit=2,
        allowed_hosts=("169.254.169.254", "metadata.local:8169"), allowed_peers=("172.17.0.0/16",),
        region="eu-west-1", availability_zone="eu-west-1b", instance_id="i-0123456789abcdef0")
    assert config.container == ContainerConfig(listen=("127.0.0.1:0",), token_file=str(token))
    assert config.control_socket == "/run/user/1000/agent.sock"


def test_aws_global_selects_the_global_endpoint():
    config = parse(toml(sts={"endpoint_url": None, "region": q("aws-global")}))
    assert (config.sts.endpoint_url, config.sts.region, config.sts.global_endpoint) == (None, "aws-global", True)
    assert config.metadata.region == "us-east-1"  # not an instance's region: [metadata] keeps its default
    regional = parse(toml(sts={"endpoint_url": None, "region": q("eu-west-1")}))
    assert regional.sts.global_endpoint is False


def test_refresh_before_expiry_bounds_match_what_rotation_honours():
    from agent.rotation import MIN_EXPLICIT_LEAD

    assert parse(toml(role={"refresh_before_expiry_seconds": "600"})).role.refresh_before_expiry_seconds == 600
    assert MIN_EXPLICIT_LEAD.total_seconds() == 600
    assert parse(toml(role={"duration_seconds": "900", "refresh_before_expiry_seconds": "600"})).role.duration_seconds \
        == 900


def test_region_rules():
    assert parse(toml(sts={"region": q("local")})).sts.region == "local"    # any signing region with endpoint_url
    assert parse(toml(sts={"region": q("local")})).metadata.region == "us-east-1"
    aws = parse(toml(sts={"endpoint_url": None, "region": q("eu-central-1")}))
    assert (aws.sts.endpoint_url, aws.sts.region, aws.metadata.region) == (None, "eu-central-1", "eu-central-1")
    # [metadata] present without region: still the STS region; a zone checks against it
    config = parse(toml(sts={"region": q("ap-south-1")}, metadata={"availability_zone": q("ap-south-1c")}))
    assert (config.metadata.region, config.metadata.availability_zone) == ("ap-south-1", "ap-south-1c")


def test_empty_container_section_enables_defaults():
    assert parse(toml(container={})).container == ContainerConfig()


def test_integer_timeout_and_listen_as_one_string():
    config = parse(toml(sts={"timeout_seconds": "3"}, metadata={"listen": q("127.0.0.1:0")}))
    assert config.sts.timeout_seconds == 3.0 and config.metadata.listen == ("127.0.0.1:0",)


@pytest.mark.parametrize("hostname, expected", [
    ("web-1", "web-1"),
    ("web 1.example.com", "web-1.example.com"),
    ("x", "rolecall-agent"),
    ("", "rolecall-agent"),
    ("h" * 100, "h" * 64),
    ("café", "caf-"),
])
def test_default_session_name(hostname, expected):
    assert default_session_name(hostname) == expected
    assert parse(toml(), hostname=hostname).role.session_name == expected


@pytest.mark.parametrize("environ, uid, expected", [
    ({"ROLECALL_AGENT_SOCKET": "/tmp/x.sock", "XDG_RUNTIME_DIR": "/run/user/1000"}, 1000, "/tmp/x.sock"),
    ({"ROLECALL_AGENT_SOCKET": "/tmp/x.sock"}, 0, "/tmp/x.sock"),
    ({"XDG_RUNTIME_DIR": "/run/user/1000"}, 1000, "/run/user/1000/rolecall/agent.sock"),
    ({"XDG_RUNTIME_DIR": "/run/user/0"}, 0, "/run/rolecall/agent.sock"),
    ({}, 1000, "/run/rolecall/agent.sock"),
    ({"ROLECALL_AGENT_SOCKET": ""}, 0, "/run/rolecall/agent.sock"),
])
def test_default_control_socket(environ, uid, expected):
    assert default_control_socket(environ, uid) == expected
    assert parse(toml(), environ=environ, uid=uid).control_socket == expected


def test_configured_control_socket_wins():
    config = parse(toml(agent={"control_socket": q("/srv/agent.sock")}), environ={"ROLECALL_AGENT_SOCKET": "/x"})
    assert config.control_socket == "/srv/agent.sock"


def test_metrics_listen_is_off_by_default_and_loopback_unless_allowed():
    assert parse(toml()).metrics_listen is None
    assert parse(toml(agent={"metrics_listen": q("127.0.0.1:9100")})).metrics_listen == "127.0.0.1:9100"
    assert parse(toml(agent={"metrics_listen": q("[::1]:0")})).metrics_listen == "[::1]:0"
    assert refusal(toml(agent={"metrics_listen": q("0.0.0.0:9100")})) == (
        f"{PATH}: [agent] metrics_listen: metrics address 0.0.0.0:9100 is not loopback: anyone who reaches it reads "
        "what this process serves and when (bind 127.0.0.1, or set metrics_allow_remote = true)")
    allowed = parse(toml(agent={"metrics_listen": q("0.0.0.0:9100"), "metrics_allow_remote": "true"}))
    assert allowed.metrics_listen == "0.0.0.0:9100"
    assert "metrics_listen: listen address '9100' is not HOST:PORT" in refusal(
        toml(agent={"metrics_listen": q("9100")}))
    assert refusal(toml(agent={"metrics_listen": q("127.0.0.1:1"), "metrics_allow_remote": q("yes")})) == (
        f"{PATH}: [agent] metrics_allow_remote: must be true or false")
    assert refusal(toml(agent={"metrics_listen": "9100"})).endswith("[agent] metrics_listen: must be a string")


# ---- sources --------------------------------------------------------------------------------


def file_source(name: str) -> dict:
    return {"secret_access_key": None, "secret_access_key_file": q(name)}


def test_secret_file_relative_to_credentials_directory(tmp_path):
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "aws-secret").write_text(SECRET + "\n")
    config = parse(toml(source=file_source("aws-secret")), environ={"CREDENTIALS_DIRECTORY": str(creds)})
    assert config.source.kind == "file"
    assert config.source.secret_access_key_file == str(creds / "aws-secret")
    assert config.source.secret_access_key is None      # read by the source, at start and on reload


def test_secret_file_relative_to_the_config_without_credentials_directory(tmp_path):
    (tmp_path / "secret").write_text(SECRET)
    config = parse(toml(source=file_source("secret")), path=str(tmp_path / "agent.toml"))
    assert config.source.secret_access_key_file == str(tmp_path / "secret")


def test_absolute_secret_file_ignores_credentials_directory(tmp_path):
    (tmp_path / "secret").write_text(SECRET)
    config = parse(toml(source=file_source(str(tmp_path / "secret"))), environ={"CREDENTIALS_DIRECTORY": "/nope"})
    assert config.source.secret_access_key_file == str(tmp_path / "secret")


def test_env_and_web_identity_sources(tmp_path):
    env = parse(toml(source={"access_key_id": None, "secret_access_key": None, "env": "true"}))
    assert env.source.kind == "env" and env.source.access_key_id is None
    (tmp_path / "token").write_text("eyJhbGciOi.payload.sig\n")
    web = parse(toml(source={"access_key_id": None, "secret_access_key": None, "web_identity_token_file": q("token")}),
                environ={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert web.source.kind == "web_identity" and web.source.web_identity_token_file == str(tmp_path / "token")


def test_plain_http_off_loopback_needs_insecure_http():
    assert parse(toml(sts={"endpoint_url": q("http://10.0.0.5:8900"), "insecure_http": "true"})).sts.endpoint_url \
        == "http://10.0.0.5:8900"
    for url in ("http://127.0.0.1:8900", "http://localhost:8900", "http://[::1]:8900", "https://sts.example.test"):
        assert parse(toml(sts={"endpoint_url": q(url)})).sts.endpoint_url == url


def test_keyring_profile_and_mfa_sources():
    keys = {"access_key_id": None, "secret_access_key": None}
    ring = parse(toml(source={**keys, "keyring": q("rolecall/web-1")}))
    assert (ring.source.kind, ring.source.keyring, ring.source.mfa_serial) == ("keyring", "rolecall/web-1", None)
    serial = "arn:aws:iam::123456789012:mfa/alice"
    prof = parse(toml(source={**keys, "profile": q("ops"), "mfa_serial": q(serial)}))
    assert (prof.source.kind, prof.source.profile, prof.source.mfa_serial) == ("profile", "ops", serial)
    static = parse(toml(source={"mfa_serial": q(serial)}, role={"duration_seconds": "3600"}))
    assert static.source.kind == "static" and static.source.mfa_serial == serial


# ---- refusals: one line each, naming file, key and reason -------------------------------------


def where(key: str, reason: str) -> str:
    return f"{PATH}: {key}: {reason}"


KNOWN = "known sections: sts, source, role, metadata, container, agent, roles"
NEED_AKID = "needs secret_access_key or secret_access_key_file"
ARN_FORM = "must be a role ARN such as arn:aws:iam::123456789012:role/NAME"
SESSION = "must be 2-64 characters of letters, digits and +=,.@_- ({hostname} stands for the host's name)"
DURATION = "must be an integer from 900 to 43200"
TIMEOUT = "must be a number of seconds above 0 and at most 300"
POLICY_CHARS = "must be 1-2048 characters of tab, newline, CR and U+0020-U+00FF"
TAG_KEY = "must be 1-128 letters, digits, spaces or _.:/=+-@"
NO_KEYS = {"access_key_id": None, "secret_access_key": None}
MFA_CHAIN = ("must be at most 3600 with [source] mfa_serial: the role is assumed from the MFA session, "
             "and STS caps such role chaining at one hour")
WEB_ONLY = "not used with web_identity_token_file (AssumeRoleWithWebIdentity takes it from the token)"

CASES = [
    # sections and keys
    (toml() + "[foo]\nx = 1\n", where("[foo]", f"unknown section; {KNOWN}")),
    ("debug = true\n" + toml(), where("debug", f"unknown key (keys belong in a section); {KNOWN}")),
    ("sts = 1\n" + toml(sts=None), where("[sts]", "must be a table")),
    (toml(sts={"endpoint": q("http://x")}), where("[sts] endpoint", "unknown key")),
    (toml(role={"session_token": q("x")}), where("[role] session_token", "unknown key")),
    (toml(source={"session_token": q("x")}), where("[source] session_token", "unknown key")),
    # [sts]
    (toml(sts={"endpoint_url": "5"}), where("[sts] endpoint_url", "must be a string")),
    (toml(sts={"endpoint_url": q("ftp://sts.example.test")}),
     where("[sts] endpoint_url", "must be an http:// or https:// URL with a host")),
    (toml(sts={"endpoint_url": q("http://")}), where("[sts] endpoint_url", "must be an http:// or https:// URL with a host")),
    (toml(sts={"endpoint_url": q("http://u:p@127.0.0.1")}),
     where("[sts] endpoint_url", "must not hold a user name or password")),
    (toml(sts={"endpoint_url": q("http://127.0.0.1/?x=1")}),
     where("[sts] endpoint_url", "must not have a query string or fragment")),
    (toml(sts={"endpoint_url": q("http://127.0.0.1:99999")}), where("[sts] endpoint_url", "is not a URL")),
    (toml(sts=None), where("[sts] region", "required when endpoint_url is omitted (it picks sts.REGION.amazonaws.com)")),
    (toml(sts={"endpoint_url": None, "region": q("local")}),
     where("[sts] region", "must be an AWS region such as eu-west-1 (or aws-global for sts.amazonaws.com) "
                           "when endpoint_url is omitted")),
    (toml(sts={"region": q("us east")}), where("[sts] region", "must be a region name such as us-east-1")),
    (toml(sts={"region": "1"}), where("[sts] region", "must be a string")),
    (toml(sts={"endpoint_url": q("http://sts.example.test:8900")}),
     where("[sts] endpoint_url", "plain http:// to a host off this machine would send the agent's keys' signatures "
                                 "and the role's secrets in clear: use https://, or set insecure_http = true")),
    (toml(sts={"insecure_http": q("yes")}), where("[sts] insecure_http", "must be true or false")),
    (toml(sts={"timeout_seconds": "0"}), where("[sts] timeout_seconds", TIMEOUT)),
    (toml(sts={"timeout_seconds": "301"}), where("[sts] timeout_seconds", TIMEOUT)),
    (toml(sts={"timeout_seconds": "true"}), where("[sts] timeout_seconds", TIMEOUT)),
    (toml(sts={"timeout_seconds": q("5")}), where("[sts] timeout_seconds", TIMEOUT)),
    (toml(sts={"ca_bundle": q("/nonexistent/ca.pem")}),
     where("[sts] ca_bundle", "cannot load /nonexistent/ca.pem: No such file or directory")),
    (toml(sts={"ca_bundle": q("")}), where("[sts] ca_bundle", "must not be empty")),
    # [source]
    (toml(source=None), where("[source]", f"missing section: give one credential source: {SOURCES}")),
    (toml(source={"access_key_id": None, "secret_access_key": None}),
     where("[source]", f"give one credential source: {SOURCES}")),
    (toml(source={"keyring": q("rolecall/web-1")}),
     where("[source] keyring", "conflicts with secret_access_key: give exactly one credential source")),
    (toml(source={**NO_KEYS, "keyring": q("a/b/c")}),
     where("[source] keyring", "must be a keyring entry name: NAME or SERVICE/NAME")),
    (toml(source={**NO_KEYS, "profile": q("ops"), "keyring": q("ops")}),
     where("[source] profile", "conflicts with keyring: give exactly one credential source")),
    (toml(source={**NO_KEYS, "profile": q("my profile")}),
     where("[source] profile", "must be a profile name of ~/.aws/config")),
    (toml(source={"mfa_serial": q("mfa")}),
     where("[source] mfa_serial", "must be an MFA device's serial, e.g. arn:aws:iam::123456789012:mfa/NAME")),
    (toml(source={"mfa_serial": q("arn:aws:iam::123456789012:mfa/me")}, role={"duration_seconds": "7200"}),
     where("[role] duration_seconds", MFA_CHAIN)),
    (toml(source={"env": "true"}),
     where("[source] env", "conflicts with secret_access_key: give exactly one credential source")),
    (toml(source={"secret_access_key": None, "env": "true", "web_identity_token_file": q("/t")}),
     where("[source] web_identity_token_file", "conflicts with env: give exactly one credential source")),
    (toml(source={"secret_access_key": None}), where("[source] access_key_id", NEED_AKID)),
    (toml(source={"access_key_id": None}), where("[source] secret_access_key", "needs access_key_id")),
    (toml(source={"secret_access_key": None, "secret_access_key_file": q("/s")}),
     where("[source] secret_access_key_file", "cannot read /s: No such file or directory")),
    (toml(source={"access_key_id": None, "secret_access_key_file": q("/s"), "secret_access_key": None}),
     where("[source] secret_access_key_file", "needs access_key_id")),
    (toml(source={"secret_access_key": None, "env": "true"}),
     where("[source] access_key_id", "goes only with secret_access_key or secret_access_key_file")),
    (toml(source={"access_key_id": None, "secret_access_key": None, "env": "false"}),
     where("[source] env", "must be true (leave it out otherwise)")),
    (toml(source={"access_key_id": None, "secret_access_key": None, "env": q("yes")}),
     where("[source] env", "must be true (leave it out otherwise)")),
    (toml(source={"access_key_id": q("AKIA IOSF")}),
     where("[source] access_key_id", "must be 3-128 letters, digits or underscores")),
    (toml(source={"access_key_id": "12"}), where("[source] access_key_id", "must be a string")),
    (toml(source={"secret_access_key": q("")}),
     where("[source] secret_access_key", "must be a non-empty string of printable ASCII without spaces")),
    (toml(source={"secret_access_key": q(SECRET + " x")}),
     where("[source] secret_access_key", "must be a non-empty string of printable ASCII without spaces")),
    (toml(source={"secret_access_key": "42"}),
     where("[source] secret_access_key", "must be a non-empty string of printable ASCII without spaces")),
    (toml(source={"access_key_id": None, "secret_access_key": None, "web_identity_token_file": q("/t")}),
     where("[source] web_identity_token_file", "cannot read /t: No such file or directory")),
    (toml(source={"access_key_id": None, "secret_access_key": None, "web_identity_token_file": q("")}),
     where("[source] web_identity_token_file", "must be a non-empty path")),
    # [role]
    (toml(role=None), where("[role]", 'missing section: the agent needs the role it serves (arn = "arn:aws:iam::...")')),
    (toml(role={"arn": None, "session_name": q("web-1")}), where("[role] arn", "required")),
    (toml(role={"arn": q("app")}), where("[role] arn", ARN_FORM)),
    (toml(role={"arn": q("arn:aws:iam::123456789012:user/app")}), where("[role] arn", ARN_FORM)),
    (toml(role={"arn": q("arn:aws:iam::12345678901:role/app")}), where("[role] arn", ARN_FORM)),
    (toml(role={"arn": q("arn:aws:iam::123456789012:role/bad name")}), where("[role] arn", ARN_FORM)),
    (toml(role={"arn": q("arn:aws:iam::123456789012:role/" + "r" * 65)}), where("[role] arn", ARN_FORM)),
    (toml(role={"arn": "1"}), where("[role] arn", "must be a string")),
    (toml(role={"session_name": q("a")}), where("[role] session_name", SESSION)),
    (toml(role={"session_name": q("bad name!")}), where("[role] session_name", SESSION)),
    (toml(role={"session_name": q("s" * 65)}), where("[role] session_name", SESSION)),
    (toml(role={"duration_seconds": "899"}), where("[role] duration_seconds", DURATION)),
    (toml(role={"duration_seconds": "43201"}), where("[role] duration_seconds", DURATION)),
    (toml(role={"duration_seconds": "3600.0"}), where("[role] duration_seconds", DURATION)),
    (toml(role={"duration_seconds": q("3600")}), where("[role] duration_seconds", DURATION)),
    (toml(role={"duration_seconds": "true"}), where("[role] duration_seconds", DURATION)),
    (toml(role={"external_id": q("x")}),
     where("[role] external_id", "must be 2-1224 characters of letters, digits and +=,.@:/_-")),
    (toml(role={"external_id": q("has space")}),
     where("[role] external_id", "must be 2-1224 characters of letters, digits and +=,.@:/_-")),
    (toml(role={"policy": q("{nope")}), where("[role] policy", "must be a JSON policy document (an object)")),
    (toml(role={"policy": q("[]")}), where("[role] policy", "must be a JSON policy document (an object)")),
    (toml(role={"policy": q("")}), where("[role] policy", POLICY_CHARS)),
    (toml(role={"policy": q("{" + " " * 2048 + "}")}), where("[role] policy", POLICY_CHARS)),
    (toml(role={"policy": q("{\\u0100}")}), where("[role] policy", POLICY_CHARS)),
    (toml(role={"policy_arns": q("arn:aws:iam::aws:policy/ReadOnlyAccess")}),
     where("[role] policy_arns", "must be an array of strings")),
    (toml(role={"policy_arns": '["arn:aws:iam::aws:policy/A", "arn:aws:iam::aws:role/B"]'}),
     where("[role] policy_arns", "entry 2 is not a policy ARN such as arn:aws:iam::aws:policy/NAME")),
    (toml(role={"policy_arns": "[" + ", ".join(['"arn:aws:iam::aws:policy/ReadOnlyAccess"'] * 11) + "]"}),
     where("[role] policy_arns", "at most 10 policies")),
    (toml(role={"tags": q("team=blue")}), where("[role] tags", 'must be a table of key = "value"')),
    (toml(role={"tags": "{ team = 1 }"}),
     where("[role] tags", "tag 'team': value must be a string of 0-256 letters, digits, spaces or _.:/=+-@")),
    (toml(role={"tags": '{ team = "a*b" }'}),
     where("[role] tags", "tag 'team': value must be a string of 0-256 letters, digits, spaces or _.:/=+-@")),
    (toml(role={"tags": "{ team = \"" + "v" * 257 + "\" }"}),
     where("[role] tags", "tag 'team': value must be a string of 0-256 letters, digits, spaces or _.:/=+-@")),
    (toml(role={"tags": '{ "a*b" = "x" }'}), where("[role] tags", f"tag key 'a*b' {TAG_KEY}")),
    (toml(role={"tags": '{ "" = "x" }'}), where("[role] tags", f"tag key '' {TAG_KEY}")),
    (toml(role={"tags": '{ team = "a", Team = "b" }'}),
     where("[role] tags", "tag key 'Team' is given twice (tag keys ignore case)")),
    (toml(role={"tags": "{ " + ", ".join(f't{i} = "v"' for i in range(51)) + " }"}),
     where("[role] tags", "at most 50 tags")),
    (toml(role={"source_identity": q("a")}),
     where("[role] source_identity", "must be 2-256 characters of letters, digits and +=,.@_-")),
    (toml(role={"refresh_before_expiry_seconds": "300"}), where("[role] refresh_before_expiry_seconds", LEAD_3300)),
    (toml(role={"refresh_before_expiry_seconds": "599"}), where("[role] refresh_before_expiry_seconds", LEAD_3300)),
    (toml(role={"refresh_before_expiry_seconds": "3301"}), where("[role] refresh_before_expiry_seconds", LEAD_3300)),
    (toml(role={"refresh_before_expiry_seconds": "1800.0"}), where("[role] refresh_before_expiry_seconds", LEAD_3300)),
    (toml(role={"duration_seconds": "900", "refresh_before_expiry_seconds": "601"}),
     where("[role] refresh_before_expiry_seconds",
           "must be an integer from 600 to 600 (botocore refreshes by itself in the last 10 minutes)")),
    # [metadata]
    (toml(metadata={"listen": "5"}), where("[metadata] listen", "must be a string or an array of strings")),
    (toml(metadata={"listen": q("nowhere")}), where("[metadata] listen", "listen address 'nowhere' is not HOST:PORT")),
    (toml(metadata={"tokens": q("sometimes")}), where("[metadata] tokens", 'tokens must be "required" or "optional"')),
    (toml(metadata={"tokens": "true"}), where("[metadata] tokens", "must be a string")),
    (toml(metadata={"hop_limit": "0"}), where("[metadata] hop_limit", "must be an integer from 1 to 64")),
    (toml(metadata={"hop_limit": "65"}), where("[metadata] hop_limit", "must be an integer from 1 to 64")),
    (toml(metadata={"allowed_hosts": '["[::1"]'}),
     where("[metadata] allowed_hosts", "allowed_hosts entries must be host or host:port")),
    (toml(metadata={"allowed_peers": '["not-a-net"]'}),
     where("[metadata] allowed_peers", "'not-a-net' does not appear to be an IPv4 or IPv6 network")),
    (toml(metadata={"allowed_peers": "[1]"}), where("[metadata] allowed_peers", "must be a string or an array of strings")),
    (toml(metadata={"region": q("moon")}),
     where("[metadata] region", "region 'moon' is not a region name such as us-east-1")),
    (toml(metadata={"availability_zone": q("eu-west-1a")}),
     where("[metadata] availability_zone", "availability_zone must be the region followed by a zone letter")),
    (toml(metadata={"instance_id": q("i-xyz")}),
     where("[metadata] instance_id", "instance_id must look like i-0123456789abcdef0")),
    (toml(metadata={"secret": q("x")}), where("[metadata] secret", "unknown key")),
    # [container]
    (toml(container={"listen": q("10.0.0.1:80")}),
     where("[container] listen", "container listen address '10.0.0.1:80' must be loopback")),
    (toml(container={"token_file": "1"}), where("[container] token_file", "must be a string")),
    (toml(container={"path": q("/v1")}), where("[container] path", "unknown key")),
    # [agent]
    (toml(agent={"control_socket": q("agent.sock")}), where("[agent] control_socket", "must be an absolute path")),
    (toml(agent={"control_socket": q("/" + "s" * 107)}),
     where("[agent] control_socket", "must be at most 107 bytes (a unix socket path)")),
    (toml(agent={"pid_file": q("/run/x")}), where("[agent] pid_file", "unknown key")),
]


@pytest.mark.parametrize("text, message", CASES)
def test_refusals(text, message):
    assert refusal(text) == message


def test_toml_syntax_error_is_one_line():
    message = refusal("[sts\nregion = 1\n")
    assert message.startswith(f"{PATH}: not valid TOML: ") and "line 1" in message


@pytest.mark.parametrize("nesting", ["[" * 5000, "{a=" * 5000])
def test_deep_nesting_is_one_line_not_a_recursion_error(nesting):
    assert refusal(toml() + "x = " + nesting) == f"{PATH}: not valid TOML: arrays or tables nested too deeply"


def test_secret_file_problems(tmp_path):
    empty, two_words = tmp_path / "empty", tmp_path / "two"
    empty.write_text("\n")
    two_words.write_text(f"{SECRET} {SECRET}\n")
    assert refusal(toml(source=file_source(str(empty)))) == where("[source] secret_access_key_file", f"{empty} is empty")
    assert refusal(toml(source=file_source(str(two_words)))) == where(
        "[source] secret_access_key_file", f"{two_words} must hold one secret key: printable ASCII without spaces")


def test_ca_bundle_that_is_not_pem(tmp_path):
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    message = refusal(toml(sts={"ca_bundle": q(str(bogus))}))
    assert message.startswith(where("[sts] ca_bundle", f"cannot load {bogus}: "))


@pytest.mark.parametrize("key, value", [("external_id", q("ext-1")), ("tags", '{ a = "b" }'),
                                        ("source_identity", q("alice"))])
def test_web_identity_refuses_what_the_token_carries(tmp_path, key, value):
    (tmp_path / "token").write_text("eyJ0.eyJ1.sig")
    text = toml(source={"access_key_id": None, "secret_access_key": None,
                        "web_identity_token_file": q(str(tmp_path / "token"))}, role={key: value})
    assert refusal(text) == where(f"[role] {key}", WEB_ONLY)


# ---- secrets stay out of messages and reprs -----------------------------------------------------


def test_secrets_never_in_repr_or_str():
    config = parse(toml(role={"external_id": q("ext-secret-ish")}))
    for text in (repr(config), str(config), repr(config.source), repr(config.role)):
        assert SECRET not in text and "ext-secret-ish" not in text
    assert config.source.secret_access_key == SECRET and config.role.external_id == "ext-secret-ish"


def test_secret_file_content_never_in_messages(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text(f"{SECRET} trailing-junk")
    with pytest.raises(ConfigError) as info:
        parse(toml(source=file_source(str(secret_file))))
    assert SECRET not in str(info.value) and "trailing-junk" not in str(info.value)


# ---- load_config: the file itself ----------------------------------------------------------------


def test_load_config_reads_the_file(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text(toml())
    path.chmod(0o600)
    config = load_config(str(path), environ={}, uid=1000, hostname="web-1")
    assert config.path == str(path) and config.role.arn == ROLE


def test_load_config_missing_and_binary_files(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(str(missing))
    assert str(info.value) == f"{missing}: cannot read: No such file or directory"
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe[sts]")
    with pytest.raises(ConfigError) as info:
        load_config(str(binary))
    assert str(info.value) == f"{binary}: not UTF-8 text"


def test_load_config_refuses_a_huge_file(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text(toml() + "#" * (1 << 20))
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert str(info.value) == f"{path}: larger than 1048576 bytes"


def test_load_config_warns_when_others_can_read_an_inline_secret(tmp_path, caplog):
    path = tmp_path / "agent.toml"
    path.write_text(toml())
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="rolecall.agent.config"):
        load_config(str(path), environ={}, uid=1000)
    assert "readable by others (mode 644)" in caplog.text and SECRET not in caplog.text
    caplog.clear()
    path.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="rolecall.agent.config"):
        load_config(str(path), environ={}, uid=1000)
    assert caplog.text == ""


def test_load_config_uses_the_process_environment(tmp_path, monkeypatch):
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "secret").write_text(SECRET)
    path = tmp_path / "agent.toml"
    path.write_text(toml(source=file_source("secret")))
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    monkeypatch.setenv("ROLECALL_AGENT_SOCKET", str(tmp_path / "a.sock"))
    config = load_config(str(path))
    assert config.source.secret_access_key_file == str(creds / "secret")
    assert config.control_socket == str(tmp_path / "a.sock")
    assert os.path.basename(config.path) == "agent.toml"


def test_config_error_attributes():
    with pytest.raises(ConfigError) as info:
        parse(toml(role={"duration_seconds": "1"}))
    error = info.value
    assert (error.path, error.key, error.reason) == (PATH, "[role] duration_seconds", DURATION)
    assert str(error) == "/etc/rolecall/agent.toml: [role] duration_seconds: must be an integer from 900 to 43200"

"""The agent's TOML configuration (design.md), checked completely at load.

Theory of operation
-------------------
``parse_config(text, path)`` turns the file's text into frozen dataclasses or
raises ``ConfigError`` whose ``str()`` is one line naming the file, the key and
the reason (``/etc/rolecall/agent.toml: [role] duration_seconds: must be an
integer from 900 to 43200``). Every section and key is checked: unknown ones,
wrong types and bad values are refused, so a file that loads is one the
daemon can run; on SIGHUP the daemon calls ``load_config`` again and keeps the
old config when it raises.

The only reads besides the text itself are the files the config names, to
refuse at load what could never work: ``secret_access_key_file`` and
``web_identity_token_file`` (relative paths resolve against
``$CREDENTIALS_DIRECTORY`` when set, as systemd's ``LoadCredential=`` provides
them, else against the config file's directory), and ``ca_bundle``. Secret
values never reach a message or a ``repr``.

``keyring`` and ``profile`` in ``[source]`` are reserved for the laptop issue
and refused with a "not supported yet" error until then.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import ssl
import stat
import tomllib
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from agent.errors import ConfigError, SourceError
from agent.rotation import MIN_EXPLICIT_LEAD
from agent.sources import read_secret_file, read_token_file
from metadata_server.config import ContainerConfig, MetadataConfig

__all__ = [
    "AgentConfig",
    "RoleConfig",
    "SourceConfig",
    "StsConfig",
    "default_control_socket",
    "default_session_name",
    "load_config",
    "parse_config",
]

log = logging.getLogger("rolecall.agent.config")

SECTIONS: dict[str, tuple[str, ...]] = {
    "sts": ("endpoint_url", "region", "timeout_seconds", "ca_bundle"),
    "source": ("access_key_id", "secret_access_key", "secret_access_key_file", "env", "keyring",
               "profile", "web_identity_token_file"),
    "role": ("arn", "session_name", "duration_seconds", "external_id", "policy", "policy_arns", "tags",
             "source_identity", "refresh_before_expiry_seconds"),
    "metadata": ("listen", "tokens", "hop_limit", "allowed_hosts", "allowed_peers", "region",
                 "availability_zone", "instance_id"),
    "container": ("listen", "token_file"),
    "agent": ("control_socket",),
}
_NOT_YET = ("keyring", "profile")
_SOURCE_KINDS = {"secret_access_key": "static", "secret_access_key_file": "file", "env": "env",
                 "web_identity_token_file": "web_identity"}
_SOURCES_HELP = ("access_key_id with secret_access_key or secret_access_key_file, env = true, "
                 "or web_identity_token_file")

_AWS_REGION = re.compile(r"[a-z]{2}(-[a-z0-9]+)+-[0-9]+")
_SIGNING_REGION = re.compile(r"[A-Za-z0-9_-]{1,63}")
_ACCESS_KEY_ID = re.compile(r"[A-Za-z0-9_]{3,128}")
_SECRET = re.compile(r"[\x21-\x7e]{1,1024}")
_ROLE_ARN = re.compile(r"arn:[a-z][a-z0-9-]*:iam::([0-9]{12}):role/(?:[\x21-\x7e]*/)?([\w+=,.@-]{1,64})",
                       re.ASCII)
_POLICY_ARN = re.compile(r"arn:[a-z][a-z0-9-]*:iam::(?:[0-9]{12}|aws):policy/[\x21-\x7e]+", re.ASCII)
_SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}", re.ASCII)
_SESSION_CHARS = re.compile(r"[^\w+=,.@-]", re.ASCII)
_EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]{2,1224}", re.ASCII)
_SOURCE_IDENTITY = re.compile(r"[\w+=,.@-]{2,256}", re.ASCII)
_POLICY_CHARS = re.compile(r"[\t\n\r\x20-\xff]*")
_TAG_PUNCT = frozenset("_.:/=+-@")
MIN_REFRESH_LEAD = int(MIN_EXPLICIT_LEAD.total_seconds())  # 600: rotation raises shorter leads to this
GLOBAL_REGION = "aws-global"  # botocore's region name for the global endpoint sts.amazonaws.com
MAX_SOCKET_PATH = 107  # sun_path is 108 bytes with the NUL
MAX_CONFIG_BYTES = 1 << 20


# --- the dataclasses ------------------------------------------------------------------


@dataclass(frozen=True)
class StsConfig:
    """``[sts]``: where STS is and how to talk to it.

    Args:
        endpoint_url: ``http(s)://host[:port][/path]``, or None for AWS's
            regional endpoint ``https://sts.REGION.amazonaws.com``.
        region: the signing region (and the AWS endpoint's region);
            ``aws-global`` (botocore's name) for the global endpoint
            ``https://sts.amazonaws.com``, signed for us-east-1.
        timeout_seconds: the limit for one attempt of one call.
        ca_bundle: a PEM file of CAs to trust instead of the system's.
    """

    endpoint_url: str | None
    region: str
    timeout_seconds: float = 10.0
    ca_bundle: str | None = None

    @property
    def global_endpoint(self) -> bool:
        """``region = "aws-global"``: AWS's global STS endpoint (signed for us-east-1)."""
        return self.region == GLOBAL_REGION


@dataclass(frozen=True)
class SourceConfig:
    """``[source]``: the long-term identity the agent signs STS calls with.

    Args:
        kind: ``static`` (both keys in the file), ``file`` (the secret in
            ``secret_access_key_file``), ``env`` (``AWS_*`` variables) or
            ``web_identity`` (AssumeRoleWithWebIdentity with a token file).
        access_key_id: for ``static`` and ``file``.
        secret_access_key: for ``static`` only; hidden from ``repr``.
        secret_access_key_file: for ``file``: an absolute path.
        web_identity_token_file: for ``web_identity``: an absolute path.
    """

    kind: Literal["static", "file", "env", "web_identity"]
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    secret_access_key_file: str | None = None
    web_identity_token_file: str | None = None


@dataclass(frozen=True)
class RoleConfig:
    """``[role]``: the role the agent assumes and serves.

    Args:
        arn: ``arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME``.
        session_name: ``RoleSessionName`` (2-64 of ``[\\w+=,.@-]``).
        duration_seconds: requested session length, 900-43200.
        external_id: ``ExternalId`` (hidden from ``repr``).
        policy: an inline session policy (JSON text).
        policy_arns: managed session policies.
        tags: session tags as ``((key, value), ...)`` in file order.
        source_identity: ``SourceIdentity``.
        refresh_before_expiry_seconds: when set, refresh this long before
            expiry instead of at half-life (600 to ``duration_seconds`` - 300).
    """

    arn: str
    session_name: str
    duration_seconds: int = 3600
    external_id: str | None = field(default=None, repr=False)
    policy: str | None = None
    policy_arns: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    source_identity: str | None = None
    refresh_before_expiry_seconds: int | None = None

    @property
    def role_name(self) -> str:
        """The role's name: the ARN's last segment, without the path."""
        return _ROLE_ARN.fullmatch(self.arn).group(2)

    @property
    def account_id(self) -> str:
        """The role's 12-digit account."""
        return _ROLE_ARN.fullmatch(self.arn).group(1)


@dataclass(frozen=True)
class AgentConfig:
    """The whole file, checked.

    Args:
        path: the file it was read from.
        sts: ``[sts]``.
        source: ``[source]``.
        role: ``[role]``.
        metadata: ``[metadata]`` (defaults when the section is absent; its
            region defaults to ``[sts] region`` when that is an AWS region).
        container: ``[container]``, or None when the section is absent.
        control_socket: ``[agent] control_socket`` or its default
            (``default_control_socket``).
    """

    path: str
    sts: StsConfig
    source: SourceConfig
    role: RoleConfig
    metadata: MetadataConfig
    container: ContainerConfig | None
    control_socket: str


# --- entry points -----------------------------------------------------------------------


def load_config(path: str, *, environ: Mapping[str, str] | None = None, uid: int | None = None,
                hostname: str | None = None) -> AgentConfig:
    """Read and check the agent's TOML file.

    Args:
        path: the file.
        environ: for ``$CREDENTIALS_DIRECTORY``, ``$ROLECALL_AGENT_SOCKET`` and
            ``$XDG_RUNTIME_DIR``; default ``os.environ``.
        uid: whose agent this is (root or a user); default ``os.getuid()``.
        hostname: for the default session name; default the host's name.

    Returns:
        The checked configuration.

    Raises:
        ConfigError: the file is unreadable, not TOML, or any key is wrong.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
            mode = os.fstat(f.fileno()).st_mode
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(path, "", f"larger than {MAX_CONFIG_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(path, "", "not UTF-8 text") from None
    config = parse_config(text, path, environ=environ, uid=uid, hostname=hostname)
    if config.source.kind == "static" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s holds secret_access_key and is readable by others (mode %o): chmod 600 it",
                    path, stat.S_IMODE(mode))
    return config


def parse_config(text: str, path: str, *, environ: Mapping[str, str] | None = None, uid: int | None = None,
                 hostname: str | None = None) -> AgentConfig:
    """Check the TOML ``text`` of the file ``path`` (named in errors; see ``load_config``).

    Returns:
        The checked configuration.

    Raises:
        ConfigError: not TOML, an unknown section or key, a wrong type or value.
    """
    environ = os.environ if environ is None else environ
    path = str(path)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "", f"not valid TOML: {exc}") from None
    tables = _sections(path, document)
    base_dir = os.path.dirname(os.path.abspath(path))
    sts = _sts(tables["sts"], base_dir)
    source = _source(tables["source"], environ, base_dir)
    role = _role(tables["role"], hostname)
    if source.kind == "web_identity":
        _refuse_for_web_identity(tables["role"])
    metadata = _metadata(tables["metadata"], sts.region)
    container = _container(tables["container"], base_dir) if tables["container"].present else None
    control_socket = _control_socket(tables["agent"], environ, os.getuid() if uid is None else uid)
    return AgentConfig(path, sts, source, role, metadata, container, control_socket)


def default_control_socket(environ: Mapping[str, str], uid: int) -> str:
    """Where the control socket lives when ``[agent] control_socket`` is not set.

    ``$ROLECALL_AGENT_SOCKET``, else ``$XDG_RUNTIME_DIR/rolecall/agent.sock``
    for a user's agent (uid not 0), else ``/run/rolecall/agent.sock``.

    Args:
        environ: the environment to read.
        uid: the agent's user id.

    Returns:
        An absolute path.
    """
    if environ.get("ROLECALL_AGENT_SOCKET"):
        return environ["ROLECALL_AGENT_SOCKET"]
    if uid != 0 and environ.get("XDG_RUNTIME_DIR"):
        return os.path.join(environ["XDG_RUNTIME_DIR"], "rolecall", "agent.sock")
    return "/run/rolecall/agent.sock"


def default_session_name(hostname: str | None = None) -> str:
    """A ``RoleSessionName`` from the host's name: invalid characters become ``-``.

    Args:
        hostname: default ``socket.gethostname()``.

    Returns:
        2-64 characters of ``[\\w+=,.@-]`` (``rolecall-agent`` when the name
        gives fewer than two).
    """
    name = _SESSION_CHARS.sub("-", socket.gethostname() if hostname is None else hostname)[:64]
    return name if len(name) >= 2 else "rolecall-agent"


# --- typed access to one table ---------------------------------------------------------


class _Table:
    """One section's table, with getters that raise ``ConfigError`` naming the key."""

    def __init__(self, path: str, name: str, values: dict[str, Any] | None) -> None:
        self.path, self.name = path, name
        self.present = values is not None
        self.values = values if values is not None else {}

    def error(self, key: str | None, reason: str) -> ConfigError:
        where = f"[{self.name}] {key}" if key else f"[{self.name}]"
        return ConfigError(self.path, where, reason)

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def string(self, key: str, default: str | None = None, *, pattern: re.Pattern | None = None,
               reason: str = "") -> str | None:
        value = self.values.get(key, default)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.error(key, "must be a string")
        if pattern is not None and not pattern.fullmatch(value):
            raise self.error(key, reason)
        return value

    def integer(self, key: str, low: int, high: int, default: int | None = None) -> int | None:
        value = self.values.get(key, default)
        if value is not None and (type(value) is not int or not low <= value <= high):
            raise self.error(key, f"must be an integer from {low} to {high}")
        return value

    def strings(self, key: str, *, one_allowed: bool = False) -> tuple[str, ...] | None:
        value = self.values.get(key)
        if value is None:
            return None
        if one_allowed and isinstance(value, str):
            return (value,)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(key, "must be a string or an array of strings" if one_allowed
                             else "must be an array of strings")
        return tuple(value)

    def path_value(self, key: str, base_dir: str) -> str | None:
        value = self.string(key)
        if value is not None and not value:
            raise self.error(key, "must not be empty")
        return None if value is None else os.path.join(base_dir, os.path.expanduser(value))


def _sections(path: str, document: dict[str, Any]) -> dict[str, _Table]:
    for name, value in document.items():
        if name not in SECTIONS:
            kind = "section" if isinstance(value, dict) else "key (keys belong in a section)"
            raise ConfigError(path, f"[{name}]" if isinstance(value, dict) else name,
                              f"unknown {kind}; known sections: {', '.join(SECTIONS)}")
        if not isinstance(value, dict):
            raise ConfigError(path, f"[{name}]", "must be a table")
        for key in value:
            if key not in SECTIONS[name]:
                raise ConfigError(path, f"[{name}] {key}", "unknown key")
    return {name: _Table(path, name, document.get(name)) for name in SECTIONS}


def _require(t: _Table, hint: str) -> _Table:
    if not t.present:
        raise t.error(None, f"missing section: {hint}")
    return t


# --- [sts] -------------------------------------------------------------------------------


def _sts(t: _Table, base_dir: str) -> StsConfig:
    endpoint = t.string("endpoint_url")
    if endpoint is not None:
        _check_url(t, endpoint)
    region = t.string("region", pattern=_SIGNING_REGION, reason="must be a region name such as us-east-1")
    if region is None:
        if endpoint is None:
            raise t.error("region", "required when endpoint_url is omitted (it picks sts.REGION.amazonaws.com)")
        region = "us-east-1"
    elif endpoint is None and not (_AWS_REGION.fullmatch(region) or region == GLOBAL_REGION):
        raise t.error("region", f"must be an AWS region such as eu-west-1 (or {GLOBAL_REGION} for "
                                "sts.amazonaws.com) when endpoint_url is omitted")
    timeout = t.values.get("timeout_seconds", 10.0)
    if type(timeout) not in (int, float) or not 0 < timeout <= 300:
        raise t.error("timeout_seconds", "must be a number of seconds above 0 and at most 300")
    ca_bundle = t.path_value("ca_bundle", base_dir)
    if ca_bundle is not None:
        _check_ca_bundle(t, ca_bundle)
    return StsConfig(endpoint, region, float(timeout), ca_bundle)


def _check_url(t: _Table, url: str) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise t.error("endpoint_url", "is not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise t.error("endpoint_url", "must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise t.error("endpoint_url", "must not hold a user name or password")
    if parts.query or parts.fragment:
        raise t.error("endpoint_url", "must not have a query string or fragment")


def _check_ca_bundle(t: _Table, path: str) -> None:
    try:
        ssl.create_default_context(cafile=path)
    except ssl.SSLError as exc:
        raise t.error("ca_bundle", f"cannot load {path}: {exc.reason or 'not PEM certificates'}") from None
    except OSError as exc:
        raise t.error("ca_bundle", f"cannot load {path}: {exc.strerror or exc}") from None


# --- [source] ----------------------------------------------------------------------------


def _source(t: _Table, environ: Mapping[str, str], base_dir: str) -> SourceConfig:
    _require(t, f"give one credential source: {_SOURCES_HELP}")
    for key in _NOT_YET:
        if key in t:
            raise t.error(key, f"not supported yet (it arrives with the laptop set-up); use {_SOURCES_HELP}")
    chosen = [key for key in _SOURCE_KINDS if key in t]
    if len(chosen) > 1:
        raise t.error(chosen[1], f"conflicts with {chosen[0]}: give exactly one credential source")
    if not chosen:
        if "access_key_id" in t:
            raise t.error("access_key_id", "needs secret_access_key or secret_access_key_file")
        raise t.error(None, f"give one credential source: {_SOURCES_HELP}")
    kind = _SOURCE_KINDS[chosen[0]]
    if kind in ("static", "file"):
        return _key_source(t, kind, chosen[0], environ, base_dir)
    if "access_key_id" in t:
        raise t.error("access_key_id", "goes only with secret_access_key or secret_access_key_file")
    if kind == "env":
        if t.values["env"] is not True:
            raise t.error("env", "must be true (leave it out otherwise)")
        return SourceConfig("env")
    token_file = _credential_path(t, "web_identity_token_file", environ, base_dir)
    _check_readable(t, "web_identity_token_file", read_token_file, token_file)
    return SourceConfig("web_identity", web_identity_token_file=token_file)


def _key_source(t: _Table, kind: str, secret_key: str, environ: Mapping[str, str], base_dir: str) -> SourceConfig:
    if "access_key_id" not in t:
        raise t.error(secret_key, "needs access_key_id")
    key_id = t.string("access_key_id", pattern=_ACCESS_KEY_ID,
                      reason="must be 3-128 letters, digits or underscores")
    if kind == "static":
        value = t.values["secret_access_key"]
        if not isinstance(value, str) or not _SECRET.fullmatch(value):
            raise t.error("secret_access_key", "must be a non-empty string of printable ASCII without spaces")
        return SourceConfig("static", key_id, secret_access_key=value)
    secret_file = _credential_path(t, "secret_access_key_file", environ, base_dir)
    _check_readable(t, "secret_access_key_file", read_secret_file, secret_file)
    return SourceConfig("file", key_id, secret_access_key_file=secret_file)


def _credential_path(t: _Table, key: str, environ: Mapping[str, str], base_dir: str) -> str:
    """Relative paths resolve against ``$CREDENTIALS_DIRECTORY`` (systemd), else the config's directory."""
    value = t.string(key)
    if not value:
        raise t.error(key, "must be a non-empty path")
    return os.path.join(environ.get("CREDENTIALS_DIRECTORY") or base_dir, os.path.expanduser(value))


def _check_readable(t: _Table, key: str, reader, path: str) -> None:
    try:
        reader(path)
    except SourceError as exc:
        raise t.error(key, str(exc)) from None


# --- [role] ------------------------------------------------------------------------------


def _role(t: _Table, hostname: str | None) -> RoleConfig:
    _require(t, 'the agent needs the role it serves (arn = "arn:aws:iam::...")')
    if "arn" not in t:
        raise t.error("arn", "required")
    arn = t.string("arn")
    if not 20 <= len(arn) <= 2048 or not _ROLE_ARN.fullmatch(arn):
        raise t.error("arn", "must be a role ARN such as arn:aws:iam::123456789012:role/NAME")
    session_name = t.string("session_name", pattern=_SESSION_NAME,
                            reason="must be 2-64 characters of letters, digits and +=,.@_-")
    duration = t.integer("duration_seconds", 900, 43200, 3600)
    return RoleConfig(
        arn=arn,
        session_name=session_name or default_session_name(hostname),
        duration_seconds=duration,
        external_id=t.string("external_id", pattern=_EXTERNAL_ID,
                             reason="must be 2-1224 characters of letters, digits and +=,.@:/_-"),
        policy=_policy(t),
        policy_arns=_policy_arns(t),
        tags=_tags(t),
        source_identity=t.string("source_identity", pattern=_SOURCE_IDENTITY,
                                 reason="must be 2-256 characters of letters, digits and +=,.@_-"),
        refresh_before_expiry_seconds=_refresh_lead(t, duration),
    )


def _refresh_lead(t: _Table, duration: int) -> int | None:
    """``refresh_before_expiry_seconds``: from 600 (botocore's own refresh window: ``rotation``
    would raise anything shorter to it anyway) to ``duration_seconds`` - 300."""
    low, high = MIN_REFRESH_LEAD, duration - 300
    value = t.values.get("refresh_before_expiry_seconds")
    if value is not None and (type(value) is not int or not low <= value <= high):
        raise t.error("refresh_before_expiry_seconds", f"must be an integer from {low} to {high} "
                      f"(botocore refreshes by itself in the last {low // 60} minutes)")
    return value


def _refuse_for_web_identity(t: _Table) -> None:
    for key in ("external_id", "tags", "source_identity"):
        if key in t:
            raise t.error(key, "not used with web_identity_token_file "
                               "(AssumeRoleWithWebIdentity takes it from the token)")


def _policy(t: _Table) -> str | None:
    policy = t.string("policy")
    if policy is None:
        return None
    if not 1 <= len(policy) <= 2048 or not _POLICY_CHARS.fullmatch(policy):
        raise t.error("policy", "must be 1-2048 characters of tab, newline, CR and U+0020-U+00FF")
    try:
        document = json.loads(policy)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise t.error("policy", "must be a JSON policy document (an object)")
    return policy


def _policy_arns(t: _Table) -> tuple[str, ...]:
    arns = t.strings("policy_arns") or ()
    if len(arns) > 10:
        raise t.error("policy_arns", "at most 10 policies")
    for i, arn in enumerate(arns, 1):
        if not 20 <= len(arn) <= 2048 or not _POLICY_ARN.fullmatch(arn):
            raise t.error("policy_arns", f"entry {i} is not a policy ARN such as arn:aws:iam::aws:policy/NAME")
    return arns


def _tag_text_ok(text: str) -> bool:
    return all(c in _TAG_PUNCT or unicodedata.category(c)[0] in "LNZ" for c in text)


def _tags(t: _Table) -> tuple[tuple[str, str], ...]:
    tags = t.values.get("tags")
    if tags is None:
        return ()
    if not isinstance(tags, dict):
        raise t.error("tags", "must be a table of key = \"value\"")
    if len(tags) > 50:
        raise t.error("tags", "at most 50 tags")
    seen: set[str] = set()
    for key, value in tags.items():
        if not 1 <= len(key) <= 128 or not _tag_text_ok(key):
            raise t.error("tags", f"tag key {key!r} must be 1-128 letters, digits, spaces or _.:/=+-@")
        if not isinstance(value, str) or len(value) > 256 or not _tag_text_ok(value):
            raise t.error("tags", f"tag {key!r}: value must be a string of 0-256 letters, digits, spaces or _.:/=+-@")
        if key.lower() in seen:
            raise t.error("tags", f"tag key {key!r} is given twice (tag keys ignore case)")
        seen.add(key.lower())
    return tuple(tags.items())


# --- [metadata], [container], [agent] ----------------------------------------------------

_METADATA_STRINGS = ("tokens", "region", "availability_zone", "instance_id")
# Which other keys a key's check depends on, to find the key a ValueError is about.
_METADATA_NEEDS = {"availability_zone": ("region",)}


def _metadata(t: _Table, sts_region: str) -> MetadataConfig:
    values: dict[str, Any] = {}
    for key in ("listen", "allowed_hosts", "allowed_peers"):
        if key in t:
            values[key] = t.strings(key, one_allowed=True)
    for key in _METADATA_STRINGS:
        if key in t:
            values[key] = t.string(key)
    if "hop_limit" in t:
        values["hop_limit"] = t.integer("hop_limit", 1, 64)
    if "region" not in values and _AWS_REGION.fullmatch(sts_region):
        values["region"] = sts_region
    return _build(t, MetadataConfig, values, _METADATA_NEEDS)


def _container(t: _Table, base_dir: str) -> ContainerConfig:
    values: dict[str, Any] = {}
    if "listen" in t:
        values["listen"] = t.strings("listen", one_allowed=True)
    if "token_file" in t:
        values["token_file"] = t.path_value("token_file", base_dir)
    return _build(t, ContainerConfig, values, {})


def _build(t: _Table, cls, values: dict[str, Any], needs: dict[str, tuple[str, ...]]):
    """``cls(**values)``, with a ``ValueError`` reported against the key it is about."""
    try:
        return cls(**values)
    except ValueError as exc:
        raise t.error(_culprit(cls, values, needs), str(exc)) from None


def _culprit(cls, values: dict[str, Any], needs: dict[str, tuple[str, ...]]) -> str | None:
    for key in values:
        alone = {k: values[k] for k in (*needs.get(key, ()), key) if k in values}
        try:
            cls(**alone)
        except ValueError:
            return key
    return None


def _control_socket(t: _Table, environ: Mapping[str, str], uid: int) -> str:
    if "control_socket" not in t:
        return default_control_socket(environ, uid)
    value = t.string("control_socket")
    if not os.path.isabs(value):
        raise t.error("control_socket", "must be an absolute path")
    if len(os.fsencode(value)) > MAX_SOCKET_PATH:
        raise t.error("control_socket", f"must be at most {MAX_SOCKET_PATH} bytes (a unix socket path)")
    return value

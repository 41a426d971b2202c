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

``[source] keyring`` and ``profile`` name long-term keys in the OS keyring
and a profile of the AWS config files; they are read when the agent starts,
not at load. ``mfa_serial`` makes the agent hold an MFA session
(GetSessionToken) of that identity and assume the role from it, so
``duration_seconds`` is then at most 3600 (STS's role-chaining cap).

This module holds the checked values and the entry points; the checks are in
``agent.config_table`` (the known sections and keys, typed getters) and
``agent.config_sections`` (one function per section).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from agent.config_table import SECTIONS, _sections  # noqa: F401 - SECTIONS is re-exported
from agent.errors import ConfigError
from agent.rotation import MIN_EXPLICIT_LEAD
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

_ROLE_ARN = re.compile(r"arn:[a-z][a-z0-9-]*:iam::([0-9]{12}):role/(?:[\x21-\x7e]*/)?([\w+=,.@-]{1,64})",
                       re.ASCII)
_SESSION_CHARS = re.compile(r"[^\w+=,.@-]", re.ASCII)
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
            ``secret_access_key_file``), ``env`` (``AWS_*`` variables),
            ``keyring`` (keys in the OS keyring), ``profile`` (a profile of
            the AWS config files) or ``web_identity``
            (AssumeRoleWithWebIdentity with a token file).
        access_key_id: for ``static`` and ``file``.
        secret_access_key: for ``static`` only; hidden from ``repr``.
        secret_access_key_file: for ``file``: an absolute path.
        web_identity_token_file: for ``web_identity``: an absolute path.
        keyring: for ``keyring``: ``NAME`` (service ``rolecall``) or ``SERVICE/NAME``.
        profile: for ``profile``: the profile's name.
        mfa_serial: hold an MFA session of this device (any kind but ``web_identity``).
    """

    kind: Literal["static", "file", "env", "web_identity", "keyring", "profile"]
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    secret_access_key_file: str | None = None
    web_identity_token_file: str | None = None
    keyring: str | None = None
    profile: str | None = None
    mfa_serial: str | None = None


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
    # Imported here, not at the top: agent.config_sections imports this module's dataclasses.
    from agent.config_sections import (_container, _control_socket, _metadata, _refuse_for_web_identity, _role,
                                       _source, _sts)

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
    if source.mfa_serial and role.duration_seconds > 3600:
        raise ConfigError(path, "[role] duration_seconds", "must be at most 3600 with [source] mfa_serial: the role "
                                "is assumed from the MFA session, and STS caps such role chaining at one hour")
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

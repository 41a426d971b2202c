"""The agent's checked configuration: frozen dataclasses, the defaults they are given, shared patterns.

``agent.config`` parses the TOML file into these (``parse_config``, with one
function per section in ``agent.config_sections``); everything that runs the
agent takes them. A module of its own, so the parsers and their callers import
it without importing each other.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from agent.rotation import MIN_EXPLICIT_LEAD
from metadata_server.callers import CallerMatch
from metadata_server.config import ContainerConfig, MetadataConfig

__all__ = [
    "ACCESS_KEY_ID",
    "AWS_REGION",
    "AgentConfig",
    "GLOBAL_REGION",
    "MAX_SOCKET_PATH",
    "MIN_REFRESH_LEAD",
    "ROLE_ARN",
    "RoleConfig",
    "RoleRule",
    "SECRET_KEY",
    "SourceConfig",
    "StsConfig",
    "default_control_socket",
    "default_session_name",
]

ROLE_ARN = re.compile(r"arn:[a-z][a-z0-9-]*:iam::([0-9]{12}):role/(?:[\x21-\x7e]*/)?([\w+=,.@-]{1,64})",
                      re.ASCII)
AWS_REGION = re.compile(r"[a-z]{2}(-[a-z0-9]+)+-[0-9]+")  # an AWS region name (eu-west-1)
ACCESS_KEY_ID = re.compile(r"[A-Za-z0-9_]{3,128}")  # AWS's AKIA..., and other STS servers' key ids
SECRET_KEY = re.compile(r"[\x21-\x7e]{1,1024}")  # a secret access key: printable ASCII, no spaces
_SESSION_CHARS = re.compile(r"[^\w+=,.@-]", re.ASCII)
MIN_REFRESH_LEAD = int(MIN_EXPLICIT_LEAD.total_seconds())  # 600: rotation raises shorter leads to this
GLOBAL_REGION = "aws-global"  # botocore's region name for the global endpoint sts.amazonaws.com
MAX_SOCKET_PATH = 107  # sun_path is 108 bytes with the NUL


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
        return ROLE_ARN.fullmatch(self.arn).group(2)

    @property
    def account_id(self) -> str:
        """The role's 12-digit account."""
        return ROLE_ARN.fullmatch(self.arn).group(1)


@dataclass(frozen=True)
class RoleRule:
    """``[roles.NAME]``: a per-caller role and the callers it is for.

    Args:
        name: the table's ``NAME`` (what ``[container] role`` and status name it by).
        role: the role's settings, the keys of ``[role]``.
        match: which callers get it (``metadata_server.callers.select``).
    """

    name: str
    role: RoleConfig
    match: CallerMatch


@dataclass(frozen=True)
class AgentConfig:
    """The whole file, checked.

    Args:
        path: the file it was read from.
        sts: ``[sts]``.
        source: ``[source]``.
        role: ``[role]``: the default role, for callers no rule of ``roles``
            matches; None only when ``roles`` is not empty (such callers are
            refused).
        metadata: ``[metadata]`` (defaults when the section is absent; its
            region defaults to ``[sts] region`` when that is an AWS region).
        container: ``[container]``, or None when the section is absent.
        control_socket: ``[agent] control_socket`` or its default
            (``default_control_socket``).
        roles: the ``[roles.NAME]`` rules, in file order (the first that
            matches a caller wins).
        metrics_listen: ``[agent] metrics_listen``: where Prometheus metrics
            are served (``"H:P"``), or None (off, the default).
    """

    path: str
    sts: StsConfig
    source: SourceConfig
    role: RoleConfig | None
    metadata: MetadataConfig
    container: ContainerConfig | None
    control_socket: str
    roles: tuple[RoleRule, ...] = ()
    metrics_listen: str | None = None


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

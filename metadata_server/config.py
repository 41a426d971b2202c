"""Settings of the metadata server and the container endpoint, checked on creation.

These mirror the ``[metadata]`` and ``[container]`` tables of the agent's TOML
(design.md); the agent's loader builds them and reports the ``ValueError``
messages with the file and key.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Literal

from wire.listeners import is_loopback_host, parse_address

__all__ = [
    "ContainerConfig",
    "authority_forms",
    "METADATA_HOSTS",
    "MetadataConfig",
    "default_instance_id",
    "normalize_host",
]

# The Host values real SDKs send to the metadata addresses (with and without :80).
METADATA_HOSTS = frozenset(
    {"169.254.169.254", "169.254.169.254:80", "[fd00:ec2::254]", "[fd00:ec2::254]:80"}
)
_REGION = re.compile(r"[a-z]{2}(-[a-z0-9]+)+-[0-9]+")
_INSTANCE_ID = re.compile(r"i-[0-9a-f]{8,17}")
_ACCOUNT_ID = re.compile(r"[0-9]{12}")
_PATH = re.compile(r"/[A-Za-z0-9._~/-]*")


def _tuple(value: object) -> tuple:
    if isinstance(value, str):
        return (value,)
    return tuple(value)  # type: ignore[arg-type]


def normalize_host(host: str) -> str | None:
    """A Host header value in the one spelling the allow-list uses, or None.

    Lower case; an IPv6 literal in compressed form inside brackets; ``:80``
    kept as written (the allow-list holds both forms). None when the value is
    not ``host[:port]``.
    """
    host = host.strip().lower()
    if host.startswith("["):
        literal, sep, rest = host[1:].partition("]")
        if not sep or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        try:
            literal = ipaddress.IPv6Address(literal).compressed
        except ValueError:
            return None
        return f"[{literal}]{rest}"
    name, sep, port = host.partition(":")
    if not name or (sep and not (port.isascii() and port.isdigit())):
        return None
    return host


def default_instance_id() -> str:
    """``i-`` + 17 hex digits, stable for this host (from /etc/machine-id or the hostname)."""
    try:
        with open("/etc/machine-id", "rb") as f:
            seed = f.read().strip()
    except OSError:
        seed = b""
    seed = seed or socket.gethostname().encode()
    return "i-" + hashlib.sha256(b"rolecall instance-id\0" + seed).hexdigest()[:17]


@dataclass(frozen=True)
class MetadataConfig:
    """The IMDS endpoint's settings (``[metadata]``).

    Args:
        listen: ``"H:P"`` addresses to bind (port 0 picks one); ignored when
            the server is handed inherited (socket-activated) listeners.
        tokens: ``"required"`` (IMDSv2 only; a GET without a valid token gets
            401) or ``"optional"`` (IMDSv1 GETs allowed too).
        hop_limit: IP TTL / IPv6 hop limit of token PUT responses, 1-64.
        allowed_hosts: the exact ``Host`` values accepted. None (default): the
            metadata addresses (``METADATA_HOSTS``), the ``listen`` addresses,
            and the address each request actually arrived on. A tuple replaces
            that default entirely.
        allowed_peers: networks (CIDR) whose peers are served *besides* this
            host's own addresses (loopback and local interfaces), e.g. a
            container bridge with ``hop_limit = 2``.
        region: what ``placement/region`` answers.
        availability_zone: ``placement/availability-zone``; default region + ``a``.
        instance_id: ``instance-id``; default derived from /etc/machine-id.
        account_id: account in the identity document and ``-extended`` path;
            default the held credentials' ``account_id``.
    """

    listen: tuple[str, ...] = ("127.0.0.1:8169",)
    tokens: Literal["required", "optional"] = "required"
    hop_limit: int = 1
    allowed_hosts: tuple[str, ...] | None = None
    allowed_peers: tuple[str, ...] = ()
    region: str = "us-east-1"
    availability_zone: str | None = None
    instance_id: str | None = None
    account_id: str | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "listen", _tuple(self.listen))
        for address in self.listen:
            parse_address(address)
        if self.tokens not in ("required", "optional"):
            raise ValueError('tokens must be "required" or "optional"')
        if type(self.hop_limit) is not int or not 1 <= self.hop_limit <= 64:
            raise ValueError("hop_limit must be an integer from 1 to 64")
        if self.allowed_hosts is not None:
            hosts = tuple(normalize_host(h) for h in _tuple(self.allowed_hosts))
            if None in hosts:
                raise ValueError("allowed_hosts entries must be host or host:port")
            set_(self, "allowed_hosts", hosts)
        peers = _tuple(self.allowed_peers)
        for network in peers:
            ipaddress.ip_network(network, strict=False)
        set_(self, "allowed_peers", peers)
        if not _REGION.fullmatch(self.region):
            raise ValueError(f"region {self.region!r} is not a region name such as us-east-1")
        if self.availability_zone is None:
            set_(self, "availability_zone", self.region + "a")
        elif not self.availability_zone.startswith(self.region) or len(self.availability_zone) <= len(self.region):
            raise ValueError("availability_zone must be the region followed by a zone letter")
        if self.instance_id is not None and not _INSTANCE_ID.fullmatch(self.instance_id):
            raise ValueError("instance_id must look like i-0123456789abcdef0")
        if self.account_id is not None and not _ACCOUNT_ID.fullmatch(self.account_id):
            raise ValueError("account_id must be 12 digits")

    @property
    def required(self) -> bool:
        """True when IMDSv2 tokens are required."""
        return self.tokens == "required"

    def host_allow_list(self) -> frozenset[str]:
        """The static part of the ``Host`` allow-list (normalized spellings).

        The serving address of each request is allowed on top of this when
        ``allowed_hosts`` is None (it carries the real port when ``listen``
        said port 0).
        """
        if self.allowed_hosts is not None:
            return frozenset(self.allowed_hosts)
        hosts = set(METADATA_HOSTS)
        for address in self.listen:
            host, port = parse_address(address)
            hosts.update(authority_forms(host, port))
        return frozenset(hosts)


def authority_forms(host: str, port: int) -> tuple[str, ...]:
    """The Host values that name ``(host, port)``: ``h:p``, and ``h`` alone for port 80."""
    if ":" in host:
        host = "[" + ipaddress.IPv6Address(host.split("%", 1)[0]).compressed + "]"
    host = host.lower()
    if port == 0:
        return ()
    if port == 80:
        return (f"{host}:80", host)
    return (f"{host}:{port}",)


@dataclass(frozen=True)
class ContainerConfig:
    """The container-credentials endpoint's settings (``[container]``).

    Args:
        listen: loopback ``"H:P"`` addresses (port 0 picks one).
        token_file: where ``write_token_file`` puts the bearer token, if anywhere.
        path: the credentials path clients are given in the full URI.
        role: the ``[roles.NAME]`` whose credentials the token gets; None:
            the default ``[role]``.
    """

    listen: tuple[str, ...] = ("127.0.0.1:0",)
    token_file: str | None = None
    path: str = "/v1/credentials"
    role: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "listen", _tuple(self.listen))
        for address in self.listen:
            host, _port = parse_address(address)
            if not is_loopback_host(host):
                raise ValueError(f"container listen address {address!r} must be loopback")
        if not _PATH.fullmatch(self.path):
            raise ValueError("path must start with / and use only unreserved characters")

"""Thin wiring: the pure handlers on the shared serving layer (``wire.serve``).

``serve_metadata`` and ``serve_container`` open their listeners (or take the
ones they are handed, e.g. from systemd socket activation), then run until
cancelled, reporting the bound ``"H:P"`` addresses through ``task_status`` so
the caller can log ``listening on http://H:P`` and tell clients the real port.

    addresses = await nursery.start(serve_metadata, config, holder, clock)
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from metadata_server.config import ContainerConfig, MetadataConfig
from metadata_server.container import ContainerHandler
from metadata_server.credentials import CredentialHolder
from metadata_server.imds import ImdsHandler
from wire.clock import WallClock
from wire.http import Limits
from wire.listeners import open_tcp_listeners
from wire.serve import Server

__all__ = ["METADATA_LIMITS", "container_uri", "serve_container", "serve_metadata"]

# IMDS requests are a line and a few headers; nothing legitimate has a body
# beyond a few bytes, and SDKs give up after one second. A host's SDK clients may
# keep many keep-alive connections open: an idle one costs about 8 KiB (bench/imds.py),
# so 16384 of them about 125 MiB. The agent raises its open-file limit to hold them
# (``LimitNOFILE=`` in rolecall-agent.service); beyond the cap, new connections
# wait in the kernel's listen backlog.
METADATA_LIMITS = Limits(
    max_target_bytes=2048,
    max_header_bytes=8192,
    max_body_bytes=4096,
    request_timeout=5.0,
    idle_timeout=60.0,
    max_connections=16384,
)


async def _serve(handler, addresses: Sequence[str], listeners, limits: Limits, task_status) -> None:
    if listeners is None:
        listeners = await open_tcp_listeners(addresses)
    await Server(handler, limits=limits).serve(listeners, task_status=task_status)


async def serve_metadata(
    config: MetadataConfig,
    holder: CredentialHolder,
    wall_clock: WallClock,
    *,
    listeners: Sequence[trio.abc.Listener] | None = None,
    limits: Limits = METADATA_LIMITS,
    task_status=trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve IMDS on ``config.listen`` (or ``listeners``) until cancelled.

    Args:
        config: the ``[metadata]`` settings.
        holder: where credentials come from.
        wall_clock: decides credential expiry.
        listeners: already-open listeners (socket activation); then
            ``config.listen`` is not bound.
        limits: the serving layer's bounds.
        task_status: receives the list of bound ``"H:P"`` addresses.

    Raises:
        OSError: an address could not be bound.
    """
    handler = ImdsHandler(config, holder, wall_clock)
    await _serve(handler, config.listen, listeners, limits, task_status)


async def serve_container(
    config: ContainerConfig,
    holder: CredentialHolder,
    wall_clock: WallClock,
    token: str,
    *,
    listeners: Sequence[trio.abc.Listener] | None = None,
    limits: Limits = METADATA_LIMITS,
    task_status=trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the container-credentials endpoint until cancelled.

    Args:
        config: the ``[container]`` settings (loopback addresses, path).
        holder: where credentials come from.
        wall_clock: decides credential expiry.
        token: the bearer token clients must present (see ``write_token_file``).
        listeners: already-open listeners instead of ``config.listen``.
        limits: the serving layer's bounds.
        task_status: receives the list of bound ``"H:P"`` addresses.
    """
    handler = ContainerHandler(holder, token, wall_clock, path=config.path)
    await _serve(handler, config.listen, listeners, limits, task_status)


def container_uri(address: str, config: ContainerConfig) -> str:
    """``AWS_CONTAINER_CREDENTIALS_FULL_URI`` for a bound ``"H:P"`` address."""
    return f"http://{address}{config.path}"

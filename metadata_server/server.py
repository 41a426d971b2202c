"""Thin wiring: the pure handlers on the shared serving layer (``wire.serve``).

``imds_server`` is THE composition of the IMDS endpoint: an ``ImdsHandler``
over a credential holder on a ``wire.serve.Server`` with ``METADATA_LIMITS``.
The agent builds what it serves with it (the holder is its ``Rotator``), and
so do ``serve_metadata`` (tests) and bench/imds.py, so all three run one path.

``serve_metadata`` and ``serve_container`` open their listeners (or take the
ones they are handed, e.g. from systemd socket activation), then run until
cancelled, reporting the bound ``"H:P"`` addresses through ``task_status`` so
the caller can log ``listening on http://H:P`` and tell clients the real port.

    addresses = await nursery.start(serve_metadata, config, holder, clock)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import trio

from metadata_server.config import ContainerConfig, MetadataConfig
from metadata_server.container import ContainerHandler
from metadata_server.credentials import CredentialHolder
from metadata_server.imds import ImdsHandler, RoleSelector
from wire.clock import WallClock
from wire.http import Handler, Limits
from wire.listeners import open_tcp_listeners
from wire.peer_identity import lookup
from wire.serve import Server

__all__ = ["METADATA_LIMITS", "container_uri", "imds_server", "serve_container", "serve_metadata"]

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


def imds_server(
    config: MetadataConfig,
    holder: CredentialHolder,
    wall_clock: WallClock,
    *,
    limits: Limits = METADATA_LIMITS,
    shutdown_grace: float = 10.0,
    roles: RoleSelector | None = None,
    identify: Callable | None = None,
    wrap: Callable[[Handler], Handler] | None = None,
) -> Server:
    """The IMDS endpoint, ready to ``serve(listeners)``: ``ImdsHandler`` over ``holder`` on the serving layer.

    The one place the IMDS endpoint is put together: the agent (``holder`` is
    its ``Rotator``, ``shutdown_grace`` its ``SHUTDOWN_GRACE``), ``serve_metadata``
    and bench/imds.py all call it.

    Args:
        config: the ``[metadata]`` settings.
        holder: where credentials come from (``current()`` on every credential request).
        wall_clock: decides credential expiry.
        limits: the serving layer's bounds.
        shutdown_grace: seconds ``Server.shutdown()`` lets requests in progress run.
        roles: per-caller roles (``ImdsHandler``'s ``roles``); then ``identify``
            (``wire.peer_identity.lookup`` by default) names each connection's caller.
        identify: ``(local, peer) -> identity``, once per connection.
        wrap: ``handler -> handler`` around the ``ImdsHandler`` (the agent's metrics count its answers).
    """
    if roles is not None and identify is None:
        identify = lookup
    handler: Handler = ImdsHandler(config, holder, wall_clock, roles=roles)
    return Server(handler if wrap is None else wrap(handler), limits=limits,
                  shutdown_grace=shutdown_grace, identify=identify if roles is not None else None)


async def _serve(server: Server, addresses: Sequence[str], listeners, task_status) -> None:
    if listeners is None:
        listeners = await open_tcp_listeners(addresses)
    await server.serve(listeners, task_status=task_status)


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
    await _serve(imds_server(config, holder, wall_clock, limits=limits), config.listen, listeners, task_status)


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
    server = Server(ContainerHandler(holder, token, wall_clock, path=config.path), limits=limits)
    await _serve(server, config.listen, listeners, task_status)


def container_uri(address: str, config: ContainerConfig) -> str:
    """``AWS_CONTAINER_CREDENTIALS_FULL_URI`` for a bound ``"H:P"`` address."""
    return f"http://{address}{config.path}"

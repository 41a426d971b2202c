"""I/O adapter: the backend app on the shared serving layer, with TLS and signals.

``run(backend, ["127.0.0.1:8900"], ssl_context=...)`` binds the listeners, wraps
them in TLS when given a context, serves the backend with ``wire.serve.Server``
and logs one ``listening on http(s)://H:P`` line per bound address once
connections are accepted. SIGTERM or SIGINT shuts the server down gracefully
(requests in progress finish) and ``run`` returns.

A ``Backend`` is served through its async ``__call__``, so SQLite never makes the
event loop wait (writes run in one worker thread, reads on a read-only
connection that never waits for a lock: see ``sts_backend.app``); its read lane
is closed when serving ends. The layer's own refusals (malformed HTTP, sizes,
timeouts, a failed handler) are AWS ``ErrorResponse`` XML with an
``x-amzn-RequestId`` like every other answer (``app.layer_error_response``).

With ``metrics_listen`` the backend's Prometheus metrics (``sts_backend.metrics``)
are served at ``/metrics`` on a listener of their own (``wire.metrics_endpoint``).

Plain HTTP on an address that is not loopback is refused (``check_listen``)
unless the operator says ``--insecure-http``: access keys' signatures, secrets
in CreateAccessKey answers and session tokens would cross the network in clear.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import ssl
from collections.abc import Callable, Sequence
from typing import Any

import trio

from sts_backend.app import Backend, layer_error_response
from wire.http import Limits
from wire.listeners import format_address, is_loopback_host, open_tcp_listeners, parse_address
from wire.metrics_endpoint import METRICS_PATH, metrics_server
from wire.serve import Server

__all__ = ["ListenRefused", "check_listen", "tls_context", "run", "serve"]

log = logging.getLogger("rolecall.backend")

LIMITS = Limits(max_body_bytes=512 * 1024, request_timeout=30.0)


class ListenRefused(ValueError):
    """A listen address that may not be served as asked (plain HTTP off loopback)."""


def check_listen(addresses: Sequence[str], *, tls: bool, insecure_http: bool) -> None:
    """Refuse plain HTTP on a non-loopback address unless ``insecure_http``.

    Raises:
        ValueError: a malformed ``H:P`` address.
        ListenRefused: plain HTTP off loopback without ``insecure_http``.
    """
    for text in addresses:
        host, _ = parse_address(text)
        if not tls and not insecure_http and not is_loopback_host(host):
            raise ListenRefused(f"refusing plain HTTP on non-loopback address {text}: keys and session tokens "
                                "would cross the network in clear (use --tls-cert/--tls-key, or --insecure-http)")


def tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server-side TLS context (TLS 1.2+) with the given certificate chain and key.

    Raises:
        OSError, ssl.SSLError: unreadable or mismatched files.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


async def serve(handler: Callable, addresses: Sequence[str], *, ssl_context: ssl.SSLContext | None = None,
                stop: trio.Event | None = None, metrics_listen: str | None = None,
                task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``handler`` on ``addresses`` until SIGTERM/SIGINT (or ``stop`` is set); SIGHUP reopens its audit log.

    Reports ``task_status.started(urls)`` (``http(s)://H:P``, the real port for
    port 0) once accepting; returns after a graceful shutdown. Pass ``stop`` to
    embed the server in a larger program that owns the signals (it must then
    not be the main thread's only signal watcher).

    ``metrics_listen`` (``"H:P"``, checked by the caller with
    ``wire.metrics_endpoint.check_metrics_listen``) serves ``handler.metrics``'s
    registry at ``/metrics`` on a listener of its own, logged as ``metrics on
    http://H:P/metrics`` (the real port) before the ``listening on`` lines.
    """
    metrics = getattr(handler, "metrics", None) if metrics_listen else None
    if metrics_listen and metrics is None:
        raise ValueError("--metrics-listen needs a Backend built with metrics")
    metrics_listeners = await open_tcp_listeners([metrics_listen]) if metrics is not None else []
    listeners: list[Any] = await open_tcp_listeners(addresses)
    scheme = "https" if ssl_context is not None else "http"
    urls = [f"{scheme}://{format_address(listener.socket.getsockname())}" for listener in listeners]
    if ssl_context is not None:
        # Handshake on first read; the serving layer finds the socket under the TLS stream.
        listeners = [trio.SSLListener(listener, ssl_context, https_compatible=True) for listener in listeners]
    server = Server(handler, limits=LIMITS, shutdown_grace=10.0, error_response=layer_error_response)
    # Signals are caught before "listening on" is logged, so a prompt SIGTERM still ends gracefully.
    watch = (trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) if stop is None
             else contextlib.nullcontext())
    try:
        with watch as signals:
            async with trio.open_nursery() as nursery:
                scrape = None
                if metrics is not None:
                    metrics.watch(handler)
                    scrape = metrics_server(metrics.registry)
                    for address in await nursery.start(scrape.serve, metrics_listeners):
                        log.info("metrics on http://%s%s", address, METRICS_PATH)
                await nursery.start(server.serve, listeners)
                upkeep = trio.CancelScope()   # the backend's background flush, ended before the drain
                if isinstance(handler, Backend):
                    nursery.start_soon(_maintain, handler, upkeep)
                for url in urls:
                    log.info("listening on %s", url)
                task_status.started(urls)
                if signals is None:
                    await stop.wait()
                else:
                    async for signum in signals:
                        if signum == signal.SIGHUP:
                            await trio.to_thread.run_sync(reopen_audit, getattr(handler, "audit", None))
                            continue
                        log.info("%s: shutting down", signal.Signals(signum).name)
                        break
                server.shutdown()
                if scrape is not None:
                    scrape.shutdown()
                upkeep.cancel()
    finally:
        if isinstance(handler, Backend):
            handler.close()   # no request is in progress any more: the nursery has exited


async def _maintain(backend: Backend, scope: trio.CancelScope) -> None:
    with scope:
        await backend.maintain()


def reopen_audit(audit: Any) -> None:
    """SIGHUP: open the audit log's path again (after logrotate moved the file); never raises."""
    if audit is None:
        return
    try:
        audit.reopen()
        log.info("SIGHUP: reopened the audit log")
    except OSError as exc:
        log.error("SIGHUP: cannot reopen the audit log (%s); still writing the old file", exc.strerror or exc)


def run(handler: Callable, addresses: Sequence[str], *, ssl_context: ssl.SSLContext | None = None,
        metrics_listen: str | None = None) -> None:
    """``serve`` in a fresh trio run (the ``rolecall backend serve`` entry point)."""
    trio.run(lambda: serve(handler, addresses, ssl_context=ssl_context, metrics_listen=metrics_listen))

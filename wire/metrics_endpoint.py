"""The ``/metrics`` endpoint: one ``prometheus_client.CollectorRegistry`` in the text format, on the
project's own serving layer (``wire.serve.Server``), so its timeouts and limits apply.

Theory of operation
-------------------
The agent (``[agent] metrics_listen``) and the backend (``--metrics-listen``)
each own a registry of their own (never prometheus_client's global one, so
several agents or backends can run in one process, as the tests do) and serve
it on a listener separate from everything else, off by default. ``GET`` or
``HEAD /metrics`` answers the exposition; any other path 404, any other method
405. The scrape runs ``generate_latest`` on the event loop: the collectors read
in-memory state only (counters, the rotators, the lanes), never the store.

The listener is loopback-only unless the operator opts in
(``check_metrics_listen``): the figures name roles and actions and show when
credentials expire, which is nobody else's business by default.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from wire.http import HttpRequest, HttpResponse, Limits
from wire.listeners import is_loopback_host, parse_address
from wire.serve import Server

__all__ = ["METRICS_LIMITS", "METRICS_PATH", "MetricsHandler", "check_metrics_listen", "metrics_server"]

METRICS_PATH = "/metrics"
# A scraper sends one small GET now and then: little to hold, nothing to wait for.
METRICS_LIMITS = Limits(max_body_bytes=0, max_connections=64, request_timeout=10.0, idle_timeout=30.0)
_TEXT = ("Content-Type", "text/plain; charset=utf-8")


def check_metrics_listen(address: str, *, allow_remote: bool, opt_in: str) -> None:
    """Refuse a metrics address off loopback unless the operator allowed it.

    Args:
        address: the ``"H:P"`` to bind.
        allow_remote: the operator's opt-in.
        opt_in: how the operator says so, for the message (``metrics_allow_remote = true``).

    Raises:
        ValueError: a malformed address, or one off loopback without the opt-in (one line).
    """
    host, _ = parse_address(address)
    if not allow_remote and not is_loopback_host(host):
        raise ValueError(f"metrics address {address} is not loopback: anyone who reaches it reads what this "
                         f"process serves and when (bind 127.0.0.1, or set {opt_in})")


class MetricsHandler:
    """``HttpRequest -> HttpResponse`` serving one registry at ``/metrics``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def __call__(self, req: HttpRequest) -> HttpResponse:
        if req.path != METRICS_PATH:
            return HttpResponse(404, (_TEXT,), b"not found: the metrics are at /metrics\n")
        if req.method not in ("GET", "HEAD"):
            return HttpResponse(405, (_TEXT, ("Allow", "GET, HEAD")), b"method not allowed\n")
        # the layer drops a HEAD answer's body, keeping its length
        return HttpResponse(200, (("Content-Type", CONTENT_TYPE_LATEST),), generate_latest(self._registry))


def metrics_server(registry: CollectorRegistry, *, shutdown_grace: float = 1.0) -> Server:
    """The serving layer's ``Server`` for ``registry`` (bind and serve it like any other)."""
    return Server(MetricsHandler(registry), limits=METRICS_LIMITS, shutdown_grace=shutdown_grace)

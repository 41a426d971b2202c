"""The backend's Prometheus metrics, in a registry of its own (``rolecall backend serve --metrics-listen``).

Theory of operation
-------------------
``Backend.handle`` reports each answered call once (``BackendMetrics.observe``):
its action, its error code (``OK`` for a success) and how long ``handle`` took.
The action label is bounded: an operation of the STS or IAM model, else
``other`` (whatever an unauthenticated client writes in ``Action`` never becomes
a label); codes are the backend's own. Labels never carry a key id, an ARN or
anything a caller chose. The per-call work is a dict lookup of label children
bound once per (action, code), one counter increment and one histogram
observation: AssumeRole on the read lane must not slow measurably.

Error paths add MFA failures (a wrong or replayed code, ``sts.BAD_MFA_CODE``)
and lockouts (``errors.MfaLockout``), throttled calls (``Throttling``), and
store events: ``busy`` (SQLite busy or locked: 503, SDKs retry) and
``unavailable`` (any other store failure, or a lane that could not be opened).

Pool saturation is read at scrape time from the lanes of the served
``Backend`` (``watch``): the write lane's busy worker and queued calls, and the
web-identity lane's busy workers and capacity (see ``sts_backend.app``).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from sts_backend.errors import BackendError, MfaLockout
from sts_backend.sts import BAD_MFA_CODE
from sts_backend.validation import operations

__all__ = ["BackendMetrics", "OK", "OTHER_ACTION"]

OK = "OK"  # the code label of a successful call
OTHER_ACTION = "other"  # the action label of anything the models do not name
# AssumeRole on the read lane answers in about a millisecond; a write waits for its fsync,
# and up to SQLite's 5 s busy timeout
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BUSY = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


class BackendMetrics:
    """The backend's counters and histograms over ``registry`` (a fresh one by default).

    Thread-safe: the write lane and the web-identity workers report from their threads.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self._requests = Counter("rolecall_backend_requests", "STS and IAM calls answered, by action and error "
                                 "code (OK for a success).", ("action", "code"), registry=r)
        self._latency = Histogram("rolecall_backend_request_duration_seconds", "Time to answer a call, by action.",
                                  ("action",), buckets=_LATENCY_BUCKETS, registry=r)
        self._mfa_failures = Counter("rolecall_backend_mfa_failures", "MFA codes refused (wrong or replayed).",
                                     registry=r)
        self._mfa_lockouts = Counter("rolecall_backend_mfa_lockouts", "MFA devices locked by a failed code.",
                                     registry=r)
        self._throttled = Counter("rolecall_backend_throttled", "STS calls refused with Throttling.", registry=r)
        self._store = Counter("rolecall_backend_store_events", "Store failures answered 503/500: busy (SQLite "
                              "busy or locked) or unavailable.", ("event",), registry=r)
        self._actions = operations("sts") | operations("iam")
        self._children: dict[tuple[str | None, str], tuple[Any, Any]] = {}
        self._watched: _LaneCollector | None = None
        for action in ("AssumeRole", "GetCallerIdentity", "GetSessionToken"):
            self._bind(action, OK)   # the hot ones, bound before the first call
        for event in ("busy", "unavailable"):
            self._store.labels(event)   # shown at 0 from the start, so a rate() has a base

    def _bind(self, action: str | None, code: str) -> tuple[Any, Any]:
        label = action if action in self._actions else OTHER_ACTION
        children = (self._requests.labels(label, code), self._latency.labels(label))
        if len(self._children) < 4096:   # actions x codes is bounded; this only guards the dict
            self._children[(action if label != OTHER_ACTION else None, code)] = children
        return children

    def observe(self, action: str | None, code: str | None, seconds: float) -> None:
        """One answered call: ``code`` None for a success."""
        key = (action if action in self._actions else None, code or OK)
        children = self._children.get(key)
        if children is None:
            children = self._bind(*key)
        children[0].inc()
        children[1].observe(seconds)

    def error(self, exc: BackendError) -> None:
        """An error answer: counts MFA failures and lockouts and throttling (error paths only)."""
        if isinstance(exc, MfaLockout):
            self._mfa_lockouts.inc()
            self._mfa_failures.inc()
        elif exc.code == "Throttling":
            self._throttled.inc()
        elif exc.code == "AccessDenied" and exc.message == BAD_MFA_CODE:
            self._mfa_failures.inc()

    def store_error(self, exc: Exception | None) -> None:
        """A store failure: SQLite busy/locked is ``busy``; anything else (PostgreSQL down, a lane's
        connection that could not be opened: None) is ``unavailable``."""
        code = getattr(exc, "sqlite_errorcode", None)
        busy = isinstance(code, int) and code & 0xFF in _BUSY
        self._store.labels("busy" if busy else "unavailable").inc()

    def watch(self, backend: Any) -> None:
        """Report ``backend``'s lanes (``app.Backend``) at each scrape (once: a second call is ignored)."""
        if self._watched is None:
            self._watched = _LaneCollector(backend)
            self.registry.register(self._watched)


class _LaneCollector(Collector):
    """Pool saturation, read from the served backend's lanes at scrape time (on the event loop)."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend

    def describe(self):
        return []   # values only exist once the lanes are opened: nothing to check at registration

    def collect(self):
        lanes = self._backend.lane_statistics()
        busy = GaugeMetricFamily("rolecall_backend_lane_busy_workers", "Worker threads serving a call, by lane.",
                                 labels=("lane",))
        waiting = GaugeMetricFamily("rolecall_backend_lane_queued_calls", "Calls waiting for a worker, by lane.",
                                    labels=("lane",))
        capacity = GaugeMetricFamily("rolecall_backend_lane_workers", "Worker threads a lane may use.",
                                     labels=("lane",))
        for lane, stats in lanes.items():
            busy.add_metric((lane,), stats[0])
            waiting.add_metric((lane,), stats[1])
            capacity.add_metric((lane,), stats[2])
        yield from (busy, waiting, capacity)
        pool = getattr(self._backend, "pool_statistics", lambda: None)()
        if pool is not None:   # PostgreSQL: the read pool's connections
            in_use, queued, size = pool
            yield GaugeMetricFamily("rolecall_backend_db_pool_in_use", "Database connections lent out.", value=in_use)
            yield GaugeMetricFamily("rolecall_backend_db_pool_waiting", "Requests waiting for a database connection.",
                                    value=queued)
            yield GaugeMetricFamily("rolecall_backend_db_pool_size", "Database connections open.", value=size)

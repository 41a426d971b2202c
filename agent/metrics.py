"""The agent's Prometheus metrics, in a registry of its own (``[agent] metrics_listen``).

Theory of operation
-------------------
Counted as they happen, each by a label child bound once (so a request pays one
increment, never a label lookup by string):

- ``rolecall_agent_refreshes_total{role,result}``: rotation attempts, ``success``
  (credentials installed) or ``failure`` (``Rotator(on_attempt=...)``);
- ``rolecall_agent_sts_request_duration_seconds{action,result}``: each STS attempt
  (``StsClient(observe=...)``), ``result`` ``ok`` or ``error``;
- ``rolecall_agent_requests_total{endpoint,path,status}``: the metadata
  (``imds``) and container (``container``) endpoints' answers, by path class
  (``metadata_server.imds.path_class``) and HTTP status;
- ``rolecall_agent_refused_requests_total{endpoint,reason}``: the defences that
  refused a request: ``host``, ``peer``, ``hop`` (a proxy's ``X-Forwarded-For``),
  ``token`` (IMDSv2 token, or the container's bearer token).

Read at scrape time from the running agent (``watch``), so nothing on the request
path keeps them: ``rolecall_agent_credentials_expiry_seconds{role}`` (seconds left
on what is served; 0 while nothing is) and, with ``[source] mfa_serial``,
``rolecall_agent_mfa_session_remaining_seconds`` (0 while no session is held).

The role label is the ``[roles.NAME]`` rule's NAME, ``default`` for ``[role]``:
never an ARN, a key id or anything secret.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from metadata_server.imds import path_class, refusal_reason
from wire.clock import WallClock
from wire.http import HttpRequest, HttpResponse

__all__ = ["AgentMetrics", "DEFAULT_ROLE", "role_label"]

DEFAULT_ROLE = "default"  # the role label of [role]
# STS answers in tens of milliseconds; an attempt gives up after [sts] timeout_seconds (10 s by default)
_STS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_PATHS_KEPT = 256  # distinct request paths whose class is remembered (clients ask for a handful)


def role_label(name: str | None) -> str:
    """The role label of a rotator keyed ``name`` (``agent.daemon``: None for ``[role]``)."""
    return DEFAULT_ROLE if name is None else name


class AgentMetrics:
    """The agent's metrics over ``registry`` (a fresh one by default)."""

    def __init__(self, wall_clock: WallClock, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._wall = wall_clock
        r = self.registry
        self._refreshes = Counter("rolecall_agent_refreshes", "Credential refresh attempts, by role and result "
                                  "(success, failure).", ("role", "result"), registry=r)
        self._sts = Histogram("rolecall_agent_sts_request_duration_seconds", "STS call attempts, by action and "
                              "result (ok, error).", ("action", "result"), buckets=_STS_BUCKETS, registry=r)
        self._requests = Counter("rolecall_agent_requests", "Metadata and container endpoint answers, by "
                                 "endpoint, path class and HTTP status.", ("endpoint", "path", "status"), registry=r)
        self._refused = Counter("rolecall_agent_refused_requests", "Requests refused by a defence, by endpoint "
                                "and reason (host, peer, hop, token).", ("endpoint", "reason"), registry=r)

    def refresh_observer(self, name: str | None) -> Callable[[bool], None]:
        """``Rotator(on_attempt=...)`` for the rotator keyed ``name``."""
        role = role_label(name)
        success, failure = self._refreshes.labels(role, "success"), self._refreshes.labels(role, "failure")

        def attempted(installed: bool) -> None:
            (success if installed else failure).inc()

        return attempted

    def observe_sts(self, action: str, answered: bool, seconds: float) -> None:
        """``StsClient(observe=...)``: one STS attempt (a handful of actions: the label stays bounded)."""
        self._sts.labels(action, "ok" if answered else "error").observe(seconds)

    def metered(self, handler: Callable[[HttpRequest], HttpResponse], endpoint: str = "imds", *,
                container_path: str | None = None) -> _Metered:
        """``handler`` with its answers counted: the metadata endpoint's (``imds``), or with
        ``container_path`` (the one path it serves) the container endpoint's (``container``)."""
        if container_path is not None:
            endpoint = "container"
        return _Metered(handler, endpoint, self._requests, self._refused, container_path)

    def watch(self, rotators: Mapping[str | None, Any], mfa: Callable[[], Any]) -> None:
        """Report the rotators' served expiry and ``mfa()``'s session (an ``MfaSession`` or None) at scrape time."""
        self.registry.register(_HeldCollector(rotators, mfa, self._wall))


class _Metered:
    """A sync handler whose answers are counted: the wrapped call, a cached path class, one increment."""

    def __init__(self, handler, endpoint: str, requests: Counter, refused: Counter,
                 container_path: str | None) -> None:
        self._handler, self._endpoint = handler, endpoint
        self._requests, self._refused = requests, refused
        self._container, self._container_path = container_path is not None, container_path
        self._paths: dict[str, str] = {}
        self._children: dict[tuple[str, int], Any] = {}
        self._reasons: dict[str, Any] = {}

    def __call__(self, req: HttpRequest) -> HttpResponse:
        answer = self._handler(req)
        path = self._paths.get(req.path)
        if path is None:
            path = self._classify(req.path)
        key = (path, answer.status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._requests.labels(self._endpoint, path, str(answer.status))
        child.inc()
        if answer.status == 401 or answer.status == 403:
            self._count_refusal(answer)
        return answer

    def _classify(self, raw: str) -> str:
        path = ("credentials" if raw == self._container_path else "other") if self._container else path_class(raw)
        if len(self._paths) < _PATHS_KEPT:
            self._paths[raw] = path
        return path

    def _count_refusal(self, answer: HttpResponse) -> None:
        # the container endpoint's only 403 is a missing or wrong bearer token
        reason = ("token" if answer.status == 403 else None) if self._container else refusal_reason(answer)
        if reason is None:
            return
        child = self._reasons.get(reason)
        if child is None:
            child = self._reasons[reason] = self._refused.labels(self._endpoint, reason)
        child.inc()


class _HeldCollector(Collector):
    """What is held, read at scrape time: seconds left on each role's served credentials and the MFA session."""

    def __init__(self, rotators: Mapping[str | None, Any], mfa: Callable[[], Any], wall_clock: WallClock) -> None:
        self._rotators, self._mfa, self._wall = rotators, mfa, wall_clock

    def describe(self):
        return []   # the MFA gauge exists only with an MFA session: nothing fixed to check at registration

    def collect(self):
        now = self._wall.now()
        expiry = GaugeMetricFamily("rolecall_agent_credentials_expiry_seconds", "Seconds until the served "
                                   "credentials expire, by role (0 while none are served).", labels=("role",))
        for name, rotator in self._rotators.items():
            held = rotator.current()
            left = (held.expiration - now).total_seconds() if held is not None else 0.0
            expiry.add_metric((role_label(name),), max(left, 0.0))
        yield expiry
        session = self._mfa()
        if session is not None:
            until = session.status()["mfa_expiration"]
            left = (until - now).total_seconds() if until is not None else 0.0
            yield GaugeMetricFamily("rolecall_agent_mfa_session_remaining_seconds", "Seconds until the MFA "
                                    "session ends (0 while none is held).", value=max(left, 0.0))

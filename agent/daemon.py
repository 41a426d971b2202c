"""The host daemon: one root nursery for rotation, the metadata server, the control socket.

Theory of operation
-------------------
``run_agent(config)`` first lifts the soft open-file limit to the hard one
(``raise_open_file_limit``: the metadata server holds up to
``METADATA_LIMITS.max_connections`` connections), then opens ONE nursery and
starts, in this order:

1. the metadata server on the sockets systemd passed (``LISTEN_FDS``) when there
   are any, else on ``[metadata] listen``; one ``listening on http://H:P`` line
   per bound address (the real port for ``:0``);
2. the container endpoint when ``[container]`` is configured (its bearer token
   written 0600 to ``token_file``);
3. the control socket (``agent.control``): ``status`` and ``refresh`` for
   anyone who may open it; ``credentials`` (the held role credentials, when
   asked for this role) and ``mfa-code`` (``rolecall mfa login`` handing over a
   code for the MFA session, ``agent.user_sources``) only for the agent's own
   user or root;
4. the rotator (``agent.rotator``), which fetches the first credentials at once
   and then rotates; until it holds some, credential paths answer 503;
5. a task that waits for the first credentials, then logs ``ready`` and sends
   sd_notify ``READY=1`` (until then it extends systemd's start timeout every
   ``EXTEND_INTERVAL``, so an STS that is away at boot never turns into a restart
   loop that loses the backoff); the watchdog pinger; the STATUS updater; and the
   signal watcher (SIGTERM/SIGINT: stop, SIGHUP: reload).

With ``[agent] metrics_listen``, the Prometheus endpoint (``agent.metrics``,
served by ``wire.metrics_endpoint``) is bound first, on a listener of its own,
and logged as ``metrics on http://H:P/metrics``; without it nothing is counted.

``task_status.started(AgentHandle)`` comes once the listeners are bound, before
the first credentials. Stopping (a signal or ``AgentHandle.stop()``) sends
``STOPPING=1``, shuts the HTTP servers down gracefully (no new connections,
requests in progress finish), then cancels the rest; ``run_agent`` returns.

Per-caller roles (``[roles.NAME]``): every rule, and ``[role]`` when present (the
default), gets its own rotator over the one STS client and credential source, all
started at once; the agent is ready when every one of them holds credentials. The
metadata server then identifies each connection's caller at accept
(``wire.peer_identity.lookup``: uid and cgroup) and serves it the rotator of the
first rule that matches (``metadata_server.callers.select``), else the default's,
else nothing (403). ``[container] role`` picks the container endpoint's rotator.
Rules naming a user or unit this host lacks are logged as warnings at start and
on reload (``agent.config_roles.rule_warnings``).

SIGHUP re-reads the file with ``load_config``, in a worker thread. A bad file
(or any failure of re-reading it) is one logged line and the running
configuration stays. A good one is applied where it can be at run
time — a new or re-read credential source, and ``[role]`` (used from the next
refresh, which a new role ARN triggers at once) — and the log line names what
needs a restart (``[sts]``, ``[metadata]``, ``[container]``, the control socket,
``refresh_before_expiry_seconds``, ``[roles.NAME]`` and adding or removing ``[role]``).

What may end the process: only what is wrong at start (the container token's
directory is not private, a listen address or the control socket cannot be
bound, another agent owns the socket). Once started, each task of the root
nursery outlives its inputs: a connection's failure ends that connection
(``wire.serve``, ``agent.control``, both accepting through
``wire.serve.accept_retrying``); a fetch's failure is retried with the old
credentials kept (``agent.rotator``); a reload's failure keeps the old
configuration; sd_notify failures are ignored (``agent.sdnotify``).
"""

from __future__ import annotations

import logging
import os
import resource
import signal
from dataclasses import dataclass, field
from functools import partial

import trio

from agent.config import AgentConfig, load_config
from agent.config_roles import rule_warnings
from agent.config_types import RoleConfig
from agent.control import serve_control
from agent.errors import AgentError, ConfigError
from agent.metrics import AgentMetrics
from agent.mfa_prompt import PROMPT_TIMEOUT
from agent.rotator import FETCH_TIMEOUT, Rotator
from agent.sdnotify import Notifier
from agent.sources import fetch_role_credentials
from agent.sts_client import StsClient
from agent.user_sources import MfaSession, build_source
from metadata_server import ContainerHandler, RoleCredentials, write_token_file
from metadata_server.callers import CallerRule, holder_selector
from metadata_server.server import METADATA_LIMITS, imds_server
from wire.clock import SystemClock, WallClock, iso_z
from wire.listeners import inherited_listeners_by_name, open_tcp_listeners
from wire.metrics_endpoint import METRICS_PATH, metrics_server
from wire.peer_identity import all_uids_visible, self_check
from wire.private_files import private_dir
from wire.version import version
from wire.serve import Server

__all__ = ["AgentHandle", "SHUTDOWN_GRACE", "raise_open_file_limit", "run_agent", "status_document"]

log = logging.getLogger("rolecall.agent")

SHUTDOWN_GRACE = 10.0  # seconds in-flight requests get to finish on SIGTERM
FD_HEADROOM = 1024  # open files beyond the metadata server's connections: STS, control socket, logs...
STATUS_INTERVAL = 5.0  # seconds between STATUS= updates to systemd (only when changed)
# While no credentials are held, systemd's start timeout (TimeoutStartSec=, 90 s by default) is
# extended every EXTEND_INTERVAL seconds to EXTEND_BY from then (sd_notify EXTEND_TIMEOUT_USEC).
EXTEND_INTERVAL = 30.0
EXTEND_BY = 90.0


@dataclass
class AgentHandle:
    """What a running agent reports to whoever started it.

    Attributes:
        metadata: the metadata server's bound ``"H:P"`` addresses.
        container: the container endpoint's bound addresses (empty when off).
        control_socket: the control socket's path.
        rotator: the rotation scheduler (``status()``, ``ready``, ``refresh_now()``)
            of ``[role]``, or of the first ``[roles.NAME]`` without one.
        rotators: every role's rotator: ``None`` for ``[role]``, else the rule's NAME.
        metrics: the Prometheus endpoint's bound ``"H:P"`` addresses (empty when off).
    """

    metadata: list[str]
    container: list[str]
    control_socket: str
    rotator: Rotator
    _stop: trio.Event = field(repr=False)
    rotators: dict[str | None, Rotator] = field(default_factory=dict)
    _ready: trio.Event | None = field(default=None, repr=False)
    metrics: list[str] = field(default_factory=list)

    @property
    def ready(self) -> trio.Event:
        """Set once every role's first credentials are held."""
        return self._ready if self._ready is not None else self.rotator.ready

    def stop(self) -> None:
        """Shut the agent down gracefully (as SIGTERM does)."""
        self._stop.set()


class _Fetcher:
    """Turns the current ``[sts]``/``[source]``/``[role]`` into one ``fetch()`` for the rotator."""

    def __init__(self, config: AgentConfig, wall_clock: WallClock, transport,
                 metrics: AgentMetrics | None = None) -> None:
        self.role, self.wall_clock = config.role, wall_clock
        self.served_arn = config.role.arn if config.role is not None else None
        self.client = StsClient(config.sts.endpoint_url, config.sts.region, clock=wall_clock,
                                timeout=config.sts.timeout_seconds, transport=transport,
                                verify=config.sts.ca_bundle or True, max_attempts=2,
                                global_endpoint=config.sts.global_endpoint,
                                observe=metrics.observe_sts if metrics is not None else None)
        self.source = self.build(config)

    def build(self, config: AgentConfig):
        """The credential source ``config`` names (``agent.user_sources.build_source``)."""
        return build_source(config.source, self.client, self.wall_clock)

    @property
    def mfa(self) -> MfaSession | None:
        """The MFA session the agent holds, when ``[source] mfa_serial`` is set."""
        return self.source if isinstance(self.source, MfaSession) else None

    async def fetch(self) -> RoleCredentials:
        role = self.role
        got = await fetch_role_credentials(self.client, self.source, role)
        self.served_arn = role.arn
        return got.to_role_credentials(self.wall_clock.now(), role.role_name, role.account_id)


class _RuleFetch:
    """One ``[roles.NAME]`` role's ``fetch()``, over the agent's shared STS client and source."""

    def __init__(self, shared: _Fetcher, role: RoleConfig) -> None:
        self.shared, self.role = shared, role

    async def fetch(self) -> RoleCredentials:
        role, shared = self.role, self.shared
        got = await fetch_role_credentials(shared.client, shared.source, role)
        return got.to_role_credentials(shared.wall_clock.now(), role.role_name, role.account_id)


_RESTART_ONLY = (("sts", "[sts]"), ("metadata", "[metadata]"), ("container", "[container]"),
                 ("control_socket", "[agent] control_socket"), ("metrics_listen", "[agent] metrics_listen"))


def _read_for_reload(old: AgentConfig, fetcher: _Fetcher):
    """The re-read file and the credential source it names (file I/O: run in a worker thread)."""
    new = load_config(old.path)
    if new.source == old.source:
        fetcher.source.reload()
        return new, fetcher.source
    return new, fetcher.build(new)


async def _reload(old: AgentConfig, fetcher: _Fetcher) -> AgentConfig | None:
    """Apply what can change at run time from a re-read file; None when it is unusable.

    The reading happens off the event loop, and no failure of it ends the agent:
    whatever goes wrong, the running configuration stays.
    """
    try:
        new, source = await trio.to_thread.run_sync(_read_for_reload, old, fetcher)
    except AgentError as exc:
        log.error("reload failed, the running configuration stays: %s", exc)
        return None
    except Exception as exc:  # noqa: BLE001 - only the type: an unexpected message might quote the file
        log.error("reload failed, the running configuration stays: unexpected %s reading %s",
                  type(exc).__name__, old.path)
        return None
    restart = [label for name, label in _RESTART_ONLY if getattr(new, name) != getattr(old, name)]
    role = new.role
    if (new.role is None) != (old.role is None):
        restart.append("[role] (added or removed)")
        role = old.role
    elif role is not None and role.refresh_before_expiry_seconds != old.role.refresh_before_expiry_seconds:
        restart.append("[role] refresh_before_expiry_seconds")
    if new.roles != old.roles:
        restart.append("[roles.NAME]")
    fetcher.source, fetcher.role = source, role
    for warning in rule_warnings(new):
        log.warning("%s", warning)
    log.info("reloaded %s: credential source re-read, [role] used from the next refresh%s", old.path,
             f"; needs a restart to change: {', '.join(restart)}" if restart else "")
    return AgentConfig(old.path, old.sts, new.source, role, old.metadata, old.container, old.control_socket,
                       old.roles, old.metrics_listen)


def status_document(rotator: Rotator, role_arn: str | None = None, mfa: MfaSession | None = None) -> dict:
    """The ``status`` answer of design.md: times as ``...Z``, never a secret.

    Beyond design.md's fields: ``version`` (rolecall's), ``mfa_serial``,
    ``mfa_expiration`` (when the MFA session ends) and ``mfa_waiting`` (a code is
    needed), the last three None without MFA.
    """
    snapshot = rotator.status()

    def when(value):
        return iso_z(value) if value is not None else None

    mfa_status = mfa.status() if mfa else {"mfa_serial": None, "mfa_expiration": None, "mfa_waiting": None}
    return {"version": version(), "ready": snapshot.ready, "role_arn": role_arn or snapshot.role_arn,
            "access_key_id": snapshot.access_key_id, "expiration": when(snapshot.expiration),
            "last_refresh": when(snapshot.last_refresh), "next_refresh": when(snapshot.next_refresh),
            "last_error": snapshot.last_error, "mfa_serial": mfa_status["mfa_serial"],
            "mfa_expiration": when(mfa_status["mfa_expiration"]), "mfa_waiting": mfa_status["mfa_waiting"]}


class _Agent:
    """The running daemon's state; ``run`` is the root nursery."""

    def __init__(self, config: AgentConfig, wall_clock: WallClock, transport, notifier: Notifier,
                 inherited_container: list[trio.abc.Listener] = ()) -> None:
        self.config, self.wall_clock, self.notifier = config, wall_clock, notifier
        self.inherited_container = list(inherited_container)   # systemd's "container" sockets
        # Prometheus metrics only when asked for: off, nothing is counted
        self.metrics = AgentMetrics(wall_clock) if config.metrics_listen else None
        self.fetcher = _Fetcher(config, wall_clock, transport, self.metrics)
        attempts = self.metrics.refresh_observer if self.metrics is not None else lambda name: None
        # a fetch with MFA may wait for a person to answer a dialog
        fetch_timeout = FETCH_TIMEOUT + (PROMPT_TIMEOUT if config.source.mfa_serial else 0)
        # a rotator per role is the holder the endpoints ask (``current()``): None is [role]'s
        self.rotators: dict[str | None, Rotator] = {}
        if config.role is not None:
            self.rotators[None] = Rotator(self.fetcher.fetch, wall_clock, role_arn=config.role.arn,
                                          refresh_before_expiry=config.role.refresh_before_expiry_seconds,
                                          fetch_timeout=fetch_timeout, on_attempt=attempts(None))
        for rule in config.roles:
            self.rotators[rule.name] = Rotator(_RuleFetch(self.fetcher, rule.role).fetch, wall_clock,
                                               role_arn=rule.role.arn, fetch_timeout=fetch_timeout,
                                               refresh_before_expiry=rule.role.refresh_before_expiry_seconds,
                                               on_attempt=attempts(rule.name))
        self.rotator = next(iter(self.rotators.values()))
        self.ready = trio.Event()   # every rotator holds credentials
        self.stop = trio.Event()
        self.servers: list[tuple[Server, trio.Event]] = []

    async def run(self, inherited, handle_signals: bool, task_status) -> None:
        container = self.config.container
        if container is not None and container.token_file:  # a secret: checked before anything is bound
            private_dir(os.path.dirname(container.token_file), create=False)
        async with self.fetcher.client, trio.open_nursery() as nursery:
            self.nursery = nursery
            if handle_signals:
                await nursery.start(self._signals)
            metrics = await self._start_metrics(nursery)
            metadata = await self._start_metadata(nursery, inherited)
            container = await self._start_container(nursery)
            control = await nursery.start(serve_control, self.config.control_socket, self._control)
            for warning in rule_warnings(self.config):
                log.warning("%s", warning)
            for rotator in self.rotators.values():
                nursery.start_soon(rotator.run)
            nursery.start_soon(self._announce_ready)
            nursery.start_soon(self.notifier.run_watchdog)
            nursery.start_soon(self._status_updates)
            self.notifier.status("fetching the first credentials")
            task_status.started(AgentHandle(metadata, container, control, self.rotator, self.stop,
                                            dict(self.rotators), self.ready, metrics))
            await self.stop.wait()
            await self._shutdown()
            nursery.cancel_scope.cancel()

    # ---- servers -----------------------------------------------------------------------

    async def _serve(self, nursery: trio.Nursery, server: Server, listeners) -> list[str]:
        done = trio.Event()

        async def serve(task_status=trio.TASK_STATUS_IGNORED):
            try:
                await server.serve(listeners, task_status=task_status)
            finally:
                done.set()

        addresses = await nursery.start(serve)
        self.servers.append((server, done))
        return addresses

    async def _start_metadata(self, nursery: trio.Nursery, inherited) -> list[str]:
        listeners = list(inherited) if inherited else await _listen(self.config.metadata.listen)
        # the shared composition (metadata_server.server.imds_server): tests and bench/imds.py serve it too
        roles = self._role_selector() if self.config.roles else None
        server = imds_server(self.config.metadata, self.rotator, self.wall_clock, shutdown_grace=SHUTDOWN_GRACE,
                             roles=roles, wrap=self.metrics.metered if self.metrics is not None else None)
        addresses = await self._serve(nursery, server, listeners)
        for address in addresses:
            log.info("listening on http://%s%s", address, " (socket activation)" if inherited else "")
        return addresses

    async def _start_metrics(self, nursery: trio.Nursery) -> list[str]:
        """``[agent] metrics_listen``: the Prometheus endpoint on a listener of its own (none when unset)."""
        if self.metrics is None:
            return []
        self.metrics.watch(self.rotators, lambda: self.fetcher.mfa)
        listeners = await _listen([self.config.metrics_listen])
        addresses = await self._serve(nursery, metrics_server(self.metrics.registry), listeners)
        for address in addresses:
            log.info("metrics on http://%s%s", address, METRICS_PATH)
        return addresses

    def _role_selector(self):
        """``(caller, peer address) -> rotator``: the first matching rule's, else [role]'s, else None."""
        rules = [CallerRule(rule.name, rule.match) for rule in self.config.roles]
        return holder_selector(rules, self.rotators, self.rotators.get(None))

    async def _start_container(self, nursery: trio.Nursery) -> list[str]:
        config = self.config.container
        if config is None:
            if self.inherited_container:
                log.warning("systemd passed the container endpoint's sockets, but the configuration has no "
                            "[container]: they stay unused")
            return []
        token = write_token_file(config.token_file) if config.token_file else None
        if token is None:
            log.warning("[container] has no token_file: the container endpoint is off")
            return []
        inherited = self.inherited_container
        listeners = list(inherited) if inherited else await _listen(config.listen)
        handler = ContainerHandler(self.rotators[config.role], token, self.wall_clock, path=config.path)
        if self.metrics is not None:
            handler = self.metrics.metered(handler, container_path=config.path)
        server = Server(handler, limits=METADATA_LIMITS, shutdown_grace=SHUTDOWN_GRACE)
        addresses = await self._serve(nursery, server, listeners)
        for address in addresses:
            log.info("container endpoint on http://%s%s (token in %s)%s", address, config.path, config.token_file,
                     " (socket activation)" if inherited else "")
        return addresses

    async def _shutdown(self) -> None:
        log.info("stopping: finishing requests in progress")
        self.notifier.stopping()
        for server, _ in self.servers:
            server.shutdown()
        with trio.move_on_after(SHUTDOWN_GRACE + 1):
            for _, done in self.servers:
                await done.wait()

    # ---- readiness, status, signals ------------------------------------------------------

    async def _announce_ready(self) -> None:
        # prefetched: ready only once every role is held (design.md, rotation invariant 1).
        # Until then systemd's start timeout is pushed back every EXTEND_INTERVAL: a Type=notify
        # start would otherwise time out while the STS is away, and Restart= would kill the
        # agent and lose its backoff, again and again.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._extend_start_timeout)
            for rotator in self.rotators.values():
                await rotator.ready.wait()
            nursery.cancel_scope.cancel()
        for name, rotator in self.rotators.items():
            held = rotator.current()
            log.info("ready role=%s%s access_key_id=%s expiration=%s", rotator.status().role_arn,
                     f" rule={name}" if name is not None else "", held.access_key_id if held else "-",
                     iso_z(held.expiration) if held else "-")
        self.ready.set()
        self.notifier.ready(self._status_line())

    async def _extend_start_timeout(self) -> None:
        while True:
            await trio.sleep(EXTEND_INTERVAL)
            self.notifier.notify(f"EXTEND_TIMEOUT_USEC={int(EXTEND_BY * 1_000_000)}", f"STATUS={self._status_line()}")

    def _status_line(self) -> str:
        doc = self._status()
        if not doc["ready"]:
            return f"no credentials yet; last error: {doc['last_error'] or 'none'}"
        line = f"serving {doc['role_arn']} key {doc['access_key_id']} until {doc['expiration']}"
        return line + (f"; refresh failing: {doc['last_error']}" if doc["last_error"] else "")

    async def _status_updates(self) -> None:
        if not self.notifier.enabled:
            return
        last = None
        while True:
            await trio.sleep(STATUS_INTERVAL)
            line = self._status_line()
            if line != last:
                self.notifier.status(line)
                last = line

    async def _control(self, request: dict, peer_uid: int | None) -> dict:
        op = request["op"]
        if op == "status":
            return self._status()
        if op == "refresh":
            with trio.move_on_after(20):
                await self.rotator.refresh_now()
            return self._status()
        if op in ("credentials", "mfa-code") and peer_uid not in (os.geteuid(), 0):
            return {"error": f"{op} is answered only to the agent's own user"}
        if op == "credentials":
            return self._credentials(request)
        if op == "mfa-code":
            return await self._mfa_code(request)
        return {"error": f"unknown op {op!r} (known: status, refresh, credentials, mfa-code)"}

    def _credentials(self, request: dict) -> dict:
        """The held role credentials, when they are of a role (and session name) asked for: the first
        of ``[role]`` and the rules that fits."""
        roles = ([(None, self.config.role)] if self.config.role is not None else []) + [
            (rule.name, rule.role) for rule in self.config.roles]
        found = next(((name, role) for name, role in roles if request.get("role_arn") in (None, role.arn)
                      and request.get("session_name") in (None, role.session_name)), None)
        if found is None:
            return {"error": "the agent serves another role"}
        name, role = found
        held = self.rotators[name].current()
        if held is None:
            return {"error": "the agent holds no credentials yet"}
        answer = {"AccessKeyId": held.access_key_id, "SecretAccessKey": held.secret_access_key,
                  "SessionToken": held.token, "Expiration": iso_z(held.expiration), "RoleArn": role.arn}
        if held.account_id:
            answer["AccountId"] = held.account_id
        return answer

    async def _mfa_code(self, request: dict) -> dict:
        """A code from ``rolecall mfa login``: open the MFA session with it, then refresh."""
        mfa, code = self.fetcher.mfa, request.get("code")
        if mfa is None:
            return {"error": "this agent holds no MFA session ([source] mfa_serial is not set)"}
        if not isinstance(code, str) or not (len(code) == 6 and code.isdigit()):
            return {"error": "code must be 6 digits"}
        try:
            await mfa.accept_code(code)
        except AgentError as exc:
            return {"error": str(exc)}
        self.nursery.start_soon(self.rotator.refresh_now)
        return self._status()

    async def _signals(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            task_status.started()
            async for signum in signals:
                if signum == signal.SIGHUP:
                    await self._reload()
                    continue
                log.info("%s received", signal.Signals(signum).name)
                self.stop.set()
                return

    def _status(self) -> dict:
        served = self.fetcher.served_arn if None in self.rotators else None
        doc = status_document(self.rotator, served, self.fetcher.mfa)
        if self.config.roles:
            doc["roles"] = [{"name": name, **status_document(rotator, self.fetcher.served_arn if name is None else None)}
                            for name, rotator in self.rotators.items()]
            for entry in doc["roles"]:
                for key in ("version", "mfa_serial", "mfa_expiration", "mfa_waiting"):
                    del entry[key]   # the agent's, not the role's: once, at the top
            doc["ready"] = self.ready.is_set()
        return doc

    async def _reload(self) -> None:
        old = self.config
        self.config = await _reload(old, self.fetcher) or old
        if self.config.role is not None and self.config.role.arn != old.role.arn:
            # serve the new role at once: not from an attempt already in flight for the old one
            self.nursery.start_soon(partial(self.rotator.refresh_now, changed=True))
        if self.config is not old and self.ready.is_set():
            self.notifier.notify("RELOADING=1")
            self.notifier.ready(self._status_line())


def raise_open_file_limit(needed: int = METADATA_LIMITS.max_connections + FD_HEADROOM) -> int:
    """Lift the soft ``RLIMIT_NOFILE`` to the hard limit, so the metadata server can hold its connections.

    The soft limit is often 1024 while the metadata server serves up to
    ``METADATA_LIMITS.max_connections`` at once; past the limit ``accept`` fails
    with EMFILE. One warning line when the result is below ``needed``.

    Returns:
        The soft limit in force afterwards.
    """
    infinity = resource.RLIM_INFINITY
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != infinity else max(soft, needed)
    if soft != infinity and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.debug("cannot raise the open-file limit to %d: %s", target, exc)
    if soft != infinity and soft < needed:
        log.warning("open-file limit is %d, below the %d the metadata server may need (%d connections + "
                    "headroom): raise LimitNOFILE= (ulimit -n)", soft, needed, METADATA_LIMITS.max_connections)
    return soft


async def _listen(addresses) -> list[trio.SocketListener]:
    try:
        return await open_tcp_listeners(addresses)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot listen on {', '.join(addresses)}: {exc.strerror or exc}") from None


def check_caller_identification(config: AgentConfig, uid_map: str = "/proc/self/uid_map") -> str | None:
    """Before serving per-caller roles: refuse uid rules the kernel cannot answer truthfully here,
    and say (a warning line, returned) when callers cannot be identified at all.

    Raises:
        ConfigError: ``uid``/``user`` rules in a user namespace that hides other users' uids
            (they would all read 65534, and a rule for that uid would match every one of them).
    """
    if not config.roles:
        return None
    if any(rule.match.uid is not None or rule.match.user is not None for rule in config.roles) \
            and not all_uids_visible(uid_map):
        raise ConfigError(config.path, "[roles]", "uid and user rules need the real uids, but this agent runs in a "
                          "user namespace that hides them (systemd PrivateUsers=yes): set PrivateUsers=no "
                          "(systemctl edit rolecall-agent), or match on unit or cgroup")
    problem = self_check()
    if problem is None:
        return None
    return (f"per-caller roles: callers cannot be identified here: {problem}; every caller gets the default "
            "[role] (or 403 without one)")


async def run_agent(config: AgentConfig, *, wall_clock: WallClock = SystemClock(), transport=None,
                    inherited: list[trio.abc.Listener] | None = None, notifier: Notifier | None = None,
                    handle_signals: bool = True, inherited_container: list[trio.abc.Listener] | None = None,
                    task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Run the host agent until SIGTERM/SIGINT (or ``AgentHandle.stop()``).

    Args:
        config: the checked configuration (``agent.config.load_config``).
        wall_clock: decides expiry and dates signatures.
        transport: an httpx transport for STS (tests); real HTTP by default.
        inherited: listeners for the metadata server; default the sockets
            systemd passed (``LISTEN_FDS``) but those named ``container``, else
            ``[metadata] listen`` is bound.
        inherited_container: listeners for the container endpoint instead of
            ``[container] listen``; default the sockets systemd passed named
            ``container`` (rolecall-container.socket: 169.254.170.23:80).
        notifier: sd_notify; default from ``$NOTIFY_SOCKET``.
        handle_signals: watch SIGTERM/SIGINT/SIGHUP (main thread only).
        task_status: receives an ``AgentHandle`` once the listeners are bound.

    Raises:
        OSError: a listen address or the control socket could not be set up, or the
            container token file's directory is not private (``wire.private_files.UnsafeDirectory``).
        agent.control.ControlError: another agent owns the control socket.
        agent.errors.SourceError: the credential source is unusable at start.
        agent.errors.ConfigError: uid rules where the kernel hides other users' uids.
    """
    warning = check_caller_identification(config)
    if warning:
        log.error("%s", warning)
    raise_open_file_limit()
    if inherited is None:
        by_name = inherited_listeners_by_name()
        inherited_container = by_name.pop("container", [])   # rolecall-container.socket's
        inherited = [listener for listeners in by_name.values() for listener in listeners]
    agent = _Agent(config, wall_clock, transport, notifier or Notifier(), inherited_container or [])
    await agent.run(inherited, handle_signals, task_status)

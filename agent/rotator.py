"""The rotation scheduler: holds the credentials the endpoints serve, and rotates them, on trio.

Usage (in the daemon's root nursery)::

    rotator = Rotator(fetch, wall_clock, role_arn=arn)
    await nursery.start(rotator.run)   # returns once the first credentials are held

``fetch`` is a plain ``async () -> RoleCredentials`` (the daemon builds it from
the STS client, the credential source and the role config). Its failures are
classified by ``getattr(exc, "retryable", True)`` and ``agent.sts_client.is_throttling``
(the backend's Throttling: back off further) and logged as one line with the AWS
error code, never a secret.
"""

# Theory of operation
# -------------------
# One task, ``run``, does every fetch; nothing else ever calls ``fetch``. That
# alone gives invariant 5 (one STS call at a time): ``refresh_now`` only asks
# the loop for an attempt and waits on that attempt's completion event, so any
# number of concurrent callers share one fetch. A caller whose request changed
# (``refresh_now(changed=True)``: a reload named another role) must not share an
# attempt that began before the change: a generation counter, bumped by such a
# call and recorded by each attempt at its start, makes the loop attempt again
# as soon as the stale one ends.
#
# The loop, on every wake:
#   1. look at both clocks; if the wall clock moved more than the monotonic one
#      (policy.clock_jump: NTP step, laptop resume), re-derive the monotonic
#      deadline from the wall-clock refresh point and, when failing, retry now;
#   2. drop the held credentials once they are no longer serveable (wall clock);
#   3. attempt a fetch when the monotonic deadline has passed (or a caller asked,
#      at once unless backing off and then policy.REQUEST_GAP after the last
#      attempt, or the request changed since the last attempt began, backing off
#      or not); on success install and schedule the next refresh
#      (policy.refresh_at), on failure schedule a retry (policy.retry_delay),
#      keeping whatever serveable credentials are held;
#   4. otherwise sleep on trio's clock until the deadline or the drop point, but
#      never longer than WAKE_INTERVAL, so a jump is noticed within that time.
# While a fetch is in flight (up to ``fetch_timeout``), a watcher task drops the
# held credentials at their drop point, so the holder never lags expiry.
#
# ``run`` calls ``task_status.started()`` (and sets ``ready``) only after the
# first credentials are installed: invariant 1. Until then the holder is empty.

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import math
import random as _random
from collections.abc import Awaitable, Callable

import trio

from agent import rotation as policy
from agent.sts_client import is_throttling
from metadata_server.credentials import RoleCredentials
from wire.clock import WallClock, iso_z

__all__ = ["FETCH_TIMEOUT", "WAKE_INTERVAL", "Rotator", "RotatorStatus"]

logger = logging.getLogger("rolecall.agent.rotation")

WAKE_INTERVAL = 10.0  # seconds of monotonic sleep at most, so clock jumps are seen quickly
FETCH_TIMEOUT = 60.0  # seconds one fetch may take before it counts as a (retryable) failure
_MAX_ERROR = 300  # characters of an error kept for logs and status

Fetch = Callable[[], Awaitable[RoleCredentials]]


@dataclasses.dataclass(frozen=True, slots=True)
class RotatorStatus:
    """A snapshot for ``rolecall agent status`` (times aware UTC; the daemon formats ``...Z``).

    Attributes:
        ready: serveable credentials are held right now.
        role_arn: the configured role, when the daemon said.
        access_key_id: of the held credentials (never the secret or token).
        expiration: of the held credentials.
        last_refresh: when credentials were last installed.
        next_refresh: when the next attempt is due (a refresh point or a retry).
        last_error: one line about the last failure since the last success.
    """

    ready: bool
    role_arn: str | None
    access_key_id: str | None
    expiration: _dt.datetime | None
    last_refresh: _dt.datetime | None
    next_refresh: _dt.datetime | None
    last_error: str | None


class _Failure(Exception):
    """A fetch outcome that cannot be installed: timeout, or refused by ``policy.rejection`` (retryable)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


class Rotator:
    """Fetches credentials before they are needed and holds them.

    The endpoints' ``CredentialHolder``: ``current()`` returns the held
    credentials only while they are serveable by the wall clock.

    Args:
        fetch: ``async () -> RoleCredentials``; raises on failure.
        wall_clock: the wall clock (``now()`` aware UTC) for expiry.
        refresh_before_expiry: seconds (or a timedelta) before expiry to refresh;
            None for the half-life policy.
        random: the source of jitter draws.
        on_change: called with the new credentials (or None when dropped).
        log: the logger to use.
        role_arn: reported in ``status()``.
        fetch_timeout: seconds one fetch may take (trio clock).
        on_attempt: called after each attempt with whether it installed credentials (metrics).
    """

    def __init__(self, fetch: Fetch, wall_clock: WallClock, *,
                 refresh_before_expiry: float | _dt.timedelta | None = None,
                 random: _random.Random | None = None,
                 on_change: Callable[[RoleCredentials | None], None] | None = None,
                 log: logging.Logger = logger, role_arn: str | None = None,
                 fetch_timeout: float = FETCH_TIMEOUT,
                 on_attempt: Callable[[bool], None] | None = None) -> None:
        if isinstance(refresh_before_expiry, (int, float)):
            refresh_before_expiry = _dt.timedelta(seconds=refresh_before_expiry)
        self._fetch, self._wall, self._lead = fetch, wall_clock, refresh_before_expiry
        self._random, self._on_change, self._log = random or _random.Random(), on_change, log
        self._role_arn, self._fetch_timeout, self._on_attempt = role_arn, fetch_timeout, on_attempt
        self.ready = trio.Event()  # set once, when the first credentials are held
        self._held: RoleCredentials | None = None
        self._failures, self._requested = 0, False  # failed attempts in a row; a caller asked for one
        # Bumped by refresh_now(changed=True) (a reload changed what fetch() asks for); an attempt
        # records the value it started under, so one begun before the change does not count for it.
        self._generation = self._settled = 0
        self._last_refresh: _dt.datetime | None = None
        self._last_error: str | None = None
        self._target_wall: _dt.datetime | None = None  # the next attempt, by the wall clock ...
        self._target_mono = -math.inf  # ... and by trio's clock (at once)
        self._last_end = -math.inf  # trio time the last attempt ended
        self._mark: tuple[float, _dt.datetime] = (0.0, _dt.datetime.min)  # last look at both clocks
        self._kick = trio.Event()  # wakes the loop's sleep
        self._done = trio.Event()  # set when the in-flight (or next) attempt completes

    # ---- what callers see ----------------------------------------------------------

    def current(self) -> RoleCredentials | None:
        """The held credentials while serveable by the wall clock, else None (never blocks)."""
        held = self._held
        return held if policy.serveable(held, self._wall.now()) else None

    def status(self) -> RotatorStatus:
        """A snapshot of what is held and what happens next (no secrets in it)."""
        held = self.current()
        return RotatorStatus(held is not None, self._role_arn, held and held.access_key_id, held and held.expiration,
                             self._last_refresh, self._target_wall, self._last_error)

    async def refresh_now(self, *, changed: bool = False) -> RoleCredentials | None:
        """Ask for an attempt as soon as the policy allows, and wait for it.

        Joins the attempt in flight if there is one; otherwise the loop attempts at
        once, or, while it backs off after failures, ``policy.REQUEST_GAP`` after
        the last attempt (if the scheduled retry is not sooner): a caller (an
        operator's ``refresh``, a new MFA code) does not wait out a spread of
        minutes, and a loop of calls cannot hammer a failing backend. Needs
        ``run`` to be running.

        Args:
            changed: what ``fetch`` asks for has changed (a reload: another role).
                An attempt in flight started with the old request, so it is not
                joined: a new attempt starts as soon as it ends (and at once even
                while backing off, since the failures were the old request's),
                and this waits for that one.

        Returns:
            ``current()`` after that attempt (None if nothing serveable is held).
        """
        if changed:
            self._generation += 1
        wanted = self._generation
        self._requested = True
        self._kick.set()
        while True:
            await self._done.wait()
            if self._settled >= wanted:
                return self.current()

    # ---- the loop ------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Fetch, hold, rotate, forever (cancel to stop); ``task_status.started()`` once credentials are held."""
        self._mark = (trio.current_time(), self._wall.now())
        started = False
        while True:
            self._check_clock()
            self._drop_if_unserveable()
            if self._due():
                await self._attempt()
                if not started and self._held is not None:
                    started = True
                    self.ready.set()
                    task_status.started()
                continue
            await self._sleep()

    def _due(self) -> bool:
        return trio.current_time() >= self._next_attempt()

    def _next_attempt(self) -> float:
        """Trio time of the next attempt: the schedule's, sooner when a caller asked or the request changed."""
        if self._settled < self._generation:
            return -math.inf
        if self._requested:  # at once, or while backing off REQUEST_GAP after the last attempt
            soonest = self._last_end + policy.REQUEST_GAP if self._failures else -math.inf
            return min(self._target_mono, soonest)
        return self._target_mono

    async def _sleep(self) -> None:
        deadline = self._next_attempt()
        if self._held is not None:
            to_drop = (policy.drop_at(self._held) - self._wall.now()).total_seconds()
            deadline = min(deadline, trio.current_time() + to_drop)
        timeout = min(max(deadline - trio.current_time(), 0.0), WAKE_INTERVAL)
        with trio.move_on_after(timeout):
            await self._kick.wait()
        if self._kick.is_set():
            self._kick = trio.Event()

    def _check_clock(self) -> None:
        mono, wall = trio.current_time(), self._wall.now()
        last_mono, last_wall = self._mark
        self._mark = (mono, wall)
        jump = policy.clock_jump(mono - last_mono, (wall - last_wall).total_seconds())
        if abs(jump) < policy.JUMP_THRESHOLD:
            return
        self._log.warning("wall clock jumped %+.0fs (clock step or resume from sleep); re-checking credentials",
                          jump)
        if self._failures or self._target_wall is None:
            self._target_mono = mono
        else:
            self._schedule(self._target_wall, wall)

    def _drop_if_unserveable(self) -> None:
        if self._held is None or policy.serveable(self._held, self._wall.now()):
            return
        self._log.error("credentials %s expire at %s and could not be replaced; serving none until a refresh "
                        "succeeds", self._held.access_key_id, iso_z(self._held.expiration))
        self._set_held(None)
        if not self._failures:
            self._target_mono = trio.current_time()

    # ---- one attempt -----------------------------------------------------------------

    async def _attempt(self) -> None:
        done, generation = self._done, self._generation
        try:
            try:
                fetched = await self._fetch_guarded()
                reason = policy.rejection(self._held, fetched, self._wall.now())
                if reason is not None:
                    raise _Failure(reason, "no credentials" if fetched is None else
                                   f"{fetched.access_key_id} expire {iso_z(fetched.expiration)} (clock skew with STS?)")
            except Exception as exc:  # noqa: BLE001 - any failure of fetch keeps the old credentials
                self._failed(exc)
                self._attempted(False)
            else:
                self._install(fetched)
                self._attempted(True)
        finally:
            self._requested, self._last_end = False, trio.current_time()
            self._settled = generation  # a change during this attempt leaves _settled behind: _due() at once
            self._done = trio.Event()
            done.set()

    async def _fetch_guarded(self) -> RoleCredentials:
        """``fetch()`` under the timeout, while a watcher drops the held credentials if they expire meanwhile."""
        failure: Exception | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._drop_when_unserveable)
            try:
                with trio.move_on_after(self._fetch_timeout):
                    return await self._fetch()
                failure = _Failure("Timeout", f"no answer within {self._fetch_timeout:g}s")
            except Exception as exc:  # noqa: BLE001 - re-raised outside the nursery, not as an ExceptionGroup
                failure = exc
            finally:
                nursery.cancel_scope.cancel()
        raise failure

    async def _drop_when_unserveable(self) -> None:
        while self._held is not None:
            left = (policy.drop_at(self._held) - self._wall.now()).total_seconds()
            if left <= 0:
                self._drop_if_unserveable()
                return
            await trio.sleep(min(left, WAKE_INTERVAL))

    def _install(self, fetched: RoleCredentials) -> None:
        now = self._wall.now()
        issued = min(fetched.last_updated, now)
        point = policy.refresh_at(issued, fetched.expiration, jitter_fraction=self._random.random(),
                                  refresh_before_expiry=self._lead)
        recovered = self._failures
        self._failures, self._last_error, self._last_refresh = 0, None, now
        self._schedule(point, now)
        self._set_held(fetched)  # last: on_change sees the new status()
        left = fetched.expiration - now
        self._log.info("credentials %s installed%s; expire %s, next refresh %s", fetched.access_key_id,
                       f" after {recovered} failed attempt(s)" if recovered else "",
                       iso_z(fetched.expiration), iso_z(point))
        if left < policy.SHORT_ON_ARRIVAL:
            self._log.warning("credentials arrived with only %ds left: check the session duration and the clock "
                              "skew between this host and STS", left.total_seconds())

    def _failed(self, exc: Exception) -> None:
        now = self._wall.now()
        retryable = bool(getattr(exc, "retryable", True))
        delay = policy.retry_delay(self._held, now, self._failures, rand=self._random.random(),
                                   retryable=retryable, throttled=is_throttling(exc))
        self._failures += 1
        self._last_error = describe(exc)
        self._schedule(now + _dt.timedelta(seconds=delay), now)
        held = self.current()
        keeping = f"keeping {held.access_key_id} (expires {iso_z(held.expiration)})" if held else "none held"
        self._log.warning("credential refresh failed (attempt %d): %s; %s; retrying in %.1fs",
                          self._failures, self._last_error, keeping, delay)

    def _attempted(self, installed: bool) -> None:
        if self._on_attempt is not None:
            try:
                self._on_attempt(installed)
            except Exception:  # noqa: BLE001 - a broken observer must not stop rotation
                self._log.exception("on_attempt callback failed")

    def _schedule(self, point: _dt.datetime, now: _dt.datetime) -> None:
        self._target_wall = point
        self._target_mono = trio.current_time() + max((point - now).total_seconds(), 0.0)

    def _set_held(self, credentials: RoleCredentials | None) -> None:
        self._held = credentials
        if self._on_change is not None:
            try:
                self._on_change(credentials)
            except Exception:  # noqa: BLE001 - a broken observer must not stop rotation
                self._log.exception("on_change callback failed")


def describe(exc: BaseException) -> str:
    """``Code: message`` for a failure (AWS's code, else the exception's type), one line, truncated.

    Only the code and message are used, never request data, so never a secret.
    """
    code = getattr(exc, "code", None) or type(exc).__name__
    message = getattr(exc, "message", None) or str(exc)
    text = f"{code}: {message}" if message and message != code else str(code)
    text = " ".join(text.split())
    return text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 3] + "..."


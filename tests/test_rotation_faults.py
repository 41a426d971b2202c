"""The fault matrix of issue 5: rotation against the real STS client and backend, in virtual time.

Every cell runs the real pieces end to end, without sockets::

    client -> ImdsHandler(rotator) ;  Rotator -> fetch -> StsClient (httpx, SigV4)
           -> FaultyBackend (a fault schedule) -> sts_backend.Backend (SQLite in tmp_path)

The backend, the STS client, the rotator and the metadata handler share one
``TrioWallClock``, so ``autojump_clock`` drives them all and ``jump()`` moves
every wall clock of the host at once. A client asks the metadata handler for
credentials every 10 virtual seconds, as an SDK does; ``check()`` then asserts
invariants 1-7 of design.md on what it was served, and on the STS calls made.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import math
import random
import re

import httpx
import pytest
import trio

from agent import rotation as policy
from agent.rotator import WAKE_INTERVAL, Rotator
from agent.sts_client import StsClient
from metadata_server import ImdsHandler, MetadataConfig
from tests.test_sts_ops import ACCOUNT, Kit, allow, trust
from wire.clock import iso_z
from wire.http import HttpRequest

ROLE, SESSION = "app", "web-1"
CREDS_PATH = "/latest/meta-data/iam/security-credentials/" + ROLE
SAMPLE_EVERY = 10.0
STS_TIMEOUT = 10.0
# A fetch that fails takes up to 2 attempts x STS_TIMEOUT (+ the client's backoff);
# with nothing held the next attempt is at most STARTUP_CAP later.
RECOVERY = policy.STARTUP_CAP + 2 * STS_TIMEOUT + 2 + SAMPLE_EVERY
DOWN, SLOW, E500, THROTTLED, MALFORMED, EXPIRES = "down", "slow", "500", "throttled", "malformed", "expires"
_EXPIRATION = re.compile(rb"<Expiration>[^<]*</Expiration>")
_THROTTLED = (b'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
              b"<Code>Throttling</Code><Message>Rate exceeded</Message></Error>"
              b"<RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ErrorResponse>")
_MALFORMED = (b'<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>'
              b"<Credentials><AccessKeyId>ASIA")


@dataclasses.dataclass(frozen=True)
class Fault:
    """``kind`` from ``start`` to ``end`` (trio seconds); EXPIRES rewrites Expiration to now + ``seconds``."""

    start: float
    end: float
    kind: str
    seconds: float = 0.0


class FaultyBackend:
    """The real backend behind a fault schedule: an ``httpx.MockTransport`` handler."""

    def __init__(self, backend, clock, faults, latency: float = 0.0) -> None:
        self.backend, self.clock, self.faults, self.latency = backend, clock, list(faults), latency
        self.requests: list[float] = []
        self.in_flight = self.max_in_flight = 0

    def fault_at(self, t: float) -> Fault | None:
        return next((f for f in self.faults if f.start <= t < f.end), None)

    def answering(self, a: float, b: float) -> bool:
        """True when no fault overlaps [a, b]: the backend answered with good credentials throughout."""
        return not any(f.start < b and a < f.end for f in self.faults)

    def answers_for(self, a: float, b: float, need: float) -> bool:
        """True when [a, b] holds a fault-free stretch of at least ``need`` seconds."""
        t = a
        for f in sorted(self.faults, key=lambda f: f.start):
            if f.end <= t or f.start >= b:
                continue
            if f.start - t >= need:
                return True
            t = max(t, f.end)
        return b - t >= need

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(trio.current_time())
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency:
                await trio.sleep(self.latency)
            return await self._answer(request, self.fault_at(trio.current_time()))
        finally:
            self.in_flight -= 1

    async def _answer(self, request: httpx.Request, fault: Fault | None) -> httpx.Response:
        kind = fault.kind if fault else None
        if kind == DOWN:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        if kind == SLOW:
            await trio.sleep(3600)  # far beyond the client's timeout, which cancels this
        if kind == E500:
            return httpx.Response(500, text="<html><body>Internal Server Error</body></html>")
        if kind == THROTTLED:
            return httpx.Response(400, content=_THROTTLED, headers={"Content-Type": "text/xml"})
        if kind == MALFORMED:
            return httpx.Response(200, content=_MALFORMED, headers={"Content-Type": "text/xml"})
        response = self.backend.handle_httpx(request)
        if kind == EXPIRES and response.status_code == 200:
            when = iso_z(self.clock.now() + dt.timedelta(seconds=fault.seconds)).encode()
            body = _EXPIRATION.sub(b"<Expiration>" + when + b"</Expiration>", response.content)
            return httpx.Response(200, content=body, headers={"Content-Type": "text/xml"})
        return response


@dataclasses.dataclass(frozen=True)
class Sample:
    """What one client was served at one moment."""

    mono: float
    wall: dt.datetime
    status: int
    doc: dict
    held: object  # what the rotator last installed (on_change), served or not
    generation: int
    ready: bool
    last_error: str | None


class World:
    """Backend, STS client, agent (rotator + metadata handler) and a sampling client, for one cell.

    Args:
        tmp_path: where the backend's store lives.
        clock: the host's wall clock (a ``TrioWallClock``).
        faults: the backend's fault schedule.
        duration: ``DurationSeconds`` asked of STS.
        seed: for the rotator's and the STS client's jitter.
        latency: seconds every STS request takes.
    """

    def __init__(self, tmp_path, clock, faults=(), *, duration: int = 3600, seed: int = 7,
                 latency: float = 0.0) -> None:
        self.clock = clock
        self.kit = Kit(str(tmp_path / "data"), clock=clock)
        self.user = self.kit.user("agent", allow("sts:AssumeRole")).creds
        self.role_arn = self.kit.role(ROLE, trust(ACCOUNT), max_session=max(duration, 3600))
        self.backend = FaultyBackend(self.kit.backend, clock, faults, latency)
        self.sts = StsClient("http://127.0.0.1:8900", "us-east-1", clock=clock, timeout=STS_TIMEOUT,
                             transport=httpx.MockTransport(self.backend), max_attempts=2,
                             random=random.Random(seed).random)
        self.duration, self.random = duration, random.Random(seed)
        self.samples: list[Sample] = []
        self.installs: list[tuple[float, dt.datetime, object, int]] = []
        self.attempts: list[tuple[float, float]] = []
        self.jumps: list[float] = []
        self.in_flight = self.max_in_flight = 0
        self.generation = 0
        self.ready_at: dict[int, float] = {}
        self.stopped_at: dict[int, float] = {}

    # ---- the agent -------------------------------------------------------------------

    async def fetch(self):
        """The daemon's fetch: AssumeRole with the agent's key, as ``RoleCredentials``."""
        start = trio.current_time()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            got = await self.sts.assume_role(self.user, self.role_arn, SESSION, duration_seconds=self.duration)
            return got.to_role_credentials(self.clock.now())
        finally:
            self.in_flight -= 1
            self.attempts.append((start, trio.current_time()))

    async def start_agent(self, nursery: trio.Nursery) -> None:
        """A new agent process: a new rotator, holding nothing; returns once it is ready."""
        self.generation += 1
        generation = self.generation
        self.rotator = Rotator(self.fetch, self.clock, random=self.random,
                               on_change=lambda c: self.installs.append(
                                   (trio.current_time(), self.clock.now(), c, generation)))
        self.imds = ImdsHandler(MetadataConfig(), self.rotator, self.clock)
        self.scope = trio.CancelScope()

        async def agent(task_status=trio.TASK_STATUS_IGNORED):
            with self.scope:
                await self.rotator.run(task_status=task_status)

        await nursery.start(agent)
        self.ready_at[generation] = trio.current_time()

    def stop_agent(self) -> None:
        self.scope.cancel()
        self.stopped_at[self.generation] = trio.current_time()

    def jump(self, seconds: float) -> None:
        self.clock.jump(seconds)
        self.jumps.append(trio.current_time())

    # ---- the client ------------------------------------------------------------------

    def ask(self) -> tuple[int, dict]:
        """One SDK credential fetch: token PUT, credentials GET."""
        def request(method, *headers):
            target = "/latest/api/token" if method == "PUT" else CREDS_PATH
            return self.imds(HttpRequest(method, target, (("host", "169.254.169.254"), *headers), b"",
                                         ("127.0.0.1", 40000), ("127.0.0.1", 8169)))

        token = request("PUT", ("x-aws-ec2-metadata-token-ttl-seconds", "21600"))
        response = request("GET", ("x-aws-ec2-metadata-token", token.body.decode()))
        return response.status, json.loads(response.body)

    async def client(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            if self.generation:
                status, doc = self.ask()
                self.samples.append(Sample(trio.current_time(), self.clock.now(), status, doc,
                                           self.last_install(), self.generation,
                                           self.rotator.ready.is_set(), self.rotator.status().last_error))
            await trio.sleep(SAMPLE_EVERY)

    # ---- helpers for checks ------------------------------------------------------------

    def last_install(self):
        """What the current agent's rotator installed last (None: nothing, or dropped)."""
        return next((c for _, _, c, g in reversed(self.installs) if g == self.generation), None)

    def jumped_within(self, a: float, b: float) -> bool:
        return any(a <= j <= b for j in self.jumps)

    def errors(self) -> set[str]:
        return {s.last_error for s in self.samples if s.last_error}


def _time(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)


def check(w: World) -> int:
    """Invariants 1-6 on everything the client saw and every STS call made (7: the clock cells).

    Returns:
        How many credentials invariant 3 applied to (the backend answered before their five-minute mark).
    """
    assert w.samples, "the client never asked"
    for s in w.samples:
        _check_sample(w, s)
    checked = _check_overlap(w)
    # 5. one STS call at a time: one fetch in flight, one request on the wire.
    assert w.max_in_flight == 1 and w.backend.max_in_flight == 1
    _check_backoff(w)
    return checked


def _check_sample(w: World, s: Sample) -> None:
    assert s.status in (200, 503), s
    if s.status == 503:  # 4. a refusal is 503 JSON, never an empty or partial 200
        assert set(s.doc) == {"Code", "Message"}, s
        if s.ready:  # never empty after ready, unless nothing serveable could be had
            assert (not w.backend.answering(s.mono - RECOVERY, s.mono)
                    or w.jumped_within(s.mono - WAKE_INTERVAL - RECOVERY, s.mono)), s
        return
    assert s.ready, s  # 1. nothing is served before the first credentials are held
    assert s.doc["Code"] == "Success" and all(s.doc[k] for k in ("AccessKeyId", "SecretAccessKey", "Token"))
    expiration, issued = _time(s.doc["Expiration"]), _time(s.doc["LastUpdated"])
    left = (expiration - s.wall).total_seconds()
    assert left >= policy.SERVE_MARGIN.total_seconds() - 1, s  # 4. never expired (nor about to)
    if w.backend.answering(s.mono - 3600, s.mono) and not w.jumped_within(s.mono - 3600, s.mono):
        life = (expiration - issued).total_seconds()  # 2. half-life: >= 30 min left for 1 h+ sessions
        assert left >= (1800 if life >= 3600 else life / 2) - 1, s
        assert left >= life / 2 - 1, s
    if s.held is not None and not policy.serveable(s.held, s.wall):  # held past serveable only briefly after a jump
        assert w.jumped_within(s.mono - WAKE_INTERVAL, s.mono), s


def _check_overlap(w: World) -> int:
    """3. New credentials >= 5 min before the old expire, when the backend answered in the hour before."""
    installs = [i for i in w.installs if i[2] is not None]
    end, checked = w.samples[-1].mono, 0
    for n, (mono, wall, creds, generation) in enumerate(installs):
        def at(point: dt.datetime) -> float:  # the trio time of a wall-clock point (no jump in between)
            return mono + (point - wall).total_seconds()

        deadline = creds.expiration - policy.AWS_MIN_OVERLAP
        if at(deadline) > min(end, w.stopped_at.get(generation, end)) or w.jumped_within(mono, at(deadline)):
            continue
        # "The hour before", from the refresh point on (at most the half-life): a 1-h session
        # cannot be replaced before its refresh point, whatever the backend does then.
        half_life = creds.last_updated + (creds.expiration - creds.last_updated) / 2
        window = max(at(creds.expiration - dt.timedelta(hours=1)), at(half_life))
        # The policy's overlap call comes 10-40 s before the mark, and it never waits longer than
        # RETRY_CAP before it: the backend answering through the mark's last minute, or for RETRY_CAP and a
        # minute at a stretch, is asked while it answers.
        last_minute = at(deadline) - 60
        if not ((window <= last_minute and w.backend.answering(last_minute, at(deadline)))
                or w.backend.answers_for(window, at(deadline), policy.RETRY_CAP + 60)):
            continue
        checked += 1
        successor = next((i for i in installs[n + 1:] if i[3] == generation), None)
        assert successor is not None and successor[1] <= deadline, (creds, successor)
    return checked


def _check_backoff(w: World) -> None:
    """6. Failed refreshes back off: no hot loop, bounded attempts per outage, few while credentials are held."""
    for (_, end), (start, _) in zip(w.attempts, w.attempts[1:]):
        if not w.jumped_within(end, start):
            assert start - end >= policy.MIN_DELAY - 1e-9
    for f in w.backend.faults:
        tried = sum(f.start <= start < f.end for start, _ in w.attempts)
        assert tried <= (f.end - f.start) / 10 + 40, (f, tried)
    # While credentials are held (what a fleet's load is made of): the refresh, the ramp, then at least
    # RETRY_CAP/2 apart, except the overlap call and the last call.
    for n, (mono, _, creds, generation) in enumerate(w.installs):
        later = [i[0] for i in w.installs[n + 1:] if i[3] == generation]
        until = min(later[0] if later else w.samples[-1].mono, w.stopped_at.get(generation, math.inf))
        held = [start for start, _ in w.attempts if mono < start < until]
        if creds is None or not held or w.jumped_within(mono, until):
            continue
        bound = 3 + len(policy.RETRY_RAMP) + (until - held[0]) / (policy.RETRY_CAP / 2)
        assert len(held) <= bound, (creds, held)


async def live(w: World, seconds: float) -> None:
    """Run one agent with the client for ``seconds`` of virtual time."""
    async with trio.open_nursery() as nursery:
        await nursery.start(w.client)
        await w.start_agent(nursery)
        await trio.sleep_until(seconds)
        nursery.cancel_scope.cancel()


# ---- the matrix ----------------------------------------------------------------------------

async def test_backend_down_at_start(autojump_clock, wall_clock, tmp_path):
    w = World(tmp_path, wall_clock, [Fault(0, 600, DOWN)])
    await live(w, 2 * 3600)
    check(w)
    assert 600 <= w.ready_at[1] <= 600 + RECOVERY
    assert all(s.status == 503 for s in w.samples if s.mono < 600)
    assert "StsUnavailable: AssumeRole: cannot reach 127.0.0.1:8900: [Errno 111] Connection refused" in w.errors()


async def test_backend_down_longer_than_the_refresh_window(autojump_clock, wall_clock, tmp_path):
    w = World(tmp_path, wall_clock, [Fault(60, 3 * 3600, DOWN)])
    await live(w, 4 * 3600)
    check(w)
    first = w.installs[0][2]
    kept = [s.status for s in w.samples if s.mono < 3540]
    assert kept == [200] * len(kept) and len(kept) >= 350  # the old credentials, served until the margin
    assert all(s.status == 503 and s.held is None for s in w.samples if 3540 < s.mono < 3 * 3600)
    assert w.installs[1] == (pytest.approx(3540), first.expiration - policy.SERVE_MARGIN, None, 1)
    assert 3 * 3600 <= w.installs[2][0] <= 3 * 3600 + RECOVERY
    # A fleet's worth of restraint: a handful of attempts while the credentials were held (the old schedule
    # made about 30), among them the overlap call (10-40 s before the five-minute mark) and the last call.
    held = [start for start, _ in w.attempts if 0 < start < 3540]
    assert len(held) <= 8
    assert any(3300 - policy.OVERLAP_CALL[1] <= t <= 3300 - policy.OVERLAP_CALL[0] for t in held)
    assert 3540 - policy.LAST_CALL[1] <= held[-1] <= 3540 - policy.LAST_CALL[0]


@pytest.mark.parametrize("kind, error", [
    (DOWN, "Connection refused"),
    (SLOW, "StsUnavailable: AssumeRole: no answer from 127.0.0.1:8900 within 10 s"),
    (E500, "StsUnavailable: AssumeRole: HTTP 500 from 127.0.0.1:8900 without an AWS error document"),
    (THROTTLED, "Throttling: Rate exceeded"),
    (MALFORMED, "StsUnavailable: AssumeRole: malformed response from 127.0.0.1:8900"),
])
async def test_outage_ending_just_before_the_five_minute_mark(autojump_clock, wall_clock, tmp_path, caplog, kind,
                                                              error):
    """The backend fails from before the refresh point until one minute before the five-minute mark."""
    caplog.set_level(logging.DEBUG)
    w = World(tmp_path, wall_clock, [Fault(1000, 3240, kind)])
    await live(w, 3 * 3600)
    assert check(w) >= 4  # the first credentials and every later rotation
    first, second = w.installs[0][2], w.installs[1]
    assert 3240 <= second[0] and second[1] <= first.expiration - policy.AWS_MIN_OVERLAP
    (_, failed), (retried, _) = [a for a in w.attempts if 1000 <= a[0] < 3240][:2]
    if kind == THROTTLED:  # the backend is over capacity: no quick retries, the spread at once
        assert retried - failed >= policy.RETRY_CAP / 2
    else:  # a blip, maybe: the ramp's first retry
        assert retried - failed <= policy.RETRY_RAMP[0]
    assert any(error in e for e in w.errors()), w.errors()
    assert all(s.status == 200 for s in w.samples)
    secrets = {w.user.secret_access_key} | {v for _, _, c, _ in w.installs if c for v in (c.secret_access_key, c.token)}
    assert "refresh failed" in caplog.text and not any(secret in caplog.text for secret in secrets)


async def test_an_answering_stretch_of_the_retry_cap_inside_an_outage_is_used(autojump_clock, wall_clock, tmp_path):
    """Down from before the refresh point, up for RETRY_CAP and more from 1700 s, then down for hours."""
    up = 1800 + policy.RETRY_CAP + 100  # invariant 3 counts from the half-life (1800 s) on
    w = World(tmp_path, wall_clock, [Fault(1000, 1700, DOWN), Fault(up, 4 * 3600, DOWN)])
    await live(w, 4 * 3600)
    assert check(w) >= 1  # invariant 3 applied to the first credentials, and held
    assert 1700 <= w.installs[1][0] < up and w.installs[1][2] is not None


async def test_credentials_short_when_fetched_do_not_replace_better_ones(autojump_clock, wall_clock, tmp_path):
    w = World(tmp_path, wall_clock, [Fault(1000, 2400, EXPIRES, 8 * 60)])
    await live(w, 3 * 3600)
    check(w)
    assert all(s.status == 200 for s in w.samples)
    assert {_time(s.doc["Expiration"]) - _time(s.doc["LastUpdated"]) for s in w.samples} == {dt.timedelta(hours=1)}
    assert any(e.startswith("ShortAndNotNewer: ") for e in w.errors())


async def test_short_credentials_at_start_are_served_and_rotated_without_a_hot_loop(autojump_clock, wall_clock,
                                                                                   tmp_path):
    w = World(tmp_path, wall_clock, [Fault(0, 1200, EXPIRES, 8 * 60)])
    await live(w, 2 * 3600)
    check(w)
    assert w.ready_at[1] == 0  # better than nothing
    early = [i for i in w.installs if i[0] < 1200]
    assert 4 <= len(early) <= 7  # every ~4 min (the half-life of 8 min), no faster
    assert all(s.status == 200 for s in w.samples)


async def test_credentials_expired_when_fetched_at_start(autojump_clock, wall_clock, tmp_path):
    w = World(tmp_path, wall_clock, [Fault(0, 600, EXPIRES, -3600)])
    await live(w, 2 * 3600)
    check(w)
    assert 600 <= w.ready_at[1] <= 600 + RECOVERY
    assert any(e.startswith("ExpiredOnArrival: ") for e in w.errors())


async def test_credentials_expired_when_fetched_while_holding(autojump_clock, wall_clock, tmp_path):
    w = World(tmp_path, wall_clock, [Fault(1000, 5000, EXPIRES, -3600)])
    await live(w, 3 * 3600)
    check(w)
    assert all(s.status == 200 for s in w.samples if s.mono < 3540)
    assert all(s.status == 503 for s in w.samples if 3540 <= s.mono < 5000)
    assert any(s.status == 200 for s in w.samples if 5000 + RECOVERY <= s.mono)


async def test_wall_clock_jumps_forward_an_hour(autojump_clock, wall_clock, tmp_path):
    w = World(tmp_path, wall_clock)
    async with trio.open_nursery() as nursery:
        await nursery.start(w.client)
        await w.start_agent(nursery)
        await trio.sleep_until(605)
        w.jump(3600)  # the held credentials (issued at 0, 1 h) are now expired
        assert w.rotator.current() is None
        await trio.sleep_until(3 * 3600)
        nursery.cancel_scope.cancel()
    check(w)
    assert 605 <= w.attempts[1][0] <= 605 + WAKE_INTERVAL  # 7. re-checked at once
    assert [s.status for s in w.samples if s.mono > 605 + WAKE_INTERVAL] == [200] * len(
        [s for s in w.samples if s.mono > 605 + WAKE_INTERVAL])


async def test_wall_clock_jumps_back_an_hour(autojump_clock, wall_clock, tmp_path):
    w = World(tmp_path, wall_clock)
    async with trio.open_nursery() as nursery:
        await nursery.start(w.client)
        await w.start_agent(nursery)
        point = w.rotator.status().next_refresh
        await trio.sleep_until(605)
        w.jump(-3600)
        await trio.sleep_until(4 * 3600)
        nursery.cancel_scope.cancel()
    check(w)
    # expiry is by the wall clock: the refresh comes when the wall clock reaches the point again
    assert w.attempts[1][0] == pytest.approx((point - w.installs[0][1]).total_seconds() + 3600)
    assert all(s.status == 200 for s in w.samples)


async def test_agent_restarted(autojump_clock, wall_clock, tmp_path):
    w = World(tmp_path, wall_clock, [Fault(2000, 2600, DOWN)])
    async with trio.open_nursery() as nursery:
        await nursery.start(w.client)
        await w.start_agent(nursery)
        await trio.sleep_until(2005)
        w.stop_agent()  # the process dies; its successor starts with nothing, the backend is down
        await w.start_agent(nursery)
        await trio.sleep_until(3 * 3600)
        nursery.cancel_scope.cancel()
    check(w)
    assert w.ready_at[1] == 0 and 2600 <= w.ready_at[2] <= 2600 + RECOVERY
    assert all(s.status == 503 and not s.ready for s in w.samples if 2005 < s.mono < 2600)
    old = {i[2].access_key_id for i in w.installs if i[3] == 1 and i[2]}
    assert not old & {s.doc["AccessKeyId"] for s in w.samples if s.generation == 2 and s.status == 200}


async def test_a_thousand_clients_across_a_rotation_one_sts_call(autojump_clock, wall_clock, tmp_path):
    """1,000 SDK credential requests straddling a rotation, and 1,000 refresh requests during it."""
    w = World(tmp_path, wall_clock, latency=2.0)  # each STS call takes 2 s
    answers: list[int] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(w.client)
        await w.start_agent(nursery)
        point = trio.current_time() + (w.rotator.status().next_refresh - wall_clock.now()).total_seconds()

        async def sdk(at: float) -> None:
            await trio.sleep_until(at)
            status, doc = w.ask()
            answers.append(status)
            assert doc["AccessKeyId"] == w.rotator.current().access_key_id

        async def refresher(at: float) -> None:
            await trio.sleep_until(at)
            assert (await w.rotator.refresh_now()) is w.rotator.current() is not None

        with trio.fail_after(point + 60):  # virtual seconds: a caller left waiting fails, not hangs
            async with trio.open_nursery() as callers:
                for i in range(1000):
                    callers.start_soon(sdk, point - 5 + i * 0.01)  # 10 s around the refresh point
                    callers.start_soon(refresher, point + i * 0.0019)  # while the refresh is in flight
        nursery.cancel_scope.cancel()
    check(w)
    assert answers == [200] * 1000
    assert len(w.backend.requests) == 2  # the first credentials and one rotation

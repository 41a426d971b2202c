"""agent/rotator.py: the trio scheduler, in virtual time, with a scripted fetch.

The fault matrix with the real STS client and backend is tests/test_rotation_faults.py;
here a fake fetch lets each test steer the scheduler's own logic precisely.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import deque

import pytest
import trio

from agent import rotation as policy
from agent.errors import RETRYABLE_CODES, StsError, StsUnavailable
from agent.rotator import WAKE_INTERVAL, Rotator, RotatorStatus
from agent.sts_client import THROTTLING_CODES
from metadata_server.credentials import CredentialHolder, RoleCredentials
from tests.conftest import EPOCH

HOUR = 3600.0
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY"
TOKEN = "FwoGZXIvYXdzTOKENVALUE"


class Draw:
    """A ``random.Random`` stand-in that always draws the same value."""

    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


class ScriptedFetch:
    """An ``async () -> RoleCredentials`` that follows a script.

    Each script step is a lifetime in seconds (success), an exception (raised), or
    ``("slow", seconds)``. Once the script is done: ``then`` raised if given, else
    success with ``lifetime``.
    """

    def __init__(self, clock, *script, lifetime: float = HOUR, delay: float = 0.0,
                 then: BaseException | None = None) -> None:
        self.clock, self.script, self.lifetime, self.delay = clock, deque(script), lifetime, delay
        self.then = then
        self.calls: list[float] = []
        self.in_flight = self.max_in_flight = 0

    async def __call__(self) -> RoleCredentials:
        self.calls.append(trio.current_time())
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            step = self.script.popleft() if self.script else (self.then or self.lifetime)
            if self.delay:
                await trio.sleep(self.delay)
            if isinstance(step, BaseException):
                raise step
            if isinstance(step, tuple):
                await trio.sleep(step[1])
                step = self.lifetime
            now = self.clock.now()
            return RoleCredentials("app", f"ASIA{len(self.calls):016d}", SECRET, TOKEN,
                                   expiration=now + dt.timedelta(seconds=step), last_updated=now)
        finally:
            self.in_flight -= 1


def make(wall_clock, fetch, **kwargs) -> Rotator:
    kwargs.setdefault("random", Draw(0.0))
    return Rotator(fetch, wall_clock, **kwargs)


def left(creds: RoleCredentials, clock) -> float:
    return (creds.expiration - clock.now()).total_seconds()


# ---- start-up ---------------------------------------------------------------------------------

async def test_holder_stays_empty_until_the_first_credentials_then_ready(autojump_clock, wall_clock):
    fetch = ScriptedFetch(wall_clock, StsUnavailable("AssumeRole", "connection refused"),
                          StsUnavailable("AssumeRole", "connection refused"))
    rotator = make(wall_clock, fetch)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(rotator.run)
        await trio.sleep(0.2)  # first attempt failed; backing off
        assert rotator.current() is None and rotator.current() is None
        assert not rotator.ready.is_set() and not rotator.status().ready
        await rotator.ready.wait()
        assert len(fetch.calls) == 3 and trio.current_time() < 5  # fast start-up retries
        assert rotator.current() is rotator.current() is not None
        nursery.cancel_scope.cancel()


async def test_start_returns_only_once_credentials_are_held(autojump_clock, wall_clock):
    fetch = ScriptedFetch(wall_clock, *[StsUnavailable("AssumeRole", "down")] * 6)
    rotator = make(wall_clock, fetch)
    async with trio.open_nursery() as nursery:
        await nursery.start(rotator.run)
        assert rotator.current() is not None and len(fetch.calls) == 7 and rotator.ready.is_set()
        assert isinstance(rotator, CredentialHolder)
        nursery.cancel_scope.cancel()


# ---- schedule ----------------------------------------------------------------------------------

@pytest.mark.parametrize("draw, lifetime, lead, expected", [
    (0.0, HOUR, None, 1800), (0.5, HOUR, None, 1620), (1.0, HOUR, None, 1440),
    (0.0, 6 * HOUR, 1800, 5.5 * HOUR), (0.0, 900, None, 450),
])
async def test_refresh_at_half_life_with_jitter(autojump_clock, wall_clock, draw, lifetime, lead, expected):
    fetch = ScriptedFetch(wall_clock, lifetime=lifetime)
    rotator = make(wall_clock, fetch, random=Draw(draw), refresh_before_expiry=lead)
    async with trio.open_nursery() as nursery:
        await nursery.start(rotator.run)
        assert rotator.status().next_refresh == EPOCH + dt.timedelta(seconds=expected)
        await trio.sleep(expected * 3.5)
        nursery.cancel_scope.cancel()
    assert fetch.calls[:4] == pytest.approx([0, expected, 2 * expected, 3 * expected])


async def test_six_hours_of_rotation_never_serve_under_30_minutes(autojump_clock, wall_clock):
    import random

    fetch = ScriptedFetch(wall_clock)
    rotator = make(wall_clock, fetch, random=random.Random(5))
    async with trio.open_nursery() as nursery:
        await nursery.start(rotator.run)
        for _ in range(6 * 360):
            assert left(rotator.current(), wall_clock) >= 30 * 60
            await trio.sleep(10)
        nursery.cancel_scope.cancel()
    gaps = [b - a for a, b in zip(fetch.calls, fetch.calls[1:])]
    assert all(1440 <= g <= 1800 for g in gaps) and len(set(gaps)) > 1  # jittered, earlier only


# ---- single flight -----------------------------------------------------------------------------

async def test_a_thousand_concurrent_refresh_now_calls_make_one_fetch(autojump_clock, wall_clock):
    fetch = ScriptedFetch(wall_clock, delay=2.0)
    rotator = make(wall_clock, fetch)
    results = []
    async with trio.open_nursery() as nursery:
        await nursery.start(rotator.run)
        assert len(fetch.calls) == 1

        async def call():
            results.append(await rotator.refresh_now())

        with trio.fail_after(60):  # virtual seconds: a caller left waiting fails the test, not hangs it
            async with trio.open_nursery() as callers:
                for _ in range(1000):
                    callers.start_soon(call)
        nursery.cancel_scope.cancel()
    assert len(fetch.calls) == 2 and fetch.max_in_flight == 1
    assert len(results) == 1000 and {r.access_key_id for r in results} == {"ASIA0000000000000002"}


async def test_a_thousand_readers_across_a_rotation_always_see_valid_credentials(autojump_clock, wall_clock):
    fetch = ScriptedFetch(wall_clock, delay=3.0)
    rotator = make(wall_clock, fetch, random=Draw(0.5))  # refresh due at 1623 s (fetch 3 s)
    seen = []
    async with trio.open_nursery() as nursery:
        await nursery.start(rotator.run)

        async def client(at: float):
            await trio.sleep_until(at)
            seen.append(rotator.current())

        with trio.fail_after(1800):
            async with trio.open_nursery() as clients:
                for i in range(1000):
                    clients.start_soon(client, 1600 + i * 0.05)  # 1600..1650 s: straddles the refresh
        nursery.cancel_scope.cancel()
    assert len(fetch.calls) == 2 and fetch.max_in_flight == 1
    assert len(seen) == 1000 and all(c is not None and wall_clock.now() < c.expiration for c in seen)


# ---- a changed request (SIGHUP with another role) ------------------------------------------------

class RoleFetch:
    """A slow fetch that serves whichever role ``role`` names when it starts (as the daemon's does)."""

    def __init__(self, clock, delay: float = 5.0, fail: BaseException | None = None) -> None:
        self.clock, self.delay, self.fail, self.role = clock, delay, fail, "old-role"
        self.calls: list[tuple[float, str]] = []

    async def __call__(self) -> RoleCredentials:
        role = self.role
        self.calls.append((trio.current_time(), role))
        await trio.sleep(self.delay)
        if self.fail is not None and role == "old-role" and len(self.calls) > 1:
            raise self.fail
        now = self.clock.now()
        return RoleCredentials(role, f"ASIA{len(self.calls):016d}", SECRET, TOKEN,
                               expiration=now + dt.timedelta(hours=1), last_updated=now)


async def test_a_change_while_a_fetch_is_in_flight_gets_a_fetch_of_its_own_right_after(autojump_clock, wall_clock):
    fetch = RoleFetch(wall_clock)
    rotator = make(wall_clock, fetch)
    async with trio.open_nursery() as nursery:
        await nursery.start(rotator.run)
        due = (rotator.status().next_refresh - wall_clock.now()).total_seconds()
        await trio.sleep(due + 1)  # the rotation's fetch (old role) has been in flight for 1 s
        assert [role for _, role in fetch.calls] == ["old-role", "old-role"]
        fetch.role, asked = "new-role", trio.current_time()  # SIGHUP: the daemon switched the role
        got = await rotator.refresh_now(changed=True)
        assert got.role_name == "new-role" and rotator.current().role_name == "new-role"
        assert [role for _, role in fetch.calls] == ["old-role", "old-role", "new-role"]
        assert fetch.calls[2][0] == pytest.approx(asked + 4)  # as soon as the old-role fetch ended
        assert trio.current_time() == pytest.approx(asked + 9)
        await trio.sleep(60)
        assert len(fetch.calls) == 3  # and then back to the schedule: no loop
        nursery.cancel_scope.cancel()


async def test_a_plain_refresh_still_joins_the_fetch_in_flight(autojump_clock, wall_clock):
    fetch = RoleFetch(wall_clock)
    rotator = make(wall_clock, fetch)
    async with trio.open_nursery() as nursery:
        await nursery.start(rotator.run)
        due = (rotator.status().next_refresh - wall_clock.now()).total_seconds()
        await trio.sleep(due + 1)
        asked = trio.current_time()
        await rotator.refresh_now()
        assert len(fetch.calls) == 2 and trio.current_time() == pytest.approx(asked + 4)
        nursery.cancel_scope.cancel()


async def test_a_change_is_fetched_at_once_even_while_backing_off(autojump_clock, wall_clock):
    denied = StsError("AssumeRole", "AccessDenied", "not authorized", 403, "req-1")
    fetch = RoleFetch(wall_clock, delay=1.0, fail=denied)
    rotator = make(wall_clock, fetch, random=Draw(0.9))  # a non-retryable error then waits 855 s
    async with trio.open_nursery() as nursery:
        await nursery.start(rotator.run)
        due = (rotator.status().next_refresh - wall_clock.now()).total_seconds()
        await trio.sleep(due + 10)  # the refresh was denied: non-retryable, the next try is minutes away
        assert rotator.status().last_error.startswith("AccessDenied") and len(fetch.calls) == 2
        fetch.role, asked = "new-role", trio.current_time()  # the operator fixed the role and reloaded
        got = await rotator.refresh_now(changed=True)
        assert got.role_name == "new-role" and trio.current_time() == pytest.approx(asked + 1)
        assert rotator.current().role_name == "new-role" and rotator.status().last_error is None
        nursery.cancel_scope.cancel()


# ---- failures ------------------------------------------------------------------------------------

async def test_failures_keep_the_old_credentials_and_back_off_by_the_ramp_then_the_spread(autojump_clock, wall_clock,
                                                                                         caplog):
    caplog.set_level(logging.INFO, "rolecall.agent.rotation")
    down = StsUnavailable("AssumeRole", "connection refused")
    fetch = ScriptedFetch(wall_clock, 3600, *[down] * 4)
    changes = []
    rotator = make(wall_clock, fetch, random=Draw(0.9), on_change=changes.append)
    async with trio.open_nursery() as nursery:
        await nursery.start(rotator.run)
        first = rotator.current()
        await trio.sleep(1500)  # refresh due at 1476 s
        assert rotator.current() is first and rotator.status().last_error.startswith("StsUnavailable")
        await trio.sleep(2000)
        nursery.cancel_scope.cancel()
    gaps = [b - a for a, b in zip(fetch.calls[1:], fetch.calls[2:])]
    # each drawn over the upper half of its ceiling (0.9 -> 0.95 of it): the ramp (2 s, 16 s), then the spread
    assert gaps[:3] == pytest.approx([1.9, 15.2, 0.95 * policy.RETRY_CAP])
    assert len(changes) == 2 and changes[1].access_key_id == "ASIA0000000000000006"
    lines = [r.getMessage() for r in caplog.records if "refresh failed" in r.getMessage()]
    assert len(lines) == 4 and "connection refused" in lines[0] and "keeping ASIA" in lines[0]
    assert not any(SECRET in r.getMessage() or TOKEN in r.getMessage() for r in caplog.records)


async def test_throttled_retries_skip_the_ramp_and_still_make_the_overlap_and_last_calls(autojump_clock,
                                                                                         wall_clock):
    throttled = StsError("AssumeRole", "Throttling", "Rate exceeded", 400, "req-1")
    fetch = ScriptedFetch(wall_clock, 3600, *[throttled] * 8)
    changes = []
    rotator = make(wall_clock, fetch, random=Draw(0.9), on_change=changes.append)
    async with trio.open_nursery() as nursery:
        await nursery.start(rotator.run)
        await trio.sleep(3539)
        assert rotator.current() is changes[0] and rotator.status().last_error == "Throttling: Rate exceeded"
        await trio.sleep(2)
        assert rotator.current() is None  # dropped on time: the backend never answered
        await trio.sleep(200)
        nursery.cancel_scope.cancel()
    spread = 0.95 * policy.RETRY_CAP
    mark, drop = 3600 - policy.AWS_MIN_OVERLAP.total_seconds(), 3600 - policy.SERVE_MARGIN.total_seconds()
    assert fetch.calls[1:6] == pytest.approx([
        1476, 1476 + spread, 1476 + 2 * spread,  # the refresh point, then the spread at once: no quick retries
        mark - 13,  # the overlap call: 10-40 s before the five-minute mark (the draw, 0.9, puts it at 13)
        drop - 0.55,  # the last call: 0.5-1 s before the drop point
    ])
    # dropped: the start-up schedule, doubling past STARTUP_CAP for Throttling (0.9 of 8, 16, 32, 64 s)
    gaps = [b - a for a, b in zip(fetch.calls[5:], fetch.calls[6:])]
    assert gaps == pytest.approx([7.2, 14.4, 28.8, 57.6]) and gaps[-1] > policy.STARTUP_CAP
    assert [c and c.access_key_id for c in changes] == ["ASIA0000000000000001", None, "ASIA0000000000000010"]


async def test_a_request_while_backing_off_comes_after_the_request_gap_not_the_spread(autojump_clock, wall_clock):
    down = StsUnavailable("AssumeRole", "connection refused")
    fetch = ScriptedFetch(wall_clock, 3600, *[down] * 8)
    rotator = make(wall_clock, fetch, random=Draw(0.9))
    async with trio.open_nursery() as nursery:
        await nursery.start(rotator.run)
        first = rotator.current()
        await trio.sleep(1600)  # failed at 1476, 1477.9 and 1493.1; the next retry is 855 s away
        assert len(fetch.calls) == 4 and rotator.status().next_refresh == first.last_updated + dt.timedelta(
            seconds=1493.1 + 0.95 * policy.RETRY_CAP)
        asked = trio.current_time()
        for _ in range(5):  # an operator's `rolecall agent refresh`, in a loop: still failing
            assert await rotator.refresh_now() is first
        assert fetch.calls[4:] == pytest.approx([asked + n * policy.REQUEST_GAP for n in range(5)])  # no hot loop
        got = await rotator.refresh_now()  # the backend is back
        assert got is rotator.current() and got is not first and fetch.calls[-1] == pytest.approx(asked + 10)
        nursery.cancel_scope.cancel()


async def test_expired_credentials_are_dropped_not_served(autojump_clock, wall_clock):
    fetch = ScriptedFetch(wall_clock, 3600, then=StsUnavailable("AssumeRole", "down"))
    dropped_at = []
    rotator = make(wall_clock, fetch, random=Draw(0.9),
                           on_change=lambda c: c is None and dropped_at.append(wall_clock.now()))
    async with trio.open_nursery() as nursery:
        await nursery.start(rotator.run)
        await trio.sleep(2 * HOUR)
        nursery.cancel_scope.cancel()
    assert rotator.current() is None and not rotator.status().ready
    assert dropped_at == [EPOCH + dt.timedelta(seconds=HOUR) - policy.SERVE_MARGIN]
    after = [t for t in fetch.calls if t > HOUR]
    assert max(b - a for a, b in zip(after, after[1:])) <= policy.STARTUP_CAP  # clients are refused: retry fast


async def test_credentials_expiring_during_a_slow_fetch_are_dropped_on_time(autojump_clock, wall_clock):
    fetch = ScriptedFetch(wall_clock, 3600, ("slow", 3000))
    dropped = []
    rotator = make(wall_clock, fetch, fetch_timeout=3000,  # the refresh at 1800 hangs until 4800
                           on_change=lambda c: c is None and dropped.append(trio.current_time()))
    async with trio.open_nursery() as nursery:
        await nursery.start(rotator.run)
        await trio.sleep(3541)
        assert rotator.current() is None and rotator.current() is None and len(fetch.calls) == 2
        await trio.sleep(1300)
        assert rotator.current() is not None
        nursery.cancel_scope.cancel()
    assert dropped == [3600 - policy.SERVE_MARGIN.total_seconds()]


async def test_a_hung_fetch_times_out_and_is_retried(autojump_clock, wall_clock):
    fetch = ScriptedFetch(wall_clock, ("slow", 10_000))
    rotator = make(wall_clock, fetch, fetch_timeout=20)
    async with trio.open_nursery() as nursery:
        await nursery.start(rotator.run)
        assert trio.current_time() == pytest.approx(20.5) and len(fetch.calls) == 2
        nursery.cancel_scope.cancel()


async def test_non_retryable_errors_skip_the_ramp(autojump_clock, wall_clock):
    denied = StsError("AssumeRole", "AccessDenied", "not authorized", 403)
    fetch = ScriptedFetch(wall_clock, 6 * HOUR, denied, denied)
    rotator = make(wall_clock, fetch, random=Draw(0.5))
    async with trio.open_nursery() as nursery:
        await nursery.start(rotator.run)
        await trio.sleep(4 * HOUR)
        nursery.cancel_scope.cancel()
    assert [b - a for a, b in zip(fetch.calls[1:], fetch.calls[2:4])] == pytest.approx([0.75 * policy.RETRY_CAP] * 2)


async def test_short_credentials_expiring_before_those_held_are_not_installed(autojump_clock, wall_clock):
    fetch = ScriptedFetch(wall_clock, 3600, 500, 3600)
    rotator = make(wall_clock, fetch, random=Draw(0.0))
    async with trio.open_nursery() as nursery:
        await nursery.start(rotator.run)
        await trio.sleep(1800.2)  # the refresh got 500-s credentials; the retry is due 0.5 s later
        assert rotator.current().access_key_id.endswith("1")
        assert rotator.status().last_error.startswith("ShortAndNotNewer: ASIA0000000000000002 expire ")
        await trio.sleep(5)
        assert rotator.current().access_key_id.endswith("3") and rotator.status().last_error is None
        nursery.cancel_scope.cancel()


async def test_a_broken_on_change_callback_does_not_stop_rotation(autojump_clock, wall_clock, caplog):
    def boom(_):
        raise RuntimeError("observer bug")

    fetch = ScriptedFetch(wall_clock)
    rotator = make(wall_clock, fetch, on_change=boom)
    async with trio.open_nursery() as nursery:
        await nursery.start(rotator.run)
        await trio.sleep(2 * HOUR + 1)
        nursery.cancel_scope.cancel()
    assert len(fetch.calls) == 5 and rotator.current() is not None
    assert "on_change callback failed" in caplog.text


# ---- clocks -----------------------------------------------------------------------------------------

async def test_wall_clock_jump_forward_triggers_an_immediate_recheck(autojump_clock, wall_clock, caplog):
    fetch = ScriptedFetch(wall_clock, lifetime=6 * HOUR)
    rotator = make(wall_clock, fetch)
    async with trio.open_nursery() as nursery:
        await nursery.start(rotator.run)
        await trio.sleep(600)
        wall_clock.jump(4 * HOUR)  # NTP step: past the refresh point (3 h)
        jumped = trio.current_time()
        await trio.sleep(WAKE_INTERVAL + 1)
        assert len(fetch.calls) == 2 and fetch.calls[1] - jumped <= WAKE_INTERVAL
        assert left(rotator.current(), wall_clock) > 5.9 * HOUR
        nursery.cancel_scope.cancel()
    assert "wall clock jumped +14400s" in caplog.text


async def test_wall_clock_jump_backward_reschedules_by_the_wall_clock(autojump_clock, wall_clock, caplog):
    fetch = ScriptedFetch(wall_clock)
    rotator = make(wall_clock, fetch)
    async with trio.open_nursery() as nursery:
        await nursery.start(rotator.run)
        await trio.sleep(600)
        wall_clock.jump(-HOUR)  # the refresh point (wall +30 min) is now 80 min away
        await trio.sleep(WAKE_INTERVAL + 1)
        assert rotator.status().next_refresh == EPOCH + dt.timedelta(minutes=30)
        await trio.sleep(HOUR + 20 * 60)
        nursery.cancel_scope.cancel()
    assert fetch.calls[1] == pytest.approx(600 + 80 * 60)
    assert "wall clock jumped -3600s" in caplog.text


async def test_resume_from_sleep_with_expired_credentials(autojump_clock, wall_clock):
    fetch = ScriptedFetch(wall_clock)
    rotator = make(wall_clock, fetch)
    async with trio.open_nursery() as nursery:
        await nursery.start(rotator.run)
        await trio.sleep(300)
        wall_clock.jump(8 * HOUR)  # suspended overnight: monotonic time stood still
        assert rotator.current() is None  # the strict view refuses them at once
        resumed = trio.current_time()
        await trio.sleep(WAKE_INTERVAL + 1)
        assert fetch.calls[1] - resumed <= WAKE_INTERVAL
        assert left(rotator.current(), wall_clock) == pytest.approx(HOUR, abs=WAKE_INTERVAL + 1)
        nursery.cancel_scope.cancel()


async def test_resume_while_backing_off_retries_at_once(autojump_clock, wall_clock):
    fetch = ScriptedFetch(wall_clock, 3600, then=StsUnavailable("AssumeRole", "down"))
    rotator = make(wall_clock, fetch, random=Draw(0.99))
    async with trio.open_nursery() as nursery:
        await nursery.start(rotator.run)
        await trio.sleep(1800 + 600)  # a long backoff sleep is under way
        calls = len(fetch.calls)
        wall_clock.jump(600)
        await trio.sleep(WAKE_INTERVAL + 1)
        assert len(fetch.calls) == calls + 1
        nursery.cancel_scope.cancel()


# ---- status ---------------------------------------------------------------------------------------

async def test_status_snapshot(autojump_clock, wall_clock):
    fetch = ScriptedFetch(wall_clock, StsUnavailable("AssumeRole", "connection refused"))
    rotator = make(wall_clock, fetch, role_arn="arn:aws:iam::123456789012:role/app", random=Draw(0.5))
    before = rotator.status()
    assert before == RotatorStatus(False, "arn:aws:iam::123456789012:role/app", None, None, None, None, None)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(rotator.run)
        await trio.sleep(0.1)
        failing = rotator.status()
        assert failing.last_error == "StsUnavailable: AssumeRole: connection refused" and not failing.ready
        await rotator.ready.wait()
        now = wall_clock.now()
        status = rotator.status()
        nursery.cancel_scope.cancel()
    assert status.ready and status.access_key_id == "ASIA0000000000000002" and status.last_error is None
    assert status.expiration == now + dt.timedelta(hours=1) and status.last_refresh == now
    assert status.next_refresh == now + dt.timedelta(seconds=1620)
    assert all(t.tzinfo is not None for t in (status.expiration, status.last_refresh, status.next_refresh))
    assert SECRET not in repr(status) and TOKEN not in repr(status)


async def test_an_explicit_refresh_point(autojump_clock, wall_clock):
    fetch = ScriptedFetch(wall_clock)
    rotator = Rotator(fetch, wall_clock, refresh_before_expiry=1200, random=Draw(0.0))
    async with trio.open_nursery() as nursery:
        await nursery.start(rotator.run)
        assert rotator.current() is not None
        assert rotator.status().next_refresh == EPOCH + dt.timedelta(minutes=40)
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("error, throttled", [
    (StsError("AssumeRole", "Throttling", "Rate exceeded", 400), True),
    (StsError("AssumeRole", "RequestLimitExceeded", "", 400), True),
    (StsUnavailable("AssumeRole", "HTTP 429 without an AWS error document", 429), True),
    (StsError("AssumeRole", "InternalFailure", "", 500), False),  # retryable, but not the backend's rate
    (StsUnavailable("AssumeRole", "connection refused"), False),
])
async def test_throttling_is_told_apart_from_other_retryable_failures(autojump_clock, wall_clock, error, throttled):
    fetch = ScriptedFetch(wall_clock, 3600, error)
    rotator = make(wall_clock, fetch, random=Draw(0.0))
    async with trio.open_nursery() as nursery:
        await nursery.start(rotator.run)
        await trio.sleep(1800 + policy.RETRY_CAP)  # the refresh at 1800 s failed once, the retry installed
        nursery.cancel_scope.cancel()
    assert fetch.calls[2] - fetch.calls[1] == (policy.RETRY_CAP / 2 if throttled else policy.RETRY_RAMP[0] / 2)
    assert THROTTLING_CODES <= RETRYABLE_CODES


def test_describe_is_one_short_line_with_the_aws_code():
    from agent.rotator import describe

    assert describe(StsError("AssumeRole", "AccessDenied", "not\nauthorized", 403)) == "AccessDenied: not authorized"
    assert describe(StsUnavailable("AssumeRole", "timed out")) == "StsUnavailable: AssumeRole: timed out"
    assert describe(ValueError()) == "ValueError"
    long = describe(RuntimeError("x" * 1000))
    assert len(long) == 300 and long.endswith("...")

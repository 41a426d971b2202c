"""agent/rotation.py: the pure rotation policy, by table and by property."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import rotation as policy
from agent.rotation import State
from metadata_server.credentials import RoleCredentials

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
MIN = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)


def creds(lifetime: dt.timedelta, issued: dt.datetime = T0, key: str = "ASIAEXAMPLE") -> RoleCredentials:
    return RoleCredentials("app", key, "secret", "token", expiration=issued + lifetime, last_updated=issued)


# ---- refresh_at ------------------------------------------------------------------------

@pytest.mark.parametrize("lifetime, jitter, lead, expected_after_issue", [
    (HOUR, 0.0, None, 30 * MIN),  # half-life
    (HOUR, 1.0, None, 24 * MIN),  # minus a tenth of the lifetime at most
    (HOUR, 0.5, None, 27 * MIN),
    (6 * HOUR, 0.0, None, 3 * HOUR),  # real IMDS sessions: half-life
    (15 * MIN, 0.0, None, 7.5 * MIN),  # shortest AssumeRole session
    (6 * HOUR, 0.0, 30 * MIN, 5.5 * HOUR),  # explicit lead
    (6 * HOUR, 1.0, 30 * MIN, 5.5 * HOUR - 36 * MIN),  # explicit lead, still jittered earlier
    (HOUR, 0.0, 2 * MIN, 50 * MIN),  # explicit lead below botocore's mandatory window: 10 min
    (HOUR, 0.0, 2 * HOUR, 6 * MIN),  # lead longer than the lifetime: a tenth after issue, no loop
    (dt.timedelta(0), 0.5, None, dt.timedelta(0)),  # no lifetime: at once
])
def test_refresh_at_table(lifetime, jitter, lead, expected_after_issue):
    point = policy.refresh_at(T0, T0 + lifetime, jitter_fraction=jitter, refresh_before_expiry=lead)
    assert point - T0 == expected_after_issue


def test_refresh_at_clamps_out_of_range_jitter_draws():
    assert policy.refresh_at(T0, T0 + HOUR, jitter_fraction=7.0) == T0 + 24 * MIN
    assert policy.refresh_at(T0, T0 + HOUR, jitter_fraction=-1.0) == T0 + 30 * MIN


lifetimes = st.integers(min_value=15 * 60, max_value=36 * 3600).map(lambda s: dt.timedelta(seconds=s))
draws = st.floats(min_value=0.0, max_value=1.0)


@given(lifetime=lifetimes, jitter=draws)
def test_refresh_point_lies_between_half_life_and_a_tenth_earlier(lifetime, jitter):
    point = policy.refresh_at(T0, T0 + lifetime, jitter_fraction=jitter)
    assert T0 + lifetime / 2 - lifetime / 10 <= point <= T0 + lifetime / 2


@given(lifetime=lifetimes, jitter=draws)
def test_long_sessions_keep_30_minutes_short_ones_half_their_life(lifetime, jitter):
    remaining = T0 + lifetime - policy.refresh_at(T0, T0 + lifetime, jitter_fraction=jitter)
    assert remaining >= lifetime / 2
    if lifetime >= HOUR:
        assert remaining >= 30 * MIN


@given(lifetime=lifetimes, jitter=draws, lead=st.integers(min_value=0, max_value=48 * 3600))
def test_explicit_lead_stays_inside_the_lifetime(lifetime, jitter, lead):
    point = policy.refresh_at(T0, T0 + lifetime, jitter_fraction=jitter,
                              refresh_before_expiry=dt.timedelta(seconds=lead))
    assert T0 <= point <= T0 + lifetime  # never before issue, even with a lead longer than the lifetime
    assert point <= T0 + lifetime - min(policy.MIN_EXPLICIT_LEAD, lifetime * 0.9)


# ---- state and serveable ---------------------------------------------------------------------

@pytest.mark.parametrize("offset, expected", [
    (dt.timedelta(0), State.FRESH),
    (29 * MIN, State.FRESH),
    (30 * MIN, State.REFRESH_DUE),
    (53 * MIN, State.REFRESH_DUE),
    (54 * MIN, State.EXPIRING),  # five minutes (plus the margin) before expiry
    (58 * MIN + dt.timedelta(seconds=59), State.EXPIRING),
    (59 * MIN, State.EXPIRED),  # the serving margin
    (HOUR, State.EXPIRED),
    (2 * HOUR, State.EXPIRED),
])
def test_state_table(offset, expected):
    assert policy.state(creds(HOUR), T0 + offset) is expected


def test_state_with_explicit_lead():
    six = creds(6 * HOUR)
    assert policy.state(six, T0 + 5 * HOUR, refresh_before_expiry=30 * MIN) is State.FRESH
    assert policy.state(six, T0 + 5.5 * HOUR, refresh_before_expiry=30 * MIN) is State.REFRESH_DUE


def test_serveable_until_the_margin():
    held = creds(HOUR)
    assert policy.serveable(held, T0 + HOUR - policy.SERVE_MARGIN - dt.timedelta(microseconds=1))
    assert not policy.serveable(held, T0 + HOUR - policy.SERVE_MARGIN)
    assert not policy.serveable(None, T0)
    assert policy.drop_at(held) == T0 + 59 * MIN


# ---- backoff ------------------------------------------------------------------------------------

@pytest.mark.parametrize("attempt, rand, expected", [
    (0, 1.0, 1.0), (1, 1.0, 2.0), (3, 1.0, 8.0), (8, 1.0, 256.0), (9, 1.0, 300.0), (500, 1.0, 300.0),
    (4, 0.5, 8.0), (0, 0.0, policy.MIN_DELAY),  # full jitter, floored so a draw of 0 is no hot loop
])
def test_backoff_table(attempt, rand, expected):
    assert policy.backoff(attempt, base=1.0, cap=300.0, rand=rand) == expected


attempts = st.integers(min_value=0, max_value=10_000)
caps = st.floats(min_value=0.01, max_value=3600.0)
bases = st.floats(min_value=0.01, max_value=60.0)
rands = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)


@given(attempt=attempts, base=bases, cap=caps, rand=rands)
def test_backoff_is_bounded(attempt, base, cap, rand):
    delay = policy.backoff(attempt, base=base, cap=cap, rand=rand)
    assert min(policy.MIN_DELAY, cap) <= delay <= cap


@given(attempt=attempts, base=bases, cap=caps, more=st.floats(min_value=0.0, max_value=3600.0), rand=rands)
def test_backoff_is_monotone_in_cap_and_attempt(attempt, base, cap, more, rand):
    delay = policy.backoff(attempt, base=base, cap=cap, rand=rand)
    assert delay <= policy.backoff(attempt, base=base, cap=cap + more, rand=rand)
    assert delay <= policy.backoff(attempt + 1, base=base, cap=cap, rand=rand)


# ---- retry_delay / retry_after -----------------------------------------------------------------

CAP = policy.RETRY_CAP
OVERLAP = policy.AWS_MIN_OVERLAP.total_seconds()
MARGIN = policy.SERVE_MARGIN.total_seconds()


def test_start_up_retries_are_fast_then_capped():
    delays = [policy.retry_delay(None, T0, n, rand=0.999999) for n in range(12)]
    assert delays[0] < 1 and delays[3] < 5
    assert max(delays) <= policy.STARTUP_CAP and delays[-1] == pytest.approx(policy.STARTUP_CAP, rel=1e-3)


def test_expired_credentials_count_as_none():
    expired = creds(HOUR, issued=T0 - 2 * HOUR)
    assert policy.retry_delay(expired, T0, 20, rand=0.999) <= policy.STARTUP_CAP


def test_throttled_start_up_retries_back_off_further():
    assert policy.retry_delay(None, T0, 20, rand=0.5, throttled=True) == pytest.approx(policy.STARTUP_THROTTLED_CAP / 2)
    assert policy.retry_delay(None, T0, 20, rand=0.5) == pytest.approx(policy.STARTUP_CAP / 2)


# Held 6-h credentials three hours in: far from both deadlines, the schedule alone decides.
@pytest.mark.parametrize("failures, rand, retryable, throttled, expected", [
    (0, 0.0, True, False, 1.0), (0, 0.999, True, False, 1.999),  # the ramp: 1-2 s ...
    (1, 0.0, True, False, 8.0), (1, 0.999, True, False, 15.992),  # ... 8-16 s ...
    (2, 0.0, True, False, CAP / 2), (2, 0.5, True, False, 0.75 * CAP), (40, 0.999, True, False, 0.9995 * CAP),
    (0, 0.0, True, True, CAP / 2), (0, 0.5, True, True, 0.75 * CAP),  # Throttling: the spread at once
    (0, 0.5, False, False, 0.75 * CAP),  # AccessDenied...: the spread at once
])
def test_retry_schedule_table(failures, rand, retryable, throttled, expected):
    held = creds(6 * HOUR)
    delay = policy.retry_delay(held, T0 + 3 * HOUR, failures, rand=rand, retryable=retryable, throttled=throttled)
    assert delay == pytest.approx(expected)


def test_the_overlap_call_lands_10_to_40_s_before_the_five_minute_mark():
    held = creds(HOUR)
    mark = held.expiration - policy.AWS_MIN_OVERLAP
    now = mark - 2 * MIN  # the spread (450 s or more) would sleep past the mark: the overlap call instead
    for rand, before in [(0.0, 40.0), (0.5, 25.0), (0.999, 10.03)]:
        delay = policy.retry_delay(held, now, 5, rand=rand)
        assert (mark - now).total_seconds() - delay == pytest.approx(before)
    # a quick ramp retry that falls before the overlap call is kept
    assert policy.retry_delay(held, now, 0, rand=0.5) == pytest.approx(1.5)


def test_past_the_overlap_call_the_last_call_lands_half_a_second_to_a_second_before_the_drop():
    held = creds(HOUR)
    drop = policy.drop_at(held)
    now = held.expiration - policy.AWS_MIN_OVERLAP - dt.timedelta(seconds=20)  # just after an overlap call
    for rand, before in [(0.0, 1.0), (0.999, 0.5005)]:
        delay = policy.retry_delay(held, now, 5, rand=rand)
        assert (drop - now).total_seconds() - delay == pytest.approx(before)
    # past the last call: the start-up schedule (the drop comes within the second)
    late = drop - dt.timedelta(seconds=0.7)
    assert policy.retry_delay(held, late, 9, rand=0.5) == pytest.approx(policy.STARTUP_CAP / 2)
    assert policy.retry_delay(held, late, 9, rand=0.5, throttled=True) == pytest.approx(
        policy.STARTUP_THROTTLED_CAP / 2)


def test_an_agent_near_its_deadline_retries_promptly():
    held = creds(HOUR)
    # 45 s before the mark: the next attempt is the overlap call, within 35 s, not a spread of minutes
    near = held.expiration - policy.AWS_MIN_OVERLAP - dt.timedelta(seconds=45)
    assert 5 <= policy.retry_delay(held, near, 9, rand=0.5, throttled=True) <= 35
    # 3 s before the drop: the last call, within 2.5 s
    near = policy.drop_at(held) - dt.timedelta(seconds=3)
    assert 2 <= policy.retry_delay(held, near, 9, rand=0.5, throttled=True) <= 2.5


def test_the_cores_take_seconds_left_and_the_faces_measure_them():
    held = creds(HOUR)
    now = T0 + 41 * MIN + dt.timedelta(microseconds=250)
    left = (held.expiration - now).total_seconds()
    assert policy.retry_delay(held, now, 3, rand=0.3, throttled=True) == policy.retry_after(left, 3, 0.3,
                                                                                           throttled=True)
    assert policy.retry_delay(None, now, 3, rand=0.3) == policy.retry_after(None, 3, 0.3)
    assert policy.serveable_for(MARGIN + 1e-6) and not policy.serveable_for(MARGIN) and not policy.serveable_for(None)
    assert policy.refresh_after(3600.0, 0.5) == 1620.0
    assert policy.refresh_after(21600.0, 1.0, 1800.0) == 5.5 * 3600 - 36 * 60


lefts = st.floats(min_value=0.0, max_value=36 * 3600.0)


@settings(max_examples=300)
@given(left=lefts, failures=attempts, rand=rands, retryable=st.booleans(), throttled=st.booleans())
def test_retry_never_sleeps_past_the_overlap_call_or_the_last_call(left, failures, rand, retryable, throttled):
    delay = policy.retry_after(left, failures, rand, retryable=retryable, throttled=throttled)
    assert delay >= policy.MIN_DELAY
    if not policy.serveable_for(left):
        cap = policy.STARTUP_THROTTLED_CAP if throttled else policy.STARTUP_CAP
        assert delay <= cap
        return
    assert delay <= CAP  # any answering stretch longer than the cap gets an attempt
    to_mark, to_drop = left - OVERLAP, left - MARGIN
    if to_mark > policy.OVERLAP_CALL[1]:  # 3. an attempt in the 10-40 s before the five-minute mark
        assert delay <= to_mark - policy.OVERLAP_CALL[0]
    elif to_drop > policy.LAST_CALL[1]:  # 4. an attempt in the last second before the drop
        assert delay <= to_drop - policy.LAST_CALL[0]


@settings(max_examples=300)
@given(left=lefts, failures=attempts, rand=rands, more=rands, retryable=st.booleans())
def test_retry_is_monotone_in_the_draw_and_failures_and_throttling_backs_off_further(left, failures, rand, more,
                                                                                     retryable):
    delay = policy.retry_after(left, failures, rand, retryable=retryable)
    assert delay <= policy.retry_after(left, failures, max(rand, more), retryable=retryable)
    assert delay <= policy.retry_after(left, failures + 1, rand, retryable=retryable)
    assert delay <= policy.retry_after(left, failures, rand, retryable=retryable, throttled=True)


@settings(max_examples=200)
@given(left=st.floats(min_value=OVERLAP + 3 * CAP, max_value=36 * 3600.0), failures=st.integers(2, 10_000),
       rand=rands)
def test_far_from_its_deadlines_a_retry_is_drawn_uniformly_over_the_spread(left, failures, rand):
    assert policy.retry_after(left, failures, rand) == pytest.approx(CAP / 2 + rand * CAP / 2)


# ---- rejection and clock_jump -------------------------------------------------------------------

def test_rejection():
    held = creds(HOUR)
    now = T0 + 30 * MIN
    assert policy.rejection(held, None, now) == "NoCredentials"
    assert policy.rejection(held, creds(HOUR, issued=T0 - 2 * HOUR), now) == "ExpiredOnArrival"
    assert policy.rejection(held, creds(9 * MIN, issued=now), now) == "ShortAndNotNewer"  # skew: keep the held
    assert policy.rejection(held, creds(HOUR, issued=now), now) is None
    assert policy.rejection(held, creds(20 * MIN, issued=now), now) is None  # healthy though sooner: a reload
    assert policy.rejection(None, creds(10 * MIN, issued=now), now) is None  # short, but better than nothing
    expired_held = creds(HOUR, issued=T0 - 2 * HOUR)
    assert policy.rejection(expired_held, creds(10 * MIN, issued=now), now) is None


@pytest.mark.parametrize("mono, wall, jump", [
    (10.0, 10.0, 0.0), (10.0, 3610.0, 3600.0), (10.0, -3590.0, -3600.0), (0.5, 7200.5, 7200.0),
])
def test_clock_jump(mono, wall, jump):
    assert policy.clock_jump(mono, wall) == jump

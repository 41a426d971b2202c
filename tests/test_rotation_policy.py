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


# ---- retry_delay ---------------------------------------------------------------------------------

def test_start_up_retries_are_fast_then_capped():
    delays = [policy.retry_delay(None, T0, n, rand=0.999999) for n in range(12)]
    assert delays[0] < 1 and delays[3] < 5
    assert max(delays) <= policy.STARTUP_CAP and delays[-1] == pytest.approx(policy.STARTUP_CAP, rel=1e-3)


def test_expired_credentials_count_as_none():
    expired = creds(HOUR, issued=T0 - 2 * HOUR)
    assert policy.retry_delay(expired, T0, 20, rand=0.999) <= policy.STARTUP_CAP


def test_retries_tighten_towards_five_minutes_before_expiry():
    held = creds(HOUR)
    at = T0 + 50 * MIN  # 5 min to the AWS minimum: at most half of that
    assert policy.retry_delay(held, at, 20, rand=0.999) == pytest.approx(150)
    at = T0 + 56 * MIN  # inside the five minutes: half the time to the drop point
    assert policy.retry_delay(held, at, 20, rand=0.999) == pytest.approx(90)
    at = T0 + 59 * MIN - dt.timedelta(seconds=0.2)  # floor: never a hot loop
    assert policy.retry_delay(held, at, 20, rand=0.999) == policy.MIN_DELAY


def test_non_retryable_errors_wait_the_cap():
    held = creds(6 * HOUR)
    assert policy.retry_delay(held, T0 + 3 * HOUR, 0, rand=0.999, retryable=False) == pytest.approx(299.7)
    assert policy.retry_delay(held, T0 + 3 * HOUR, 0, rand=0.999) == pytest.approx(0.999)


@settings(max_examples=300)
@given(lifetime=lifetimes, elapsed=st.floats(min_value=0.0, max_value=1.0), attempt=attempts, rand=rands,
       retryable=st.booleans())
def test_retry_never_sleeps_past_five_minutes_before_expiry(lifetime, elapsed, attempt, rand, retryable):
    held = creds(lifetime)
    now = T0 + lifetime * elapsed
    delay = dt.timedelta(seconds=policy.retry_delay(held, now, attempt, rand=rand, retryable=retryable))
    deadline = held.expiration - policy.AWS_MIN_OVERLAP
    if not policy.serveable(held, now):
        assert delay <= dt.timedelta(seconds=policy.STARTUP_CAP)
    elif deadline - now >= dt.timedelta(seconds=2 * policy.MIN_DELAY):
        assert now + delay < deadline
    elif policy.drop_at(held) - now >= dt.timedelta(seconds=2 * policy.MIN_DELAY):
        assert now + delay < policy.drop_at(held)


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

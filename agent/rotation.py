"""Rotation policy: when to refresh, what may be served, how long to back off.

Pure functions of (credentials, wall-clock ``now``, a random draw): no I/O, no
clock reads, no trio. ``agent.rotator.Rotator`` is the trio scheduler that only
sleeps, fetches and asks this module what to do next.
"""

# Theory of operation
# -------------------
# Rule 1: everything that decides when credentials are fetched, served or dropped
# lives in this file. The scheduler holds state (what is held, how many failures
# in a row) but takes every decision from a function below.
#
# Rule 2: times in, times out. Functions take the wall-clock ``now`` (aware UTC
# datetimes) and return wall-clock points or plain seconds; random draws come in
# as floats in [0, 1) so tests pick them.
#
# The rotation invariants of design.md, and where each one is enforced:
#
# 1. Prefetch before ready. The scheduler reports ready only once it holds
#    credentials; until then the holder is empty and the metadata server answers
#    503 at once. ``retry_delay`` paces those first attempts: fast, then capped at
#    STARTUP_CAP (it uses the start-up schedule whenever nothing serveable is held).
# 2. Half-life with earlier-only jitter. ``refresh_at`` returns issue + lifetime/2
#    minus up to lifetime/10, so a session of L >= 1 h is replaced with at least
#    L/2 >= 30 min left, a shorter one with at least half its life. An explicit
#    ``refresh_before_expiry`` replaces the half-life point (clamped, see there).
# 3. New credentials >= 5 min before the old expire, whenever the backend answers
#    in the hour before. Attempts run from the refresh point (the whole last hour
#    of a session of 2 h or more; the last 30-36 min of a 1-h one, which cannot be
#    replaced earlier) until expiry. ``retry_delay`` never lets a retry sleep past
#    ``expiration - AWS_MIN_OVERLAP`` while serveable credentials are held: each
#    delay is at most half the time left to that point, so attempts crowd towards
#    it and any window in which the backend answers before it gets an attempt.
# 4. Never expired, never empty. ``serveable`` is false from ``expiration -
#    SERVE_MARGIN`` on; the scheduler drops credentials at ``drop_at`` and offers
#    nothing rather than something expired. ``rejection`` refuses fetched
#    credentials that are already unserveable, or short-lived and no better than
#    those held, so a failed or odd refresh never replaces good credentials.
# 5. One STS call at a time: structural, in the scheduler (one task fetches;
#    callers wait on that task's attempt). Nothing here.
# 6. Backoff with jitter. ``backoff`` is exponential with full jitter, capped;
#    ``refresh_at`` jitters every refresh point so a fleet does not stampede.
# 7. Monotonic scheduling, wall-clock expiry. Everything here is wall-clock; the
#    scheduler turns points into monotonic deadlines and calls ``clock_jump`` on
#    every wake to notice an NTP step or a resume, then re-checks at once.
#
# Why SERVE_MARGIN is 60 s and not 10-15 min: botocore treats IMDS credentials
# with < 15 min left as due for refresh and, below ~25 min, rewrites their expiry
# to now + 17-25 min (reference/imds.md §7), so no margin short of 30 min avoids
# that; invariants 2-3 are what keep clients out of that window while the backend
# answers. During an outage, still-valid credentials are better than a 503 (an SDK
# that already holds credentials keeps working until their real expiry; a 503
# fails it at once). The 60 s only covers request latency and modest clock skew
# between this host and STS, so a client never signs with credentials that are
# expired by the time its request lands.

from __future__ import annotations

import datetime as _dt
import enum

__all__ = [
    "AWS_MIN_OVERLAP",
    "JUMP_THRESHOLD",
    "MIN_EXPLICIT_LEAD",
    "SERVE_MARGIN",
    "SHORT_ON_ARRIVAL",
    "State",
    "backoff",
    "clock_jump",
    "drop_at",
    "refresh_at",
    "rejection",
    "retry_delay",
    "serveable",
    "state",
]

SERVE_MARGIN = _dt.timedelta(seconds=60)  # credentials stop being served this long before expiry
AWS_MIN_OVERLAP = _dt.timedelta(minutes=5)  # new credentials in place at least this long before expiry
MIN_EXPLICIT_LEAD = _dt.timedelta(minutes=10)  # smallest refresh_before_expiry honoured (botocore's mandatory window)
SHORT_ON_ARRIVAL = _dt.timedelta(minutes=10)  # fetched with less left: suspect (botocore's mandatory window)
MAX_JITTER_FRACTION = 0.1  # refresh jitter: up to a tenth of the lifetime, earlier only

RETRY_BASE = 1.0  # seconds: first retry while serveable credentials are held ...
RETRY_CAP = 300.0  # ... doubling up to five minutes
STARTUP_BASE = 0.5  # seconds: first retry while nothing serveable is held ...
STARTUP_CAP = 30.0  # ... doubling up to thirty seconds (clients are getting 503s)
MIN_DELAY = 0.5  # no retry sooner than this after a failure (no hot loop)
JUMP_THRESHOLD = 30.0  # seconds of wall-vs-monotonic disagreement that count as a jump


class State(enum.Enum):
    """Where held credentials are in their life (see ``state``)."""

    FRESH = "fresh"  # before the refresh point: nothing to do
    REFRESH_DUE = "refresh-due"  # past the refresh point: replace them, serve them meanwhile
    EXPIRING = "expiring"  # inside AWS's five-minute minimum: must replace, still serveable
    EXPIRED = "expired"  # within SERVE_MARGIN of expiry or past it: never serve


def refresh_at(
    issued_at: _dt.datetime,
    expiration: _dt.datetime,
    *,
    jitter_fraction: float,
    refresh_before_expiry: _dt.timedelta | None = None,
) -> _dt.datetime:
    """The wall-clock point at which credentials should be replaced.

    By default the half-life, minus a jitter of up to a tenth of the lifetime
    (never later). An explicit ``refresh_before_expiry`` moves the point to that
    long before expiry (still jittered earlier), clamped so that it is at least
    ``MIN_EXPLICIT_LEAD`` before expiry and at least a tenth of the lifetime
    after issue (no refresh loop when the lead exceeds the lifetime).

    Args:
        issued_at: when the credentials were obtained (``last_updated``).
        expiration: when they expire.
        jitter_fraction: a random draw in [0, 1], made by the caller.
        refresh_before_expiry: the configured lead, or None for the half-life.

    Returns:
        An aware datetime in ``[issued_at, expiration]``; ``issued_at`` itself when
        the credentials had no lifetime at all.
    """
    lifetime = expiration - issued_at
    if lifetime <= _dt.timedelta(0):
        return issued_at
    jitter = lifetime * (MAX_JITTER_FRACTION * min(max(jitter_fraction, 0.0), 1.0))
    if refresh_before_expiry is None:
        return issued_at + lifetime / 2 - jitter
    lead = max(refresh_before_expiry, MIN_EXPLICIT_LEAD)
    earliest = issued_at + lifetime * MAX_JITTER_FRACTION
    return max(expiration - lead, earliest) - jitter


def serveable(credentials, now: _dt.datetime) -> bool:
    """True when ``credentials`` may be handed to a client at ``now``.

    Args:
        credentials: a ``RoleCredentials`` or None.
        now: the wall-clock time.

    Returns:
        False for None and from ``expiration - SERVE_MARGIN`` on.
    """
    return credentials is not None and now < drop_at(credentials)


def drop_at(credentials) -> _dt.datetime:
    """When ``credentials`` stop being serveable (``expiration - SERVE_MARGIN``)."""
    return credentials.expiration - SERVE_MARGIN


def state(credentials, now: _dt.datetime, *, refresh_before_expiry: _dt.timedelta | None = None) -> State:
    """Classify held credentials at ``now`` (jitter-free refresh point).

    Args:
        credentials: a ``RoleCredentials`` (``last_updated`` is taken as the issue time).
        now: the wall-clock time.
        refresh_before_expiry: as for ``refresh_at``.

    Returns:
        EXPIRED when not serveable; EXPIRING inside ``AWS_MIN_OVERLAP`` (plus the
        margin) of expiry; REFRESH_DUE past the refresh point; else FRESH.
    """
    if not serveable(credentials, now):
        return State.EXPIRED
    if now >= credentials.expiration - AWS_MIN_OVERLAP - SERVE_MARGIN:
        return State.EXPIRING
    point = refresh_at(credentials.last_updated, credentials.expiration, jitter_fraction=0.0,
                       refresh_before_expiry=refresh_before_expiry)
    return State.REFRESH_DUE if now >= point else State.FRESH


def backoff(attempt: int, *, base: float, cap: float, rand: float) -> float:
    """Exponential backoff with full jitter: ``rand * min(cap, base * 2**attempt)``.

    Args:
        attempt: failures in a row before this one (0 for the first failure).
        base: the ceiling of the first delay, in seconds.
        cap: the largest ceiling, in seconds.
        rand: a random draw in [0, 1), made by the caller.

    Returns:
        Seconds, at least ``min(MIN_DELAY, cap)`` and at most ``cap``;
        non-decreasing in ``cap`` and in ``attempt`` for a given draw.
    """
    ceiling = min(cap, base * 2.0 ** min(max(attempt, 0), 64))
    return max(min(MIN_DELAY, cap), min(max(rand, 0.0), 1.0) * ceiling)


def retry_delay(held, now: _dt.datetime, attempt: int, *, rand: float, retryable: bool = True) -> float:
    """Seconds to wait after a failed fetch before the next attempt.

    While nothing serveable is held (start-up, or after expiry) the fast start-up
    schedule applies: clients are being refused. While serveable credentials are
    held, the slower schedule applies, but never past half the time left until
    ``expiration - AWS_MIN_OVERLAP`` (or until ``drop_at`` once inside it), so
    retries crowd towards the point where invariant 3 would break. A
    non-retryable error (AccessDenied...) waits the full cap: the backend answered
    and will likely answer the same until someone fixes a policy.

    Args:
        held: the credentials currently held, or None.
        now: the wall-clock time.
        attempt: failures in a row before this one.
        rand: a random draw in [0, 1), made by the caller.
        retryable: the failure's ``retryable`` flag.

    Returns:
        Seconds, at least ``MIN_DELAY``.
    """
    steps = attempt if retryable else 64
    if not serveable(held, now):
        return backoff(steps, base=STARTUP_BASE, cap=STARTUP_CAP, rand=rand)
    delay = backoff(steps, base=RETRY_BASE, cap=RETRY_CAP, rand=rand)
    deadline = held.expiration - AWS_MIN_OVERLAP
    if now >= deadline:
        deadline = drop_at(held)
    return min(delay, max(MIN_DELAY, (deadline - now).total_seconds() / 2))


def rejection(held, fetched, now: _dt.datetime) -> str | None:
    """Why freshly fetched credentials must not replace those held, if they must not.

    Args:
        held: the credentials currently held, or None.
        fetched: what the fetch returned.
        now: the wall-clock time.

    Returns:
        None to install them; else a short code for the log and ``last_error``:
        ``NoCredentials`` (nothing returned), ``ExpiredOnArrival`` (not serveable,
        e.g. the endpoint's clock is far behind ours), ``ShortAndNotNewer`` (they
        arrived with less than ``SHORT_ON_ARRIVAL`` left and expire no later than
        the serveable ones held). Healthy credentials that expire sooner than
        those held (a shorter ``duration_seconds`` or another role after a
        reload) are installed.
    """
    if fetched is None:
        return "NoCredentials"
    if not serveable(fetched, now):
        return "ExpiredOnArrival"
    if (serveable(held, now) and fetched.expiration <= held.expiration
            and fetched.expiration - now < SHORT_ON_ARRIVAL):
        return "ShortAndNotNewer"
    return None


def clock_jump(monotonic_elapsed: float, wall_elapsed: float) -> float:
    """How far the wall clock moved beyond the monotonic clock between two looks.

    Args:
        monotonic_elapsed: seconds of trio's (monotonic) clock between the looks.
        wall_elapsed: seconds of wall clock between the same looks.

    Returns:
        Seconds: positive for a forward step or a resume from suspend (the
        monotonic clock stops while suspended), negative for a backward step.
        Callers treat ``abs(result) >= JUMP_THRESHOLD`` as a jump.
    """
    return wall_elapsed - monotonic_elapsed

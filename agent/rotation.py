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
# Rule 2: lengths of time decide. Every decision depends only on durations (a
# lifetime, the seconds left until expiry), so each has a core on float seconds
# (``refresh_after``, ``retry_after``, ``serveable_for``, ``rejection_for``) and a
# wall-clock face on aware datetimes that measures those durations and calls the
# core (``refresh_at``, ``retry_delay``, ``serveable``, ``rejection``). The rotator
# calls the faces, bench/fleet.py the cores for 100,000 agents: one policy. Random
# draws come in as floats in [0, 1) so tests pick them.
#
# The rotation invariants of design.md, and where each one is enforced:
#
# 1. Prefetch before ready. The scheduler reports ready only once it holds
#    credentials; until then the holder is empty and the metadata server answers
#    503 at once. ``retry_after`` paces those first attempts: fast, then capped at
#    STARTUP_CAP (it uses the start-up schedule whenever nothing serveable is held).
# 2. Half-life with earlier-only jitter. ``refresh_after`` returns lifetime/2
#    minus up to lifetime/10, so a session of L >= 1 h is replaced with at least
#    L/2 >= 30 min left, a shorter one with at least half its life. An explicit
#    ``refresh_before_expiry`` replaces the half-life point (clamped, see there).
# 3. New credentials >= 5 min before the old expire, whenever the backend answers
#    in the hour before. Attempts run from the refresh point (the whole last hour
#    of a session of 2 h or more; the last 30-36 min of a 1-h one, which cannot be
#    replaced earlier) until expiry. ``retry_after`` never sleeps past its "overlap
#    call", an attempt OVERLAP_CALL (10-40 s) before ``expiration -
#    AWS_MIN_OVERLAP``, and never sleeps longer than RETRY_CAP: a backend that
#    answers for the last 40 s before that point, or for RETRY_CAP at any time
#    before it, is asked while it answers.
# 4. Never expired, never empty. ``serveable`` is false from ``expiration -
#    SERVE_MARGIN`` on; the scheduler drops credentials at ``drop_at`` and offers
#    nothing rather than something expired. Past the overlap call ``retry_after``
#    never sleeps past its "last call", LAST_CALL (0.5-1 s) before ``drop_at``, so
#    a backend back by then is asked before the credentials drop. ``rejection``
#    refuses fetched credentials that are already unserveable, or short-lived and
#    no better than those held, so a failed or odd refresh never replaces good
#    credentials.
# 5. One STS call at a time: structural, in the scheduler (one task fetches;
#    callers wait on that task's attempt). Nothing here.
# 6. Backoff with jitter. ``retry_after`` while credentials are held: a two-step
#    ramp for blips (RETRY_RAMP: 1-2 s, then 8-16 s), then retries spread
#    uniformly over RETRY_CAP/2..RETRY_CAP; Throttling (or a non-retryable answer)
#    goes to the spread at once. With nothing held, exponential with full jitter
#    up to STARTUP_CAP, or STARTUP_THROTTLED_CAP after Throttling. ``refresh_after``
#    jitters every refresh point so a fleet does not stampede.
# 7. Monotonic scheduling, wall-clock expiry. Everything here is wall-clock; the
#    scheduler turns points into monotonic deadlines and calls ``clock_jump`` on
#    every wake to notice an NTP step or a resume, then re-checks at once.
#
# Why the retries are this frugal: a fleet's retry load is what an outage's end
# meets. Each of N agents refreshes every ~0.45 L (L the lifetime), so an outage
# of that length finds all N failing, each at a random point of its failing life,
# and the fleet offers about N x (attempts per failing life) / (0.45 L) calls/s:
# the attempts an agent makes while failing multiply the fleet's steady load. The
# former schedule (doubling to 5 min, and at most half the time left to each
# deadline, which crowds towards it) made some 30 attempts per failing life:
# 100,000 agents of 1-h credentials offered 1,800-2,100 calls/s at the end of a
# 30-min outage (steady: 62/s). This one makes 7 (6-9: the failed refresh, the
# ramp's two, two or three spread retries, the overlap call, the last call):
# bench/fleet.py measures that recovery at 324 calls/s at most (441 after a 24-min
# outage, the worst). The cost: after an outage an agent may wait up to RETRY_CAP
# for its next attempt (its credentials still valid: the fleet is fresh again
# within 15 min), and invariant 3 holds for an answering window of the last 40 s
# before the mark or of RETRY_CAP anywhere, no longer for any window however
# short.
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
    "LAST_CALL",
    "MIN_DELAY",
    "MIN_EXPLICIT_LEAD",
    "OVERLAP_CALL",
    "REQUEST_GAP",
    "RETRY_CAP",
    "RETRY_RAMP",
    "SERVE_MARGIN",
    "SHORT_ON_ARRIVAL",
    "STARTUP_CAP",
    "STARTUP_THROTTLED_CAP",
    "State",
    "backoff",
    "clock_jump",
    "drop_at",
    "refresh_after",
    "refresh_at",
    "rejection",
    "rejection_for",
    "retry_after",
    "retry_delay",
    "serveable",
    "serveable_for",
    "state",
]

SERVE_MARGIN = _dt.timedelta(seconds=60)  # credentials stop being served this long before expiry
AWS_MIN_OVERLAP = _dt.timedelta(minutes=5)  # new credentials in place at least this long before expiry
MIN_EXPLICIT_LEAD = _dt.timedelta(minutes=10)  # smallest refresh_before_expiry honoured (botocore's mandatory window)
SHORT_ON_ARRIVAL = _dt.timedelta(minutes=10)  # fetched with less left: suspect (botocore's mandatory window)
MAX_JITTER_FRACTION = 0.1  # refresh jitter: up to a tenth of the lifetime, earlier only

RETRY_RAMP = (2.0, 16.0)  # seconds: the first retries while serveable credentials are held: 1-2 s, 8-16 s ...
RETRY_CAP = 900.0  # ... then 7.5-15 min apart, uniformly (no two agents in step)
OVERLAP_CALL = (10.0, 40.0)  # seconds before expiration - AWS_MIN_OVERLAP: the last attempt for invariant 3
LAST_CALL = (0.5, 1.0)  # seconds before drop_at: the last attempt while the credentials are still served
STARTUP_BASE = 0.5  # seconds: first retry while nothing serveable is held ...
STARTUP_CAP = 30.0  # ... doubling up to thirty seconds (clients are getting 503s) ...
STARTUP_THROTTLED_CAP = 120.0  # ... or two minutes after Throttling (the backend is at capacity: no faster for all)
MIN_DELAY = 0.5  # no retry sooner than this after a failure (no hot loop)
REQUEST_GAP = 2.0  # seconds: a caller's explicit request is served this long after the last attempt, backoff or not
JUMP_THRESHOLD = 30.0  # seconds of wall-vs-monotonic disagreement that count as a jump

_MARGIN = SERVE_MARGIN.total_seconds()
_OVERLAP = AWS_MIN_OVERLAP.total_seconds()
_EXPLICIT_LEAD = MIN_EXPLICIT_LEAD.total_seconds()
_SHORT = SHORT_ON_ARRIVAL.total_seconds()


class State(enum.Enum):
    """Where held credentials are in their life (see ``state``)."""

    FRESH = "fresh"  # before the refresh point: nothing to do
    REFRESH_DUE = "refresh-due"  # past the refresh point: replace them, serve them meanwhile
    EXPIRING = "expiring"  # inside AWS's five-minute minimum: must replace, still serveable
    EXPIRED = "expired"  # within SERVE_MARGIN of expiry or past it: never serve


# ---- the cores: float seconds ------------------------------------------------------------


def refresh_after(lifetime: float, jitter_fraction: float, refresh_before_expiry: float | None = None) -> float:
    """Seconds after issue at which credentials of ``lifetime`` seconds should be replaced.

    By default the half-life, minus a jitter of up to a tenth of the lifetime
    (never later). An explicit ``refresh_before_expiry`` moves the point to that
    long before expiry (still jittered earlier), clamped so that it is at least
    ``MIN_EXPLICIT_LEAD`` before expiry and at least a tenth of the lifetime
    after issue (no refresh loop when the lead exceeds the lifetime).

    Args:
        lifetime: seconds from issue to expiration.
        jitter_fraction: a random draw in [0, 1], made by the caller.
        refresh_before_expiry: the configured lead in seconds, or None for the half-life.

    Returns:
        Seconds in ``[0, lifetime]``; 0 when the credentials had no lifetime at all.
    """
    if lifetime <= 0:
        return 0.0
    jitter = lifetime * MAX_JITTER_FRACTION * min(max(jitter_fraction, 0.0), 1.0)
    if refresh_before_expiry is None:
        return lifetime / 2 - jitter
    lead = max(refresh_before_expiry, _EXPLICIT_LEAD)
    return max(lifetime - lead, lifetime * MAX_JITTER_FRACTION) - jitter


def serveable_for(left: float | None) -> bool:
    """True when credentials with ``left`` seconds until expiry may be handed to a client.

    Args:
        left: seconds until expiration; None when nothing is held.

    Returns:
        False for None and for ``SERVE_MARGIN`` or less.
    """
    return left is not None and left > _MARGIN


def retry_after(left: float | None, failures: int, rand: float, *, retryable: bool = True,
                throttled: bool = False) -> float:
    """Seconds to wait after a failed fetch before the next attempt.

    While nothing serveable is held (start-up, or after expiry) the fast start-up
    schedule applies: clients are being refused (capped at ``STARTUP_CAP``, or
    ``STARTUP_THROTTLED_CAP`` after Throttling). While serveable credentials are
    held: a ramp for blips (the ceilings of ``RETRY_RAMP``), then a spread of
    ``RETRY_CAP``, each drawn uniformly from the upper half of its ceiling;
    Throttling (the backend is over capacity) and non-retryable errors
    (AccessDenied...: it will answer the same until someone fixes a policy) skip
    the ramp. Whatever the draw, a retry never sleeps past the next of two calls
    (invariants 3 and 4): the overlap call, ``OVERLAP_CALL`` before ``expiration -
    AWS_MIN_OVERLAP``, and once past it the last call, ``LAST_CALL`` before the
    drop point, both placed by the draw within their windows. Past the last call
    the start-up schedule applies (the credentials drop within a second).

    Args:
        left: seconds until the held credentials expire; None when nothing is held.
        failures: failures in a row before this one (0 for the first).
        rand: a random draw in [0, 1), made by the caller.
        retryable: the failure's ``retryable`` flag.
        throttled: the failure was the backend's Throttling answer.

    Returns:
        Seconds, at least ``MIN_DELAY``; non-decreasing in ``rand`` and ``failures``.
    """
    steps = failures if retryable else 64
    startup = STARTUP_THROTTLED_CAP if throttled else STARTUP_CAP
    if not serveable_for(left):
        return backoff(steps, base=STARTUP_BASE, cap=startup, rand=rand)
    rand = min(max(rand, 0.0), 1.0)
    ramp = retryable and not throttled and 0 <= failures < len(RETRY_RAMP)
    delay = (RETRY_RAMP[failures] if ramp else RETRY_CAP) * (0.5 + 0.5 * rand)
    for until, (near, far) in ((left - _OVERLAP, OVERLAP_CALL), (left - _MARGIN, LAST_CALL)):
        if until > far:  # this call is still ahead: never sleep past it
            call = until - far + (far - near) * rand
            return max(MIN_DELAY, min(delay, call))
    return backoff(steps, base=STARTUP_BASE, cap=startup, rand=rand)


def rejection_for(held_left: float | None, fetched_left: float | None) -> str | None:
    """Why fetched credentials must not replace those held, from the seconds each has left.

    Args:
        held_left: seconds until the held credentials expire; None when nothing is held.
        fetched_left: seconds until the fetched ones expire; None when nothing came.

    Returns:
        None to install them; else a short code for the log and ``last_error``:
        ``NoCredentials`` (nothing returned), ``ExpiredOnArrival`` (not serveable,
        e.g. the endpoint's clock is far behind ours), ``ShortAndNotNewer`` (they
        arrived with less than ``SHORT_ON_ARRIVAL`` left and expire no later than
        the serveable ones held). Healthy credentials that expire sooner than
        those held (a shorter ``duration_seconds`` or another role after a
        reload) are installed.
    """
    if fetched_left is None:
        return "NoCredentials"
    if not serveable_for(fetched_left):
        return "ExpiredOnArrival"
    if serveable_for(held_left) and fetched_left <= held_left and fetched_left < _SHORT:
        return "ShortAndNotNewer"
    return None


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


# ---- the faces: aware datetimes (the rotator) --------------------------------------------


def _left(credentials, now: _dt.datetime) -> float | None:
    return None if credentials is None else (credentials.expiration - now).total_seconds()


def refresh_at(
    issued_at: _dt.datetime,
    expiration: _dt.datetime,
    *,
    jitter_fraction: float,
    refresh_before_expiry: _dt.timedelta | None = None,
) -> _dt.datetime:
    """The wall-clock point at which credentials should be replaced (``refresh_after``).

    Args:
        issued_at: when the credentials were obtained (``last_updated``).
        expiration: when they expire.
        jitter_fraction: a random draw in [0, 1], made by the caller.
        refresh_before_expiry: the configured lead, or None for the half-life.

    Returns:
        An aware datetime in ``[issued_at, expiration]``; ``issued_at`` itself when
        the credentials had no lifetime at all.
    """
    lead = None if refresh_before_expiry is None else refresh_before_expiry.total_seconds()
    after = refresh_after((expiration - issued_at).total_seconds(), jitter_fraction, lead)
    return issued_at + _dt.timedelta(seconds=after)


def serveable(credentials, now: _dt.datetime) -> bool:
    """True when ``credentials`` may be handed to a client at ``now`` (``serveable_for``).

    Args:
        credentials: a ``RoleCredentials`` or None.
        now: the wall-clock time.

    Returns:
        False for None and from ``expiration - SERVE_MARGIN`` on.
    """
    return serveable_for(_left(credentials, now))


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


def retry_delay(held, now: _dt.datetime, attempt: int, *, rand: float, retryable: bool = True,
                throttled: bool = False) -> float:
    """Seconds to wait after a failed fetch before the next attempt (``retry_after``).

    Args:
        held: the credentials currently held, or None.
        now: the wall-clock time.
        attempt: failures in a row before this one.
        rand: a random draw in [0, 1), made by the caller.
        retryable: the failure's ``retryable`` flag.
        throttled: the failure was the backend's Throttling answer.

    Returns:
        Seconds, at least ``MIN_DELAY``.
    """
    return retry_after(_left(held, now), attempt, rand, retryable=retryable, throttled=throttled)


def rejection(held, fetched, now: _dt.datetime) -> str | None:
    """Why freshly fetched credentials must not replace those held, if they must not (``rejection_for``).

    Args:
        held: the credentials currently held, or None.
        fetched: what the fetch returned.
        now: the wall-clock time.

    Returns:
        None to install them; else ``NoCredentials``, ``ExpiredOnArrival`` or
        ``ShortAndNotNewer`` (see ``rejection_for``).
    """
    return rejection_for(_left(held, now), _left(fetched, now))


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

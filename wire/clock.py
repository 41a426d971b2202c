"""Wall clocks, injected wherever a timestamp matters.

Two clocks run rolecall. trio's clock drives sleeps and timeouts (and is the one
``trio.testing.MockClock`` virtualises). The wall clock below drives everything
that is compared with a timestamp from elsewhere: ``X-Amz-Date``, ``Expiration``,
TOTP steps. MockClock does not touch ``datetime.now()``, so every component takes
a ``WallClock`` instead of reading the system time itself.

``TrioWallClock`` derives wall time from trio's clock, so one ``autojump_clock``
moves both, and ``jump()`` simulates an NTP step or a laptop resume.
"""

from __future__ import annotations

import datetime as _dt
from typing import Protocol

UTC = _dt.timezone.utc


class WallClock(Protocol):
    def now(self) -> _dt.datetime:
        """The current time, timezone-aware, in UTC."""


class SystemClock:
    """The real wall clock."""

    __slots__ = ()

    def now(self) -> _dt.datetime:
        return _dt.datetime.now(UTC)


class FixedClock:
    """A wall clock that moves only when told to (pure unit tests)."""

    def __init__(self, start: _dt.datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FixedClock needs a timezone-aware datetime")
        self._now = start.astimezone(UTC)

    def now(self) -> _dt.datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += _dt.timedelta(seconds=seconds)


class TrioWallClock:
    """Wall time = ``start`` + trio's current time (+ any jumps).

    Under ``MockClock`` both clocks advance together; ``jump()`` moves only the
    wall clock, as an NTP step or a resume from sleep does.
    """

    def __init__(self, start: _dt.datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("TrioWallClock needs a timezone-aware datetime")
        self._start = start.astimezone(UTC)
        self._offset = _dt.timedelta()

    def now(self) -> _dt.datetime:
        import trio  # only tests and the daemon use this clock; keep wire cheap to import

        return self._start + self._offset + _dt.timedelta(seconds=trio.current_time())

    def jump(self, seconds: float) -> None:
        self._offset += _dt.timedelta(seconds=seconds)


def amz_date(when: _dt.datetime) -> str:
    """``20150830T123600Z``: the form of ``X-Amz-Date``."""
    return when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def iso_z(when: _dt.datetime) -> str:
    """``2015-08-30T12:36:00Z``: AWS's timestamp form, no fractions."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

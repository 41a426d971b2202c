"""Wall clocks, injected wherever a timestamp matters.

Two clocks run rolecall. trio's clock drives sleeps and timeouts (and is the one
``trio.testing.MockClock`` virtualises). The wall clock below drives everything
that is compared with a timestamp from elsewhere: ``X-Amz-Date``, ``Expiration``,
TOTP steps. MockClock does not touch ``datetime.now()``, so every component takes
a ``WallClock`` instead of reading the system time itself.

Tests drive time with their own clocks (``tests/clocks.py``: a fixed one, and
one derived from trio's clock so that one ``autojump_clock`` moves both).
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


def amz_date(when: _dt.datetime) -> str:
    """``20150830T123600Z``: the form of ``X-Amz-Date``."""
    return when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def iso_z(when: _dt.datetime) -> str:
    """``2015-08-30T12:36:00Z``: AWS's timestamp form, no fractions."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

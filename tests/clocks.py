"""Wall clocks for tests and benchmarks: one that moves only when told, one that trio's clock drives.

``TrioWallClock`` derives wall time from trio's clock, so one ``autojump_clock``
moves both, and ``jump()`` simulates an NTP step or a laptop resume. Both satisfy
``wire.clock.WallClock``; nothing shipped uses them.
"""

from __future__ import annotations

import datetime as _dt

from wire.clock import UTC

__all__ = ["FixedClock", "TrioWallClock"]


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
        import trio

        return self._start + self._offset + _dt.timedelta(seconds=trio.current_time())

    def jump(self, seconds: float) -> None:
        self._offset += _dt.timedelta(seconds=seconds)

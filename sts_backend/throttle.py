"""Per-access-key throttling of STS calls: a token bucket per key, answered with AWS's ``Throttling``.

Each authenticated STS call takes one token from its access key's bucket, which
refills at ``StsRequestsPerSecondPerKey`` tokens a second up to
``StsBurstPerKey`` (quotas: ``rolecall backend set-quota``; defaults 50 and 100;
a rate of 0 turns throttling off). An empty bucket refuses the call with
``Throttling`` (HTTP 400, "Rate exceeded"), which every SDK's retry logic backs
off from. Only authenticated calls are counted, so nobody can drain another
key's bucket by claiming its id.

The limits are read from the store at most every ``REFRESH_SECONDS`` (a
``set-quota`` reaches a running backend within that). Buckets are kept for at
most ``MAX_KEYS`` keys, least recently used dropped first: a dropped key starts
again with a full bucket, which costs at most one burst. One ``KeyThrottle`` is
shared by the backend's read and write lanes (the write lane runs in a worker
thread), so it holds a lock. Its clock is the backend's wall clock (so virtual
time in tests drives it too); a step backwards refills nothing and costs nothing.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["KeyThrottle", "MAX_KEYS", "REFRESH_SECONDS"]

REFRESH_SECONDS = 5.0
MAX_KEYS = 65536


class KeyThrottle:
    """Token buckets per access key (see the module).

    Args:
        clock: seconds; default ``time.monotonic``.
        max_keys: how many keys' buckets are kept.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_keys: int = MAX_KEYS) -> None:
        self._clock, self._max_keys = clock, max_keys
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, last refill)
        self._limits: tuple[float, float] | None = None  # (rate, burst)
        self._limits_read = -REFRESH_SECONDS

    def _current_limits(self, store) -> tuple[float, float]:
        now = self._clock()
        if self._limits is None or now - self._limits_read >= REFRESH_SECONDS:
            self._limits = (float(store.quota("StsRequestsPerSecondPerKey")), float(store.quota("StsBurstPerKey")))
            self._limits_read = now
        return self._limits

    def allow(self, access_key_id: str, store) -> bool:
        """Take one token from ``access_key_id``'s bucket; False when it is empty.

        Args:
            access_key_id: the authenticated caller's key.
            store: where the limits are read (the calling lane's own store).
        """
        rate, burst = self._current_limits(store)
        if rate <= 0:
            return True
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.pop(access_key_id, (burst, now))
            tokens = min(burst, tokens + max(0.0, now - last) * rate)  # a clock stepped back refills nothing
            allowed = tokens >= 1.0
            self._buckets[access_key_id] = (tokens - 1.0 if allowed else tokens, now)
            if len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        return allowed

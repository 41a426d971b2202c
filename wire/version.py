"""rolecall's version: the installed distribution's, read once.

One place for what ``rolecall --version`` prints, ``rolecall agent status`` reports,
the backend sends as ``Server`` and the agent as its STS ``User-Agent``. Read from the
package metadata (``importlib.metadata``) on first use, not at import: the warm
``credential-process`` path and ``--help`` never pay for it.
"""

from __future__ import annotations

from functools import lru_cache

__all__ = ["UNKNOWN", "version"]

UNKNOWN = "0+unknown"  # run from a source tree that was never installed (pip install -e . fixes it)


@lru_cache(maxsize=1)
def version() -> str:
    """``0.1.0``, or ``UNKNOWN`` when no ``rolecall`` distribution is installed."""
    import importlib.metadata

    try:
        return importlib.metadata.version("rolecall")
    except importlib.metadata.PackageNotFoundError:
        return UNKNOWN

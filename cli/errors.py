"""The command line's one error: what every command raises for a failure a user can act on.

``cli.main`` prints it as one line and exits 1. It has a module of its own so
the command modules import it without importing ``cli.main`` (which imports
them), and ``python -m cli.main`` needs no workaround.
"""

from __future__ import annotations

__all__ = ["CliError"]


class CliError(Exception):
    """A user-facing failure: printed as one line, exit status 1."""

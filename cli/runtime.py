"""What the command modules share: running an async body under trio, and one line per failure.

``run(fn, *args, what="credential-process")`` runs ``fn`` with ``trio.run``
and turns the failures a user can act on into a ``CliError`` naming the
command: rolecall's own (``AgentError``, a profile that cannot be used, no
agent on the control socket, an unsafe cache directory) and the OS's. Anything
else propagates to ``cli.main``'s edge (one line, or a traceback with
``--debug``).
"""

from __future__ import annotations

from typing import Any

from cli.errors import CliError

__all__ = ["leaf_error", "one_line_error", "run"]


def leaf_error(exc: BaseException) -> BaseException:
    """The one exception inside (nested) single-member exception groups, else ``exc``."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def one_line_error(exc: BaseException, what: str, also: tuple[type[BaseException], ...] = ()) -> CliError | None:
    """The ``CliError`` for a failure a user can act on (or of a type in ``also``), or None for anything else."""
    from agent.errors import AgentError
    from wire.aws_config import ProfileError
    from wire.control import ControlError

    leaf = leaf_error(exc)
    if isinstance(leaf, CliError):
        return leaf
    if isinstance(leaf, (AgentError, ProfileError, ControlError, *also)):
        return CliError(f"{what}: {leaf}")
    if isinstance(leaf, OSError):
        return CliError(f"{what}: {leaf.strerror or leaf}{f': {leaf.filename}' if leaf.filename else ''}")
    return None


def run(fn, *args: Any, what: str, also: tuple[type[BaseException], ...] = ()) -> Any:
    """``trio.run(fn, *args)``, with known failures (and those of the types in ``also``) as one ``CliError`` line."""
    import trio

    try:
        return trio.run(fn, *args)
    except BaseException as exc:  # noqa: BLE001 - the edge: one line for what we know
        error = one_line_error(exc, what, also)
        if error is None:
            raise
        raise error from None

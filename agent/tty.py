"""Questions for the person at the controlling terminal, on ``/dev/tty``.

SDKs run ``credential_process`` with stdout and stderr captured and show stderr
only when the process fails (reference/sdk-clients.md §4), so a prompt there is
never seen. ``/dev/tty`` is the terminal the user typed the command in, whatever
the caller did with stdin, stdout and stderr. Without one (a daemon, CI, an IDE)
``NoTerminal`` is raised at once: nothing ever falls back to reading stdin,
which belongs to the caller.
"""

from __future__ import annotations

import os
import termios

__all__ = ["NoTerminal", "ask", "has_terminal"]

_TTY = "/dev/tty"
_MAX_ANSWER = 4096


class NoTerminal(OSError):
    """There is no controlling terminal to ask on."""


def has_terminal() -> bool:
    """Whether ``/dev/tty`` can be opened (this process has a controlling terminal)."""
    try:
        os.close(os.open(_TTY, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC))
    except OSError:
        return False
    return True


def ask(prompt: str, *, echo: bool = True) -> str:
    """Write ``prompt`` to the terminal and read one line from it (stripped).

    Args:
        prompt: the question, e.g. ``"Enter MFA code for arn:...: "``.
        echo: False for secrets (a passphrase): the terminal does not echo.

    Returns:
        The answer without surrounding whitespace.

    Raises:
        NoTerminal: no controlling terminal.
        EOFError: the terminal was closed, or Ctrl-D, before a line came.
    """
    try:
        fd = os.open(_TTY, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise NoTerminal(exc.errno, "no terminal to ask on (/dev/tty)") from None
    saved = None
    try:
        if not echo:
            saved = termios.tcgetattr(fd)
            quiet = termios.tcgetattr(fd)
            quiet[3] &= ~termios.ECHO
            termios.tcsetattr(fd, termios.TCSAFLUSH, quiet)
        os.write(fd, prompt.encode("utf-8", "replace"))
        line = _read_line(fd)
        if not echo:
            os.write(fd, b"\n")
    finally:
        if saved is not None:
            termios.tcsetattr(fd, termios.TCSAFLUSH, saved)
        os.close(fd)
    return line.strip()


def _read_line(fd: int) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 256)
        if not chunk:
            if data:
                break
            raise EOFError("the terminal closed before an answer")
        data += chunk
        if len(data) > _MAX_ANSWER:
            break
    return data.decode("utf-8", "replace")

"""sd_notify(3) without libsystemd: one datagram to ``$NOTIFY_SOCKET`` per message.

A ``Type=notify`` service tells systemd ``READY=1`` once it serves, ``STATUS=...``
for ``systemctl status``, ``WATCHDOG=1`` at least every ``$WATCHDOG_USEC`` (we
ping at half of it, as sd_watchdog_enabled(3) advises) and ``STOPPING=1`` when
it begins to shut down. Without ``$NOTIFY_SOCKET`` (not under systemd, or
``NotifyAccess`` does not cover us) every call is a no-op. A socket path that
starts with ``@`` is in the abstract namespace. Failures to send are logged
once at DEBUG and otherwise ignored: notification is best effort and must
never take the daemon down.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

import trio

__all__ = ["Notifier", "watchdog_interval"]

log = logging.getLogger("rolecall.agent")


def _address(text: str) -> str | bytes:
    if text.startswith("@"):
        return b"\0" + text[1:].encode()
    return text


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``WATCHDOG_USEC``), or None.

    None when no watchdog is configured, the value is not a positive integer,
    or ``WATCHDOG_PID`` is set and names another process.
    """
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    owner = environ.get("WATCHDOG_PID")
    if owner and owner != str(pid):
        return None
    return int(usec) / 2_000_000


class Notifier:
    """Sends sd_notify messages to the socket systemd gave us (if any).

    Args:
        environ: where ``NOTIFY_SOCKET``/``WATCHDOG_*`` are read (``os.environ``).
        pid: our pid, for ``WATCHDOG_PID`` (``os.getpid()``).
    """

    def __init__(self, environ: Mapping[str, str] | None = None, pid: int | None = None) -> None:
        environ = os.environ if environ is None else environ
        pid = os.getpid() if pid is None else pid
        text = environ.get("NOTIFY_SOCKET", "")
        self._address = _address(text) if text else None
        self.watchdog = watchdog_interval(environ, pid)
        self._warned = False

    @property
    def enabled(self) -> bool:
        """True when there is a notify socket to talk to."""
        return self._address is not None

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=VALUE`` fields as one datagram; True when sent."""
        if self._address is None:
            return False
        message = "\n".join(field.replace("\n", " ") for field in fields).encode(errors="replace")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self._address)
                sock.sendall(message)
        except (OSError, ValueError) as exc:  # ValueError: a NUL or unencodable NOTIFY_SOCKET
            if not self._warned:
                log.debug("sd_notify failed: %s", getattr(exc, "strerror", None) or type(exc).__name__)
                self._warned = True
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1`` (and a ``STATUS=`` line)."""
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        """``STATUS=text``: the one-line state ``systemctl status`` shows."""
        return self.notify(f"STATUS={text}")

    def stopping(self) -> bool:
        """``STOPPING=1``: shutdown has begun."""
        return self.notify("STOPPING=1")

    async def run_watchdog(self) -> None:
        """Ping ``WATCHDOG=1`` at half the watchdog interval, forever (returns at once without one)."""
        if self.watchdog is None or self._address is None:
            return
        while True:
            self.notify("WATCHDOG=1")
            await trio.sleep(self.watchdog)

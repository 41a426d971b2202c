"""The audit trail: one JSON line per API call in ``<data dir>/audit.log`` (mode 0600).

Each line holds the time, request id, principal ARN, access key id, service and
action, the outcome (``ok`` or ``error``), the AWS error code and the source
address. Secrets never reach the file: MFA codes, secret keys, passwords,
web-identity and SAML assertions and any ``X-Amz-*`` query authentication
(signature, session token) are dropped by name, whatever their position in a
list (``Foo.member.1.TokenCode``).

Bounded lines: a request that was never authenticated (unsigned, a bad
signature, an unknown key, malformed) is recorded without its parameters: its
action (cut to 128 characters), the key id it *claimed* (``claimed_access_key_id``),
the error code and its sizes, so junk sent by anyone cannot grow the log by more
than a few hundred bytes a request. An authenticated call's parameters are kept,
each value cut to 4,096 characters and all of them to ``MAX_PARAMS_CHARS``.

Writing: ``change(record)`` audits a change that commits inside its block: the
line is appended and synced to disk before the commit (``OSError`` when it
cannot be, and the change is rolled back), and cut off the file again when the
commit then fails, so the log neither misses a kept change nor claims a lost
one. ``write`` never blocks the event loop: called from a thread running trio
it queues the line for a writer thread; from any other thread it appends at
once. A line the writer cannot write (a full disk) is counted, and the next
line written is preceded by an ``audit_dropped`` record with the count.
``reopen()`` (SIGHUP) opens the path again after an outside rotation; with
``max_bytes`` the log rotates itself (``audit.log.1`` ... ``.KEEP``) before a
line would take it past that size.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from wire.clock import UTC

__all__ = ["AuditLog", "AuditRecord", "MAX_PARAMS_CHARS", "NullAudit", "redact"]

log = logging.getLogger("rolecall.backend.audit")

_SECRET_NAMES = frozenset(
    name.lower() for name in (
        "TokenCode", "AuthenticationCode1", "AuthenticationCode2", "SecretAccessKey",
        "SessionToken", "WebIdentityToken", "SAMLAssertion", "Password", "NewPassword",
        "OldPassword", "PrivateKey", "Base32StringSeed", "QRCodePNG", "ClientSecret",
    )
)
_MAX_VALUE_CHARS = 4096
MAX_PARAMS_CHARS = 16384  # all of one call's recorded parameters
_MAX_ACTION_CHARS = 128
_QUEUE_LIMIT = 100_000  # lines waiting for the writer thread; past it they are dropped (and counted)


def redact(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` without secret-bearing entries; long values cut to 4,096 characters and all of
    them to ``MAX_PARAMS_CHARS`` (the rest replaced by a ``"..."`` entry saying how many were left out)."""
    clean: dict[str, Any] = {}
    budget, left_out = MAX_PARAMS_CHARS, 0
    for name, value in params.items():
        last = name.rsplit(".", 1)[-1].lower()
        if last in _SECRET_NAMES or name.lower().startswith("x-amz-"):
            continue
        if isinstance(value, str) and len(value) > _MAX_VALUE_CHARS:
            value = value[:_MAX_VALUE_CHARS] + "...(truncated)"
        cost = len(name) + (len(value) if isinstance(value, str) else 16)
        if cost > budget:
            left_out += 1
            continue
        budget -= cost
        clean[name] = value
    if left_out:
        clean["..."] = f"{left_out} more parameters left out"
    return clean


@dataclass(slots=True)
class AuditRecord:
    """One API call, as the audit log writes it."""

    time: dt.datetime
    request_id: str
    service: str | None = None
    action: str | None = None
    principal_arn: str | None = None
    access_key_id: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    outcome: str = "ok"
    error_code: str | None = None
    source: str | None = None
    event: str | None = None  # something beyond the call itself, e.g. "mfa_lockout"
    mfa_serial: str | None = None  # the device an MFA event concerns
    authenticated: bool = False  # the caller's signature and key were verified
    request_bytes: int = 0  # body and query string, for a request recorded without its parameters

    def to_json(self) -> str:
        action = self.action[:_MAX_ACTION_CHARS] if isinstance(self.action, str) else None
        doc = {
            "time": self.time.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "request_id": self.request_id, "service": self.service, "action": action,
            "principal_arn": self.principal_arn,
        }
        if self.authenticated:
            doc["access_key_id"], doc["params"] = self.access_key_id, redact(self.params)
        else:  # anyone can send anything: a bounded line, never the parameters
            doc["claimed_access_key_id"] = (self.access_key_id or "")[:128] or None
            doc["request_bytes"], doc["param_count"] = self.request_bytes, len(self.params)
        doc.update({"outcome": self.outcome, "error_code": self.error_code, "source": self.source})
        if self.event:
            doc["event"], doc["mfa_serial"] = self.event, self.mfa_serial
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


class AuditLog:
    """Appends ``AuditRecord`` lines to a 0600 file (see the module); safe from several threads.

    Args:
        path: the log file.
        max_bytes: rotate before a line would take the file past this size (None: never).
        keep: rotated files kept (``PATH.1`` newest ... ``PATH.KEEP``).

    Raises:
        OSError: the file cannot be opened (or is a symlink).
    """

    def __init__(self, path: str | os.PathLike[str], *, max_bytes: int | None = None, keep: int = 5) -> None:
        self.path = Path(path)
        self.max_bytes, self.keep = max_bytes, keep
        self._lock = threading.Lock()  # the file: held while writing, never by the event loop
        self._file = self._open()
        self._size = os.fstat(self._file.fileno()).st_size
        self._queue: collections.deque[str] = collections.deque()
        self._wake = threading.Condition(threading.Lock())  # the queue: held only for a deque operation
        self._pending = 0  # lines queued or being written by the writer
        self._writer: threading.Thread | None = None
        self._closing = False
        self._dropped = 0

    def _open(self):
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        os.fchmod(fd, 0o600)
        return os.fdopen(fd, "a", encoding="utf-8")

    # --- writing --------------------------------------------------------------------------------

    def write(self, record: AuditRecord) -> None:
        """Record ``record`` without ever blocking an event loop (see the module); never raises."""
        line = record.to_json() + "\n"
        if trio.lowlevel.in_trio_run():
            with self._wake:
                if self._pending >= _QUEUE_LIMIT:
                    self._dropped += 1  # an int store: the writer reports it with its next line
                    return
                self._queue.append(line)
                self._pending += 1
                self._start_writer()
                self._wake.notify()
            return
        with self._lock:
            self._append_or_count(line)

    @contextlib.contextmanager
    def change(self, record: AuditRecord) -> Iterator[Callable[[], None]]:
        """Audit a change that commits inside this block; yields ``write``, to call just before the commit.

        ``write()`` appends ``record`` and syncs it to disk, holding the file
        until the block ends. When the block then fails (the commit did not
        happen), the line is cut off the file again, so the log never claims a
        change that was not kept.

        Raises:
            OSError: from ``write()``: the line could not be written (a full disk...).
        """
        start: int | None = None

        def write() -> None:
            nonlocal start
            self._lock.acquire()
            try:
                start = self._append(record.to_json() + "\n", sync=True)
            except BaseException:
                self._lock.release()
                raise

        try:
            yield write
        except BaseException:
            if start is not None:
                self._retract(start)
            raise
        finally:
            if start is not None:
                self._lock.release()

    def _retract(self, start: int) -> None:
        """(lock held) Cut the file back to ``start`` bytes: the last line's change did not happen."""
        try:
            self._file.flush()
            os.ftruncate(self._file.fileno(), start)
            os.fsync(self._file.fileno())
            self._size = start
        except OSError as exc:
            log.error("cannot take back the audit line of a change that failed (%s): the log claims it",
                      exc.strerror or exc)

    def _append_or_count(self, line: str) -> None:
        try:
            self._append(line)
        except OSError as exc:
            if not self._dropped:
                log.error("cannot write the audit log %s: %s; counting the lines lost", self.path,
                          exc.strerror or exc)
            self._dropped += 1

    def _append(self, line: str, sync: bool = False) -> int:
        """(lock held) Write one line, rotating first if needed; a pending drop count goes first.

        Returns:
            The file offset where ``line`` begins.
        """
        if self._dropped:
            note = json.dumps({"time": dt.datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                               "event": "audit_dropped", "count": self._dropped}, separators=(",", ":"))
            self._write_line(note + "\n")
            log.warning("the audit log %s is writable again; %d lines were lost", self.path, self._dropped)
            self._dropped = 0
        start = self._write_line(line)
        if sync:
            os.fsync(self._file.fileno())
        return start

    def _write_line(self, line: str) -> int:
        data = line.encode("utf-8")
        if self.max_bytes and self._size and self._size + len(data) > self.max_bytes:
            self._rotate()
        start = self._size
        try:
            self._file.write(line)
            self._file.flush()
        except OSError:
            self._recover()
            raise
        self._size += len(data)
        return start

    def _recover(self) -> None:
        """After a failed write: drop what the buffer holds, and cut any partial line off the file."""
        try:
            self._file.close()
        except OSError:
            pass
        self._file = self._open()
        try:
            if os.fstat(self._file.fileno()).st_size > self._size:
                os.ftruncate(self._file.fileno(), self._size)
        except OSError:
            pass
        self._size = os.fstat(self._file.fileno()).st_size

    def _rotate(self) -> None:
        self._file.close()
        for n in range(self.keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))
        if self.keep:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            os.unlink(self.path)
        self._file, self._size = self._open(), 0

    # --- the writer thread ----------------------------------------------------------------------

    def _start_writer(self) -> None:
        if self._writer is None:
            self._writer = threading.Thread(target=self._drain_forever, name="rolecall-audit", daemon=True)
            self._writer.start()

    def _drain_forever(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._closing:
                    self._wake.wait()
                if not self._queue:
                    return
                line = self._queue.popleft()
            with self._lock:
                self._append_or_count(line)
            with self._wake:
                self._pending -= 1
                self._wake.notify_all()

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every queued line is written (tests; shutdown)."""
        with self._wake:
            self._wake.wait_for(lambda: not self._pending, timeout)

    # --- the file -------------------------------------------------------------------------------

    def reopen(self) -> None:
        """Open the path again (SIGHUP after an outside rotation moved the file away)."""
        with self._lock:
            old, self._file = self._file, self._open()
            self._size = os.fstat(self._file.fileno()).st_size
        try:
            old.close()
        except OSError:
            pass

    def close(self) -> None:
        """Write what is queued, stop the writer, close the file."""
        with self._wake:
            self._closing = True
            self._wake.notify_all()
        if self._writer is not None:
            self._writer.join(timeout=10)
        with self._lock:
            try:
                self._file.close()
            except OSError:
                pass


class NullAudit:
    """An audit sink that keeps nothing (unit tests, benchmarks of the pure handler)."""

    def write(self, record: AuditRecord) -> None:
        """Discard ``record``."""

    @contextlib.contextmanager
    def change(self, record: AuditRecord) -> Iterator[Callable[[], None]]:
        """Keep nothing: ``write`` does nothing."""
        yield lambda: None

    def reopen(self) -> None:
        """Nothing to reopen."""

    def close(self) -> None:
        """Nothing to close."""

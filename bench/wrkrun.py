"""Shared plumbing of the wrk benchmarks: pinned server processes and wrk runs.

Not a benchmark itself (no ``BENCHMARK`` line); ``http_layer.py`` and ``imds.py``
import it. Everything talks to 127.0.0.1 only.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def pin(core: int | None) -> list[str]:
    """The ``taskset`` prefix that pins a command to ``core`` (nothing when None)."""
    return ["taskset", "-c", str(core)] if core is not None else []


def cores() -> tuple[int | None, int | None]:
    """(server core, wrk core), or no pinning without taskset or a second core."""
    available = sorted(os.sched_getaffinity(0))
    if shutil.which("taskset") is None or len(available) < 2:
        print("note: running unpinned (needs taskset and two cores)")
        return None, None
    return available[1], available[0]


class Running:
    """A server subprocess (``command + [port]``) on a free port, pinned to ``core``."""

    def __init__(self, command: list[str], core: int | None, preexec_fn: Callable[[], None] | None = None) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(pin(core) + command + [str(self.port)], stdout=subprocess.DEVNULL,
                                     preexec_fn=preexec_fn)  # fmt: skip
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server {command} exited with {self.proc.returncode} before listening")
            try:
                socket.create_connection((HOST, self.port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"server {command} did not listen on {HOST}:{self.port}") from None
                time.sleep(0.05)

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            return int(re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M).group(1))

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> "Running":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wrk(port: int, path: str, core: int | None, seconds: int, connections: int,
        extra: list[str] = ()) -> tuple[float, float]:  # fmt: skip
    """(requests/s, p99 latency in ms) of one keep-alive wrk run; raises if any response was not 2xx."""
    command = pin(core) + ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", *extra,
                           f"http://{HOST}:{port}{path}"]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError("wrk saw errors:\n" + out)
    rps = float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1))
    value, unit = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s)\b", out, re.M).groups()
    return rps, float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

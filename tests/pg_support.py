"""A throwaway PostgreSQL cluster for the tests: initdb in a temp dir, served on a loopback port.

``PgCluster.start()`` finds Debian's server binaries (``/usr/lib/postgresql/N/bin``,
or ``initdb`` on PATH), runs ``initdb`` with a random password for the superuser
``rolecall`` (scram-sha-256 over TCP, so the password path is the real one) and
starts ``postgres`` on 127.0.0.1 and a free port, with its unix socket in the
cluster's own directory. PostgreSQL refuses to run as root: as root the cluster
runs as the ``postgres`` OS user (Debian's package creates it) via ``setpriv``.
Without the binaries, or as root without that user, ``unavailable()`` says why,
and the tests skip with that reason.

Each test gets a database of its own (``new_database``); the password reaches
clients only through a ``PGPASSFILE`` (0600), as the product's contract asks.
``fsync=off`` unless ``durable``: the tests kill and restart the server process,
never the machine; benchmarks run it durable, as SQLite runs with ``synchronous=FULL``.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["PgCluster", "server_binaries", "unavailable"]

USER = "rolecall"


def server_binaries() -> Path | None:
    """The directory holding ``initdb`` and ``postgres`` (the newest Debian major first)."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(candidates[-1]).parent if candidates else None


def _run_as() -> list[str] | None:
    """The command prefix that drops root to the ``postgres`` user ([] when not root; None: cannot)."""
    if os.geteuid() != 0:
        return []
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        return None
    if shutil.which("setpriv") is None:
        return None
    return ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups", "--"]


def unavailable() -> str | None:
    """Why no cluster can be started here (None: it can)."""
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError as exc:
        return f"psycopg 3 and psycopg-pool are not installed ({exc}): pip install 'rolecall[postgresql]'"
    if server_binaries() is None:
        return "no PostgreSQL server binaries (initdb) here: apt-get install postgresql (make test does, as root)"
    if _run_as() is None:
        return "running as root, and there is no `postgres` user (or no setpriv) to run the server as"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PgCluster:
    """One running PostgreSQL server in a temp dir; ``stop()`` removes it."""

    def __init__(self, *, durable: bool = False) -> None:
        self.durable = durable   # fsync on (benchmarks: as durable as SQLite's synchronous=FULL)
        self.bindir = server_binaries()
        self.prefix = _run_as() or []
        self.root = Path(tempfile.mkdtemp(prefix="rolecall-pg-"))
        self.datadir = self.root / "data"
        self.port = 0
        self.password = secrets.token_urlsafe(24)
        self.passfile = self.root / "pgpass"
        self._counter = itertools.count(1)

    def start(self) -> PgCluster:
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        if self.prefix:   # the server's user must own its directory (and read the password once)
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        os.chmod(pwfile, 0o600)
        self._cmd([str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", USER, "--pwfile", str(pwfile),
                   "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
                   "--no-sync"])
        pwfile.unlink()
        self.passfile.write_text(f"127.0.0.1:*:*:{USER}:{self.password}\n")
        os.chmod(self.passfile, 0o600)
        self.port = _free_port()
        self.start_server()
        return self

    def _cmd(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(self.prefix + argv, check=check, capture_output=True, text=True, timeout=120)

    def start_server(self) -> None:
        """Start (or restart after ``kill``/``stop_server``) the server and wait until it accepts."""
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.root} "
                   "-c max_connections=200 -c shared_buffers=128MB")
        if not self.durable:
            options += " -c fsync=off -c full_page_writes=off"
        result = self._cmd([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-o", options,
                            "-l", str(self.root / "server.log"), "-w", "-t", "60", "start"], check=False)
        if result.returncode != 0:
            log = (self.root / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"pg_ctl start failed: {result.stderr.strip()}\n{log}")

    def stop_server(self, mode: str = "fast") -> None:
        self._cmd([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop"], check=False)

    def server_pid(self) -> int | None:
        try:
            return int((self.datadir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def kill(self) -> None:
        """SIGKILL the postmaster (its children exit when they notice)."""
        pid = self.server_pid()
        if pid:
            os.kill(pid, signal.SIGKILL)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def env(self) -> dict[str, str]:
        """What a client process needs: the password file (never the password itself)."""
        return {"PGPASSFILE": str(self.passfile), "PGCONNECT_TIMEOUT": "5"}

    def new_database(self) -> str:
        """A fresh empty database; returns its URL."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._counter)}"
        with psycopg.connect(self.url(), password=self.password, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        self.stop_server("immediate")
        deadline = time.monotonic() + 10
        while self.server_pid() and time.monotonic() < deadline:
            time.sleep(0.05)
        shutil.rmtree(self.root, ignore_errors=True)

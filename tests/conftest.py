"""Every test runs scrubbed of AWS_* settings, in a temp HOME, behind the net guard."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.netguard import NetGuard
from tests.clocks import TrioWallClock

# 2026-01-01T00:00:00Z: tests that drive time start here.
EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def _sandbox_environment(environ, home: str) -> None:
    """Scrub AWS_* and proxies; HOME, XDG and the AWS files under ``home``."""
    for name in list(environ):
        if name.startswith("AWS_") or name.lower() in _PROXY_VARIABLES:
            del environ[name]
    environ.update({
        "HOME": home,
        "XDG_CONFIG_HOME": os.path.join(home, ".config"),
        "XDG_CACHE_HOME": os.path.join(home, ".cache"),
        "XDG_DATA_HOME": os.path.join(home, ".local", "share"),
        "XDG_RUNTIME_DIR": os.path.join(home, "run"),
        "AWS_CONFIG_FILE": os.path.join(home, ".aws", "config"),
        "AWS_SHARED_CREDENTIALS_FILE": os.path.join(home, ".aws", "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        # Clients that honour proxies (botocore, httpx) never send loopback traffic through one.
        "NO_PROXY": "127.0.0.1,localhost,::1",
    })
    environ.pop("ROLECALL_AGENT_SOCKET", None)


# The whole run, module- and session-scoped fixtures included, is sandboxed and guarded
# from the start; the per-test fixtures below narrow HOME to one test and attribute
# any off-loopback attempt to the test (or the fixtures set up just before it).
_SESSION_GUARD = NetGuard()
_reported = 0


def pytest_configure(config):
    home = tempfile.mkdtemp(prefix="rolecall-test-home-")
    config._rolecall_home = home
    _sandbox_environment(os.environ, home)
    _SESSION_GUARD.install()


def pytest_unconfigure(config):
    _SESSION_GUARD.uninstall()
    shutil.rmtree(getattr(config, "_rolecall_home", ""), ignore_errors=True)


@pytest.fixture(autouse=True)
def aws_sandbox(monkeypatch, tmp_path_factory):
    """No AWS_* or proxies from the developer's shell; HOME and AWS files in a temp folder."""
    home = tmp_path_factory.mktemp("home")
    scrubbed = dict(os.environ)
    _sandbox_environment(scrubbed, str(home))
    for name in set(os.environ) - set(scrubbed):
        monkeypatch.delenv(name)
    for name, value in scrubbed.items():
        if os.environ.get(name) != value:
            monkeypatch.setenv(name, value)
    return home


@pytest.fixture(autouse=True)
def netguard():
    """Any connect/resolve off loopback fails the test, even if the caller swallowed it.

    The guard itself is installed for the whole session; this fixture reports what
    was attempted since the previous test ended (so a module fixture's attempt fails
    the first test that uses it).
    """
    global _reported
    yield _SESSION_GUARD
    fresh = _SESSION_GUARD.violations[_reported:]
    _reported = len(_SESSION_GUARD.violations)
    if fresh:
        pytest.fail("off-loopback network use: " + "; ".join(fresh), pytrace=False)


@pytest.fixture
def short_dir():
    """A short directory (unix socket paths are limited to 107 bytes)."""
    with tempfile.TemporaryDirectory(prefix="rc") as name:
        yield Path(name)


@pytest.fixture
def wall_clock():
    """A wall clock that trio's MockClock drives (use with ``autojump_clock``)."""
    return TrioWallClock(EPOCH)


def need_tool(name: str) -> str:
    """The path of a system tool, or skip the test naming what is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (make test installs it when run as root)")
    return path


@pytest.fixture(scope="session")
def pg_cluster():
    """One throwaway PostgreSQL server for the run (``tests.pg_support``); skips, saying why, when
    this machine cannot start one."""
    from tests.pg_support import PgCluster, unavailable

    reason = unavailable()
    if reason:
        pytest.skip(reason)
    cluster = PgCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_url(pg_cluster, monkeypatch):
    """A fresh database on the run's cluster, with PGPASSFILE set for clients in this process."""
    for name, value in pg_cluster.env().items():
        monkeypatch.setenv(name, value)
    return pg_cluster.new_database()

"""Every test runs scrubbed of AWS_* settings, in a temp HOME, behind the net guard."""

from __future__ import annotations

import datetime as dt
import os
import shutil

import pytest

from tests.netguard import NetGuard
from wire.clock import TrioWallClock

# 2026-01-01T00:00:00Z: tests that drive time start here.
EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


@pytest.fixture(autouse=True)
def aws_sandbox(monkeypatch, tmp_path_factory):
    """No AWS_* from the developer's shell; HOME and AWS files in a temp folder."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(home / "run"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / ".aws" / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / ".aws" / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("ROLECALL_AGENT_SOCKET", raising=False)
    return home


@pytest.fixture(autouse=True)
def netguard():
    """Any connect/resolve off loopback fails the test, even if the caller swallowed it."""
    guard = NetGuard()
    guard.install()
    try:
        yield guard
    finally:
        guard.uninstall()
    if guard.violations:
        pytest.fail("off-loopback network use: " + "; ".join(guard.violations), pytrace=False)


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

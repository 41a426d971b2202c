"""`rolecall up` in a temporary HOME, as benchmarks and the soak run it (a helper, not a benchmark).

``isolated_env(home)`` is the environment: ``AWS_*`` scrubbed, ``HOME``, the XDG
folders and the AWS config files inside ``home``, IMDS disabled for any SDK not
aimed at a loopback server, no proxy. ``start_up(env)`` starts ``rolecall up`` on
free loopback ports and returns it with the ``export`` lines it printed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["ROLECALL", "isolated_env", "start_up"]

BIN = Path(sys.executable).parent
ROLECALL = BIN / "rolecall"
_EXPORTS = 5  # AWS_EC2_METADATA_SERVICE_ENDPOINT, AWS_ENDPOINT_URL_STS/_IAM, AWS_REGION, AWS_DEFAULT_REGION


def isolated_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a user whose HOME is ``home`` (``home/run`` is XDG_RUNTIME_DIR: create it 0700)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / "data"), XDG_CACHE_HOME=str(home / "cache"),
               XDG_CONFIG_HOME=str(home / "config"), XDG_RUNTIME_DIR=str(home / "run"),
               AWS_CONFIG_FILE=str(home / ".aws" / "config"), AWS_SHARED_CREDENTIALS_FILE=str(home / ".aws" / "none"),
               AWS_EC2_METADATA_DISABLED="true", PATH=f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
               NO_PROXY="*", **extra)
    return env


def start_up(env: dict[str, str], *args: str, stderr=subprocess.DEVNULL) -> tuple[subprocess.Popen, dict[str, str]]:
    """``rolecall up`` on free loopback ports (plus ``args``); the process and its exports, once it serves."""
    up = subprocess.Popen([str(ROLECALL), "up", "--imds-listen", "127.0.0.1:0", "--sts-listen", "127.0.0.1:0", *args],
                          env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
    exports: dict[str, str] = {}
    deadline = time.monotonic() + 60
    while len(exports) < _EXPORTS and time.monotonic() < deadline:
        line = up.stdout.readline()
        if not line:
            break
        name, _, value = line.strip().removeprefix("export ").partition("=")
        exports[name] = value
    if len(exports) < _EXPORTS:
        up.kill()
        raise SystemExit("rolecall up did not start")
    return up, exports

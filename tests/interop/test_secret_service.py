"""rolecall's keys in a real Secret Service: gnome-keyring in a private D-Bus session.

``dbus-run-session`` starts a session bus for one script; in it,
``gnome-keyring-daemon --unlock`` creates and unlocks the login collection from
a password on stdin, so no unlock prompt can appear. The script then drives the
``rolecall`` CLI with ``PYTHON_KEYRING_BACKEND`` naming keyring's Secret Service
backend: ``keys add`` (keys from the environment), ``keys list``,
``credential-process`` (a GetSessionToken session from those keys, against the
backend on loopback), ``keys remove``; and reads the raw item through
``keyring`` to check rolecall's layout. Every keyring call is bounded by
``ROLECALL_KEYRING_TIMEOUT`` and the whole session by a timeout, so a prompt
can never hang CI.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import trio

from tests.conftest import need_tool
from tests.laptop_support import make_user
from tests.test_daemon import StsBackend
from wire.clock import SystemClock

pytestmark = pytest.mark.interop

BIN = Path(sys.executable).parent
SCRIPT = r"""
set -u
eval "$(printf '%s' "$UNLOCK" | gnome-keyring-daemon --unlock --components=secrets --daemonize)"
export GNOME_KEYRING_CONTROL
step() { name=$1; shift; "$@" >"$OUT/$name.out" 2>"$OUT/$name.err"; echo $? >"$OUT/$name.rc"; }
step backend "$PY" -c 'import keyring; print(type(keyring.get_keyring()).__module__)'
AWS_ACCESS_KEY_ID=$KEY_ID AWS_SECRET_ACCESS_KEY=$SECRET step add rolecall keys add --profile base
step list rolecall keys list --json
step item "$PY" -c 'import json, keyring; print(sorted(json.loads(keyring.get_password("rolecall", "base"))))'
step process rolecall credential-process --profile base
step remove rolecall keys remove --profile base
step gone "$PY" -c 'import keyring; print(keyring.get_password("rolecall", "base"))'
"""


async def test_keys_in_gnome_keyring_through_the_cli(nursery, tmp_path, aws_sandbox):
    need_tool("gnome-keyring-daemon")
    dbus_run_session = need_tool("dbus-run-session")
    backend = StsBackend(tmp_path / "backend", SystemClock())
    await backend.start(nursery)
    user = await make_user(backend.url, backend.admin, SystemClock(), "gk")
    out = tmp_path / "out"
    out.mkdir()
    (aws_sandbox / "run").mkdir(mode=0o700, exist_ok=True)  # XDG_RUNTIME_DIR: gnome-keyring's control socket
    env = dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}", OUT=str(out),
               PY=sys.executable, UNLOCK="unlock-me", KEY_ID=user.keys.access_key_id,
               SECRET=user.keys.secret_access_key, AWS_ENDPOINT_URL_STS=backend.url,
               PYTHON_KEYRING_BACKEND="keyring.backends.SecretService.Keyring", ROLECALL_KEYRING_TIMEOUT="20",
               AWS_EC2_METADATA_DISABLED="true")
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    with trio.fail_after(120):
        done = await trio.run_process([dbus_run_session, "--", "sh", "-c", SCRIPT], env=env,
                                      capture_stdout=True, capture_stderr=True, check=False)
    assert done.returncode == 0, done.stderr.decode()

    def step(name: str) -> str:
        rc = (out / f"{name}.rc").read_text().strip()
        assert rc == "0", f"{name}: {(out / f'{name}.err').read_text()}"
        return (out / f"{name}.out").read_text()

    assert step("backend").strip() == "keyring.backends.SecretService"
    assert f"stored access key {user.keys.access_key_id} for profile base" in step("add")
    assert json.loads(step("list"))["base"]["AccessKeyId"] == user.keys.access_key_id
    assert step("item").strip() == "['AccessKeyId', 'SecretAccessKey']"
    doc = json.loads(step("process"))
    assert doc["Version"] == 1 and doc["AccessKeyId"].startswith("ASIA") and backend.calls["GetSessionToken"] == 1
    assert "removed the keys of profile base" in step("remove")
    assert step("gone").strip() == "None"
    # the secret never left the keyring for rolecall's own files
    for path in (aws_sandbox / ".local" / "share" / "rolecall").rglob("*"):
        if path.is_file():
            assert user.keys.secret_access_key.encode() not in path.read_bytes(), path

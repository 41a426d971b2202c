"""Directories and files a hostile local user prepared: refused, never written through.

The attack: user ``nobody`` pre-creates a 0777 data dir holding a symlink named
like one of rolecall's secret files, pointing at a file of its own; root's
rolecall must refuse the directory instead of writing the secret into nobody's file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from wire.private_files import UnsafeDirectory, private_dir, write_private

REPO = Path(__file__).resolve().parent.parent
NOBODY = 65534


def rolecall(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60)


def one_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_private_dir_refuses_what_others_can_change(tmp_path):
    assert private_dir(tmp_path / "new") == str(tmp_path / "new") and (tmp_path / "new").stat().st_mode & 0o777 == 0o700
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o700)
    os.chmod(shared, 0o777)
    with pytest.raises(UnsafeDirectory, match=r"writable by others \(mode 777\): run `chmod go-w"):
        private_dir(shared)
    os.chmod(shared, 0o755)
    assert private_dir(shared)  # readable is not writable
    os.symlink(shared, tmp_path / "link")
    with pytest.raises(UnsafeDirectory, match="not a directory"):
        private_dir(tmp_path / "link")
    with pytest.raises(FileNotFoundError):
        private_dir(tmp_path / "missing", create=False)


def test_private_dir_refuses_another_users_directory(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("making a directory of another user needs root")
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, NOBODY, NOBODY)
    with pytest.raises(UnsafeDirectory, match=f"belongs to uid {NOBODY}"):
        private_dir(theirs)


def test_write_private_replaces_a_symlink_instead_of_following_it(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("theirs")
    os.symlink(victim, tmp_path / "secret")
    write_private(tmp_path / "secret", b"ours", durable=True)
    assert victim.read_text() == "theirs"
    assert not (tmp_path / "secret").is_symlink() and (tmp_path / "secret").read_bytes() == b"ours"
    assert (tmp_path / "secret").stat().st_mode & 0o777 == 0o600
    assert sorted(os.listdir(tmp_path)) == ["secret", "victim"]  # no temp file left


@pytest.fixture
def trap(tmp_path):
    """A 0777 data dir of nobody's, with agent-secret and admin.json symlinked to nobody's files."""
    if os.geteuid() != 0:
        pytest.skip("the attack needs a second user: run as root")
    data = tmp_path / "data"
    data.mkdir()
    loot = tmp_path / "loot"
    loot.write_text("")
    for name in ("agent-secret", "admin.json", "demo.json"):
        os.symlink(loot, data / name)
    for path in (data, loot):
        os.chown(path, NOBODY, NOBODY)
    os.chmod(data, 0o777)
    return data, loot


def test_up_refuses_a_data_dir_another_user_prepared(trap):
    data, loot = trap
    line = one_line(rolecall("up", "--data-dir", str(data), "--imds-listen", "127.0.0.1:0", "--sts-listen",
                             "127.0.0.1:0"))
    assert line.startswith(f"rolecall: up: --data-dir: {data} belongs to uid {NOBODY}")
    assert loot.read_text() == ""


def test_the_backend_refuses_a_data_dir_another_user_prepared(trap):
    data, _ = trap
    line = one_line(rolecall("backend", "init", "--data-dir", str(data)))
    assert f"{data} belongs to uid {NOBODY}" in line
    os.chown(data, 0, 0)  # ours, but still writable by everyone
    line = one_line(rolecall("backend", "init", "--data-dir", str(data)))
    assert "writable by others (mode 777)" in line


async def test_the_control_socket_refuses_a_directory_of_another_user(tmp_path):
    from agent.control import serve_control

    if os.geteuid() != 0:
        pytest.skip("making a directory of another user needs root")
    theirs = tmp_path / "run"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, NOBODY, NOBODY)
    with pytest.raises(UnsafeDirectory, match=f"belongs to uid {NOBODY}"):
        await serve_control(theirs / "agent.sock", lambda request, uid: {})


def test_the_agent_refuses_a_container_token_directory_others_can_write(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    secret = tmp_path / "secret"
    secret.write_text("s" * 40)
    secret.chmod(0o600)
    config = tmp_path / "agent.toml"
    config.write_text('[sts]\nendpoint_url = "http://127.0.0.1:9"\nregion = "us-east-1"\n\n'
                      f'[source]\naccess_key_id = "AKIAAGENTAGENTAGENT1"\nsecret_access_key_file = "{secret}"\n\n'
                      '[role]\narn = "arn:aws:iam::123456789012:role/x"\n\n[metadata]\nlisten = ["127.0.0.1:0"]\n\n'
                      f'[container]\ntoken_file = "{shared / "token"}"\n\n'
                      f'[agent]\ncontrol_socket = "{tmp_path / "agent.sock"}"\n')
    line = one_line(rolecall("agent", "serve", "--config", str(config)))
    assert f"{shared} is writable by others (mode 777)" in line
    assert not (shared / "token").exists()


def test_the_keyring_file_and_the_key_index_refuse_a_directory_others_can_write(tmp_path):
    from agent.keyring_file import EncryptedFileKeyring
    from wire.key_index import index_lock, write_index

    shared = tmp_path / "rolecall"
    shared.mkdir()
    os.chmod(shared, 0o777)
    environ = {"XDG_DATA_HOME": str(tmp_path), "HOME": str(tmp_path)}
    with pytest.raises(UnsafeDirectory, match="writable by others"):
        write_index({"dev": {"AccessKeyId": "AKIAEXAMPLE"}}, environ)
    with pytest.raises(UnsafeDirectory, match="writable by others"):
        with index_lock(environ):
            pass
    with pytest.raises(UnsafeDirectory, match="writable by others"):  # before any passphrase is asked for
        EncryptedFileKeyring(str(shared / "keyring.json")).set_password("rolecall", "dev", "{}")
    assert list(shared.iterdir()) == []

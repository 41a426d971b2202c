"""The unit files: `rolecall systemd install` output, `systemd-analyze verify` and `security` on it.

The units are installed into a temporary directory with a real executable in
``ExecStart`` (verify fails on a missing binary). The exposure score of the
agent and the backend must stay at or below 2.0 (``security --offline=true``).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from cli.main import main
from cli.systemd import SYSTEM_UNITS, USER_UNITS, render, template_dir
from tests.conftest import need_tool

MAX_EXPOSURE = 2.0
_EXPOSURE = re.compile(r"Overall exposure level for (\S+): (\d+\.\d+)")


@pytest.fixture
def executable(tmp_path) -> Path:
    path = tmp_path / "bin" / "rolecall"
    path.parent.mkdir()
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


def install(dest: Path, executable: Path, *extra: str) -> list[str]:
    assert main(["systemd", "install", "--dest", str(dest), "--executable", str(executable), *extra]) == 0
    return sorted(p.name for p in dest.iterdir())


def analyze(*args: str, user: bool = False, runtime: Path | None = None) -> subprocess.CompletedProcess:
    tool = need_tool("systemd-analyze")
    env = dict(os.environ, SYSTEMD_LOG_LEVEL="notice")
    if runtime is not None:
        env["XDG_RUNTIME_DIR"] = str(runtime)  # a user manager's lookup paths need one
    command = [tool, *(["--user"] if user else []), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)


def test_install_writes_the_system_units_with_the_executable(tmp_path, executable, capsys):
    dest = tmp_path / "units"
    assert install(dest, executable) == sorted(SYSTEM_UNITS)
    out = capsys.readouterr().out
    assert all(f"wrote {dest / name}" in out for name in SYSTEM_UNITS)
    agent = (dest / "rolecall-agent.service").read_text()
    assert f"ExecStart={executable} agent serve --config /etc/rolecall/agent.toml" in agent
    assert "@BINDIR@" not in agent
    backend = (dest / "rolecall-backend.service").read_text()
    assert f"ExecStart={executable} backend serve --data-dir /var/lib/rolecall-backend" in backend
    socket_unit = (dest / "rolecall-agent.socket").read_text()
    assert "ListenStream=169.254.169.254:80" in socket_unit and "FreeBind=yes" in socket_unit
    assert "ListenStream=127.0.0.1:8169" in socket_unit


@pytest.mark.parametrize("user", [False, True])
def test_enabling_starts_the_service_at_boot_not_on_the_first_request(tmp_path, executable, capsys, user):
    """Socket-started on the first connection, the agent would answer that request 503 (no prefetch)."""
    dest = tmp_path / "units"
    install(dest, executable, *(["--user"] if user else []))
    out = capsys.readouterr().out
    scope = "systemctl --user" if user else "systemctl"
    assert f"{scope} enable --now rolecall-agent.socket rolecall-agent.service`" in out
    socket_unit = (dest / "rolecall-agent.socket").read_text()
    assert re.search(r"^Also=rolecall-agent\.service$", socket_unit, re.M)
    agent = (dest / "rolecall-agent.service").read_text()
    target = "default.target" if user else "multi-user.target"
    assert re.search(rf"^WantedBy={target}$", agent, re.M)


def test_the_agent_may_hold_the_metadata_servers_connections():
    from metadata_server.server import METADATA_LIMITS

    agent = (template_dir() / "rolecall-agent.service").read_text()
    found = re.search(r"^LimitNOFILE=(\d+)$", agent, re.M)
    assert found and int(found.group(1)) >= 2 * METADATA_LIMITS.max_connections


def test_only_the_link_local_unit_has_a_capability(tmp_path, executable):
    dest = tmp_path / "units"
    install(dest, executable)
    for name in SYSTEM_UNITS:
        text = (dest / name).read_text()
        if name == "rolecall-link-local.service":
            assert "CapabilityBoundingSet=CAP_NET_ADMIN" in text
            assert "ExecStart=ip addr replace 169.254.169.254/32 dev lo" in text  # idempotent
        elif name.endswith(".service"):
            assert re.search(r"^CapabilityBoundingSet=$", text, re.M), name
            assert "NoNewPrivileges=yes" in text and "SystemCallFilter=@system-service" in text


def test_user_units_drop_what_a_user_manager_cannot_do(tmp_path, executable):
    dest = tmp_path / "user"
    assert install(dest, executable, "--user") == sorted(USER_UNITS)
    agent = (dest / "rolecall-agent.service").read_text()
    assert "--config %E/rolecall/agent.toml" in agent and "DynamicUser" not in agent
    assert "After=rolecall-agent.socket" in agent and "rolecall-link-local" not in agent
    assert "WantedBy=default.target" in agent
    socket_unit = (dest / "rolecall-agent.socket").read_text()
    assert "169.254.169.254" not in socket_unit and "ListenStream=127.0.0.1:8169" in socket_unit
    assert "--data-dir %S/rolecall-backend" in (dest / "rolecall-backend.service").read_text()


def test_a_missing_executable_is_one_line_exit_1(tmp_path, capsys):
    assert main(["systemd", "install", "--dest", str(tmp_path), "--executable", str(tmp_path / "nope")]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_render_replaces_only_the_placeholder():
    text = (template_dir() / "rolecall-agent.service").read_text()
    assert render(text, "/opt/rolecall/bin/rolecall").count("/opt/rolecall/bin/rolecall") == 1


def test_systemd_analyze_verify_is_clean(tmp_path, executable):
    need_tool("systemd-analyze")
    dest = tmp_path / "units"
    install(dest, executable)
    result = analyze("verify", *(str(dest / name) for name in SYSTEM_UNITS))
    assert result.returncode == 0 and result.stdout.strip() == "" and result.stderr.strip() == "", result.stderr


def test_systemd_analyze_verify_user_units(tmp_path, executable):
    need_tool("systemd-analyze")
    dest, runtime = tmp_path / "user", tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    install(dest, executable, "--user")
    result = analyze("verify", *(str(dest / name) for name in USER_UNITS), user=True, runtime=runtime)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


@pytest.mark.parametrize("unit", ["rolecall-agent.service", "rolecall-backend.service"])
def test_exposure_score_is_at_most_2(tmp_path, executable, unit):
    need_tool("systemd-analyze")
    dest = tmp_path / "units"
    install(dest, executable)
    result = analyze("security", "--offline=true", "--no-pager", str(dest / unit))
    found = _EXPOSURE.search(result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(2)) <= MAX_EXPOSURE, result.stdout
    threshold = analyze("security", "--offline=true", "--no-pager", f"--threshold={int(MAX_EXPOSURE * 10)}",
                        str(dest / unit))
    assert threshold.returncode == 0, threshold.stdout


def test_the_example_config_loads_with_a_systemd_credential(tmp_path):
    from agent.config import load_config

    (tmp_path / "source-secret").write_text("an-example-secret")
    (tmp_path / "source-secret").chmod(0o600)
    config = load_config(str(template_dir() / "agent.toml.example"), environ={"CREDENTIALS_DIRECTORY": str(tmp_path)},
                         uid=999)
    assert config.source.secret_access_key_file == str(tmp_path / "source-secret")
    assert config.control_socket == "/run/rolecall/agent.sock"  # the unit's RuntimeDirectory=rolecall

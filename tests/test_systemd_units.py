"""The unit files: `rolecall systemd install` output, `systemd-analyze verify` and `security` on it.

The units are installed into a temporary directory with a real executable in
``ExecStart`` (verify fails on a missing binary). The exposure score of the
agent and the backend must stay at or below 2.0 (``security --offline=true``).
The sysusers.d snippet for the agent's static user and group is applied by
``systemd-sysusers --root`` to an empty tree. (The installed-wheel run is in
``test_wheel_install.py``.)
"""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from agent.control import GROUP
from cli.main import main
from cli.systemd import SYSTEM_UNITS, SYSUSERS, USER_UNITS, render, template_dir
from tests.conftest import need_tool

REPO = Path(__file__).resolve().parent.parent

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
    assert install(dest, executable) == sorted([*SYSTEM_UNITS, SYSUSERS])  # --dest: the snippet beside the units
    out = capsys.readouterr().out
    assert all(f"wrote {dest / name}" in out for name in (*SYSTEM_UNITS, SYSUSERS))
    assert f"`systemd-sysusers {dest / SYSUSERS} && systemctl daemon-reload && " in out
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


def _settings(text: str) -> list[tuple[str, str]]:
    return [tuple(line.split("=", 1)) for line in text.splitlines() if "=" in line and not line.startswith("#")]


def test_the_agent_runs_as_the_static_user_whose_group_may_use_the_control_socket(tmp_path, executable):
    """Not DynamicUser: the group must exist on the host, and have members, for the 0660 socket to serve them."""
    dest = tmp_path / "units"
    install(dest, executable)
    agent = dict(_settings((dest / "rolecall-agent.service").read_text()))
    assert "DynamicUser" not in agent
    assert agent["User"] == "rolecall" and agent["Group"] == GROUP == "rolecall"
    assert agent["RuntimeDirectory"] == "rolecall" and agent["RuntimeDirectoryMode"] == "0750"
    # What DynamicUser= implied, spelled out.
    for key, value in {"ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes", "RemoveIPC": "yes",
                       "NoNewPrivileges": "yes", "RestrictSUIDSGID": "yes"}.items():
        assert agent[key] == value, key
    entries = [line.split() for line in (dest / SYSUSERS).read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert entries == [["u", "rolecall", "-", '"rolecall', 'agent"', "-", "-"],
                       ["u", "rolecall-backend", "-", '"rolecall', 'backend"', "-", "-"]]


def test_the_sysusers_snippet_creates_the_user_and_group(tmp_path, executable):
    tool = need_tool("systemd-sysusers")
    dest, root = tmp_path / "units", tmp_path / "root"
    install(dest, executable)
    (root / "etc").mkdir(parents=True)
    result = subprocess.run([tool, f"--root={root}", str(dest / SYSUSERS)], capture_output=True, text=True,
                            timeout=60)
    if result.returncode != 0 and os.geteuid() != 0:
        pytest.skip(f"systemd-sysusers --root refused without root: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    users = {line.split(":")[0]: line.split(":") for line in (root / "etc" / "passwd").read_text().splitlines()}
    groups = {line.split(":")[0]: line.split(":") for line in (root / "etc" / "group").read_text().splitlines()}
    _, _, uid, gid, gecos, _, shell = users["rolecall"]
    assert int(uid) < 1000 and gid == groups[GROUP][2] and gecos == "rolecall agent"
    assert shell.endswith("nologin")


def test_the_sysusers_snippet_goes_where_asked_and_never_with_user_units(tmp_path, executable, capsys):
    dest, sysusers = tmp_path / "units", tmp_path / "sysusers.d"
    install(dest, executable, "--sysusers-dir", str(sysusers))
    assert [p.name for p in sysusers.iterdir()] == [SYSUSERS] and not (dest / SYSUSERS).exists()
    assert f"systemd-sysusers {sysusers / SYSUSERS} && " in capsys.readouterr().out
    user = tmp_path / "user"
    assert install(user, executable, "--user") == sorted(USER_UNITS)
    assert "systemd-sysusers" not in capsys.readouterr().out
    code = main(["systemd", "install", "--user", "--dest", str(user), "--executable", str(executable),
                 "--sysusers-dir", str(sysusers)])
    assert code == 1 and len(capsys.readouterr().err.strip().splitlines()) == 1


def test_execstart_names_the_rolecall_script_that_ran_the_install(tmp_path, monkeypatch, capsys):
    """From a venv not on PATH (or under sudo's PATH), the script that ran wins over another on PATH."""
    running, other = tmp_path / "venv" / "bin" / "rolecall", tmp_path / "other" / "rolecall"
    for path in (running, other):
        path.parent.mkdir(parents=True)
        path.write_text("#!/bin/sh\nexit 0\n")
        path.chmod(0o755)
    monkeypatch.setattr(sys, "argv", [str(running), "systemd", "install"])
    monkeypatch.setenv("PATH", f"{other.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    assert main(["systemd", "install", "--dest", str(tmp_path / "units")]) == 0
    assert f"ExecStart={running} agent serve" in (tmp_path / "units" / "rolecall-agent.service").read_text()
    monkeypatch.setattr(sys, "argv", ["-c"])  # not a rolecall script: the one on PATH
    assert main(["systemd", "install", "--dest", str(tmp_path / "units2")]) == 0
    assert f"ExecStart={other} agent serve" in (tmp_path / "units2" / "rolecall-agent.service").read_text()


def test_the_templates_are_package_data_the_wheel_carries():
    """Every file of ``cli/systemd_units`` matches pyproject's package-data (the wheel test checks the build)."""
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "cli.systemd_units" in setuptools["packages"]
    patterns = setuptools["package-data"]["cli.systemd_units"]
    folder = Path(str(template_dir()))
    assert folder == REPO / "cli" / "systemd_units" and not (REPO / "systemd").exists()  # one copy
    names = sorted(p.name for p in folder.iterdir() if p.name != "__pycache__")
    assert set(names) >= {*SYSTEM_UNITS, SYSUSERS, "agent.toml.example"}
    assert [n for n in names if not any(fnmatch.fnmatch(n, pattern) for pattern in patterns)] == []


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
    assert "User=" not in agent and "sysusers" not in agent  # the identity paragraph goes, comments too
    assert "RuntimeDirectory=rolecall" in agent
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

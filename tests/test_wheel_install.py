"""The installed wheel, not the repository: build it, install it into a fresh venv, run it.

This is the CI job for "rolecall works from a wheel" (CI runs only `make test`). It
builds the wheel from a copy of the source tree (the repository gets no ``build/``),
installs it with its declared dependencies into a new venv that cannot see the
repository (no ``--system-site-packages``, no ``PYTHONPATH``, a temporary working
directory), then runs that venv's ``rolecall systemd install --dest D`` (the unit
templates must come from the installed package data) and ``rolecall up`` on loopback
until it prints its export lines and serves credentials, and stops it with SIGTERM.

Offline after the first run: pip installs only from a wheel cache beside this test's
interpreter (``<venv>/rolecall-test-wheels``, which ``make clean`` removes with the
venv) with ``--no-index``. Only when that cache lacks the build requirement
(``[build-system] requires``) or a runtime dependency does ``pip download`` fill it
from the package index, once; when that fails too, the test is skipped with pip's
reason. Nothing else leaves loopback. About 15 s with the cache filled.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest

from cli.systemd import SYSTEM_UNITS, SYSUSERS, render, template_dir

REPO = Path(__file__).resolve().parent.parent
_NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "node_modules", "__pycache__", "*.egg-info", ".hypothesis",
                                     ".pytest_cache", "build", "dist")
# Building and installing take seconds; fetching the wheels the first time, a little more.
pytestmark = pytest.mark.timeout(300)

EXPORT_NAMES = ["AWS_EC2_METADATA_SERVICE_ENDPOINT", "AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL_IAM", "AWS_REGION",
                "AWS_DEFAULT_REGION"]


def _child_env(**extra: str) -> dict[str, str]:
    """The test's scrubbed environment, with nothing that points Python at the repository."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", AWS_EC2_METADATA_DISABLED="true")
    env.update(extra)
    return env


def _run(command: list[str], *, cwd: Path, timeout: float = 120, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess:
    return subprocess.run([str(part) for part in command], cwd=cwd, env=env or _child_env(), capture_output=True,
                          text=True, timeout=timeout, check=False)


def _pip(*args: object, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "pip", *map(str, args)], cwd=cwd, timeout=timeout)


def _last_line(result: subprocess.CompletedProcess) -> str:
    lines = (result.stderr or result.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit {result.returncode}"


def _wheel_cache(tmp_path_factory) -> Path:
    prefix = Path(sys.prefix)
    if sys.prefix != sys.base_prefix and os.access(prefix, os.W_OK):
        cache = prefix / "rolecall-test-wheels"
        cache.mkdir(exist_ok=True)
        return cache
    return tmp_path_factory.mktemp("wheels")  # no venv of ours to keep it in: fetched every run


def _requirements() -> list[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    return [*project["build-system"]["requires"], *project["project"]["dependencies"]]


def _fill_cache(cache: Path, work: Path) -> None:
    """The build requirement and the runtime dependencies as wheels in ``cache``."""
    requirements = _requirements()
    if _pip("download", "--no-index", "--find-links", cache, "-d", cache, *requirements, cwd=work).returncode == 0:
        return
    fetched = _pip("download", "--only-binary", ":all:", "-d", cache, *requirements, cwd=work, timeout=240)
    if fetched.returncode != 0:
        pytest.skip(f"no cached wheels in {cache} and the package index is out of reach "
                    f"(pip download: {_last_line(fetched)})")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """``(venv, work)``: a fresh venv with the built wheel installed, and a scratch directory."""
    if _pip("--version", cwd=REPO).returncode != 0:
        pytest.skip(f"{sys.executable} has no pip to build and install the wheel with")
    root = tmp_path_factory.mktemp("wheel")
    work = root / "work"
    work.mkdir()
    cache = _wheel_cache(tmp_path_factory)
    _fill_cache(cache, work)

    source = root / "src"
    shutil.copytree(REPO, source, ignore=_NOT_SOURCE, symlinks=True)
    built = _pip("wheel", "--no-deps", "--no-index", "--find-links", cache, "-w", root / "dist", source, cwd=work,
                 timeout=180)
    assert built.returncode == 0, built.stdout + built.stderr
    wheels = list((root / "dist").glob("rolecall-*.whl"))
    assert len(wheels) == 1, wheels

    venv = root / "venv"
    created = _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=work)
    if created.returncode != 0:
        pytest.skip(f"cannot create a venv: {_last_line(created)}")
    done = _pip("--python", venv / "bin" / "python", "install", "--no-index", "--find-links", cache, wheels[0],
                cwd=work, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    return venv, work


def _site_packages(venv: Path) -> Path:
    found = list(venv.glob("lib/python3*/site-packages"))
    assert len(found) == 1, found
    return found[0].resolve()


def test_the_code_and_the_templates_come_from_the_wheel(installed):
    venv, work = installed
    probe = _run([venv / "bin" / "python", "-c",
                  "import json, cli, cli.systemd; "
                  "print(json.dumps([cli.__file__, str(cli.systemd.template_dir())]))"], cwd=work)
    assert probe.returncode == 0, probe.stderr
    site = _site_packages(venv)
    for path in json.loads(probe.stdout):
        assert Path(path).resolve().is_relative_to(site), path


def test_systemd_install_from_the_wheel_writes_the_units_and_the_sysusers_snippet(installed):
    venv, work = installed
    script = venv / "bin" / "rolecall"
    dest = work / "units"
    result = _run([script, "systemd", "install", "--dest", dest], cwd=work,
                  env=_child_env(PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in dest.iterdir()) == sorted([*SYSTEM_UNITS, SYSUSERS])
    executable = str(script.resolve())
    for name in SYSTEM_UNITS:  # the wheel's templates are the repository's, rendered for this venv
        expected = render((template_dir() / name).read_text(encoding="utf-8"), executable)
        assert (dest / name).read_text(encoding="utf-8") == expected, name
    assert f"ExecStart={executable} agent serve" in (dest / "rolecall-agent.service").read_text()
    assert (dest / SYSUSERS).read_text() == (template_dir() / SYSUSERS).read_text()
    assert f"systemd-sysusers {dest / SYSUSERS} && systemctl daemon-reload" in result.stdout
    example = result.stdout.split("(example: ", 1)[1].split(")", 1)[0]
    assert Path(example).is_file() and Path(example).resolve().is_relative_to(_site_packages(venv)), example
    analyze = shutil.which("systemd-analyze")
    if analyze:  # ExecStart now names a real rolecall, so verify sees the whole unit
        verified = _run([analyze, "verify", *(dest / name for name in SYSTEM_UNITS)], cwd=work,
                        env=_child_env(SYSTEMD_LOG_LEVEL="notice"), timeout=60)
        assert verified.returncode == 0 and verified.stderr.strip() == "", verified.stderr


def _lines(stream, into: queue.Queue) -> None:
    for line in stream:
        into.put(line.rstrip("\n"))
    into.put(None)


def _imds_credentials(endpoint: str) -> dict:
    """IMDSv2 on loopback: a token, the role name, the role's credentials."""
    def call(method: str, path: str, headers: dict[str, str]) -> str:
        request = urllib.request.Request(endpoint + path, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read().decode()

    token = call("PUT", "latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    headers = {"X-aws-ec2-metadata-token": token}
    role = call("GET", "latest/meta-data/iam/security-credentials/", headers).strip()
    return json.loads(call("GET", f"latest/meta-data/iam/security-credentials/{role}", headers))


def test_rolecall_up_from_the_wheel_prints_its_exports_and_stops_on_sigterm(installed):
    venv, work = installed
    command = [str(venv / "bin" / "rolecall"), "up", "--data-dir", str(work / "up"),
               "--imds-listen", "127.0.0.1:0", "--sts-listen", "127.0.0.1:0"]
    with open(work / "up.log", "w+", encoding="utf-8") as log:
        process = subprocess.Popen(command, cwd=work, env=_child_env(), stdout=subprocess.PIPE, stderr=log,
                                   text=True)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=_lines, args=(process.stdout, lines), daemon=True).start()
        try:
            exports: dict[str, str] = {}
            deadline = time.monotonic() + 30
            while "AWS_DEFAULT_REGION" not in exports:
                try:
                    line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
                except queue.Empty:
                    line = None
                if line is None:
                    log.seek(0)
                    pytest.fail(f"no export lines from {command}; stderr:\n{log.read()}")
                assert line.startswith("export "), line
                name, _, value = line.removeprefix("export ").partition("=")
                exports[name] = value
            assert list(exports) == EXPORT_NAMES
            credentials = _imds_credentials(exports["AWS_EC2_METADATA_SERVICE_ENDPOINT"])
            assert credentials["Code"] == "Success" and credentials["AccessKeyId"]
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=20) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()

"""The MFA prompt helper (agent.mfa_prompt) and the terminal questions under it (agent.tty)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import trio

import agent.mfa_prompt as mfa_prompt
from agent.errors import MfaError
from agent.mfa_prompt import (COMMAND_TIMEOUT, DRIVERS, PROMPT_TIMEOUT, choose_prompt, command_prompt,
                              static_prompt)
from agent.tty import NoTerminal
from tests.pty_support import on_a_pty

ROOT = Path(__file__).resolve().parents[1]
SERIAL = "arn:aws:iam::123456789012:mfa/alice"
EVERYTHING = ("zenity", "kdialog", "osascript", "ykman")


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text, repr(text)
    return text


def finds(*programs: str):
    """A ``which`` that finds exactly ``programs``."""
    return lambda name: f"/usr/bin/{name}" if name in programs else None


@pytest.fixture(autouse=True)
def no_prompt_settings(monkeypatch):
    """No prompt driver settings from the developer's shell, and no terminal unless a test says so."""
    for name in ("ROLECALL_MFA_PROMPT", "YKMAN_OATH_CREDENTIAL_NAME", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(mfa_prompt, "has_terminal", lambda: False)


@pytest.fixture
def runs(monkeypatch):
    """Record what the drivers would run (argv, what, timeout), answering 000000."""
    calls: list[tuple[list[str], str, float]] = []

    async def fake_run(argv, what, timeout):
        calls.append((argv, what, timeout))
        return "000000"

    monkeypatch.setattr(mfa_prompt, "_run", fake_run)
    return calls


@pytest.fixture
def terminal(monkeypatch):
    """A controlling terminal whose person answers 555555; the questions asked are recorded."""
    asked: list[str] = []

    def ask(prompt, *, echo=True):
        asked.append(prompt)
        return "555555"

    monkeypatch.setattr(mfa_prompt, "has_terminal", lambda: True)
    monkeypatch.setattr(mfa_prompt, "ask", ask)
    return asked


@pytest.fixture
def bindir(tmp_path, monkeypatch) -> Path:
    """A folder first on PATH for fake programs."""
    path = tmp_path / "bin"
    path.mkdir()
    monkeypatch.setenv("PATH", f"{path}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}")
    return path


def fake_program(bindir: Path, name: str, body: str) -> Path:
    """An executable ``name`` that records its arguments (one a line) in ``name.argv``, then runs ``body``."""
    argv_file = bindir.parent / f"{name}.argv"
    script = bindir / name
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > '{argv_file}'\n{body}\n")
    script.chmod(0o755)
    return argv_file


# ---- --token-code ---------------------------------------------------------------------------------

async def test_token_code_comes_first_and_is_used_once(terminal, runs):
    prompt = choose_prompt(token_code=" 314159\n", mfa_process="echo 654321",
                           environ={"ROLECALL_MFA_PROMPT": "zenity", "DISPLAY": ":99"}, which=finds(*EVERYTHING))
    assert await prompt(SERIAL) == "314159"
    with pytest.raises(MfaError) as info:
        await prompt(SERIAL)
    message = one_line(info.value)
    assert "used already" in message and SERIAL in message and "314159" not in message
    assert runs == [] and terminal == []


@pytest.mark.parametrize("code", ["12345", "1234567", "abcdef", "12 345", "", "١٢٣٤٥٦"])
def test_token_code_must_be_six_digits(code):
    with pytest.raises(MfaError) as info:
        choose_prompt(token_code=code)  # refused at once, before anything is asked
    message = one_line(info.value)
    assert "--token-code" in message and "6-digit" in message
    if code.strip():
        assert code not in message


async def test_static_prompts_are_independent():
    first, second = static_prompt("111111"), static_prompt("222222")
    assert await first("a") == "111111"
    assert await second("a") == "222222"


# ---- mfa_process -------------------------------------------------------------------------------------

async def test_mfa_process_comes_before_the_forced_driver_and_the_terminal(terminal):
    prompt = choose_prompt(mfa_process="echo 123456", environ={"ROLECALL_MFA_PROMPT": "bogus"},
                           which=finds(*EVERYTHING))
    assert await prompt(SERIAL) == "123456"
    assert terminal == []


async def test_mfa_process_runs_in_sh_and_its_stderr_passes_through(capfd):
    prompt = command_prompt("printf 'touch your key\\n' >&2; c=65; printf '  %s4321  \\n' $c")
    assert await prompt(SERIAL) == "654321"
    captured = capfd.readouterr()
    assert "touch your key" in captured.err
    assert "654321" not in captured.out + captured.err  # stdout was captured, not passed on


async def test_mfa_process_failing_is_one_line_without_its_output():
    with pytest.raises(MfaError) as info:
        await command_prompt("echo 987654; echo 135790 >&2; exit 3")(SERIAL)
    message = one_line(info.value)
    assert message == "mfa_process failed (exit status 3); no MFA code"


@pytest.mark.parametrize("output", ["98765", "9876543", "98765x", "987 654", "", "987654\n135790"])
async def test_mfa_process_printing_no_code_is_refused_without_echo(output):
    command = "printf '%s\\n' " + " ".join(f"'{part}'" for part in output.split("\n"))
    with pytest.raises(MfaError) as info:
        await command_prompt(command)(SERIAL)
    message = one_line(info.value)
    assert message == "mfa_process gave something that is not a 6-digit MFA code"


async def test_mfa_process_timeout():
    """Real time, small: the command is stopped at the timeout, not after its 5 s."""
    start = trio.current_time()
    with pytest.raises(MfaError) as info:
        await command_prompt("echo 987654; exec sleep 5", timeout=0.3)(SERIAL)
    elapsed = trio.current_time() - start
    assert 0.3 <= elapsed < 2
    message = one_line(info.value)
    assert message == "mfa_process gave no MFA code within 0.3 s"


async def test_mfa_process_default_timeout(runs):
    await choose_prompt(mfa_process="anything")(SERIAL)
    assert runs == [(["/bin/sh", "-c", "anything"], "mfa_process", COMMAND_TIMEOUT)]


# ---- ROLECALL_MFA_PROMPT -----------------------------------------------------------------------------------

def test_forced_unknown_driver_refused():
    with pytest.raises(MfaError) as info:
        choose_prompt(environ={"ROLECALL_MFA_PROMPT": "pinentry"}, which=finds(*EVERYTHING))
    message = one_line(info.value)
    assert "ROLECALL_MFA_PROMPT='pinentry'" in message
    assert all(driver in message for driver in DRIVERS)


@pytest.mark.parametrize("driver, environ, which", [
    ("zenity", {"DISPLAY": ":99"}, finds("kdialog", "ykman")),  # not installed
    ("kdialog", {}, finds(*EVERYTHING)),  # no display
    ("osascript", {"DISPLAY": ":99"}, finds(*EVERYTHING)),  # not macOS
    ("ykman", {}, finds("zenity")),
    ("terminal", {}, finds(*EVERYTHING)),  # no terminal
])
def test_forced_driver_unavailable_refused(driver, environ, which):
    assert sys.platform != "darwin"
    with pytest.raises(MfaError) as info:
        choose_prompt(environ={"ROLECALL_MFA_PROMPT": driver, **environ}, which=which)
    assert one_line(info.value) == f"ROLECALL_MFA_PROMPT={driver}: that prompt is not available here"


def test_forced_terminal_refused_when_terminal_false(terminal):
    with pytest.raises(MfaError, match="not available here"):
        choose_prompt(environ={"ROLECALL_MFA_PROMPT": "terminal"}, terminal=False)
    assert terminal == []


async def test_forced_driver_beats_the_terminal(terminal, runs):
    prompt = choose_prompt(environ={"ROLECALL_MFA_PROMPT": " kdialog ", "WAYLAND_DISPLAY": "wayland-0"},
                           which=finds(*EVERYTHING))
    await prompt(SERIAL)
    assert [(argv[0], what) for argv, what, _ in runs] == [("kdialog", "kdialog")]
    assert terminal == []


async def test_forced_terminal(terminal, runs):
    prompt = choose_prompt(environ={"ROLECALL_MFA_PROMPT": "terminal", "DISPLAY": ":99"}, which=finds(*EVERYTHING))
    assert await prompt(SERIAL) == "555555"
    assert terminal == [f"Enter MFA code for {SERIAL}: "] and runs == []


async def test_forced_ykman_runs_with_the_command_timeout(runs):
    prompt = choose_prompt(environ={"ROLECALL_MFA_PROMPT": "ykman"}, which=finds("ykman"), timeout=7)
    await prompt(SERIAL)
    assert runs == [(["ykman", "oath", "accounts", "code", "--single", SERIAL], "ykman", COMMAND_TIMEOUT)]


async def test_empty_forced_setting_is_ignored(terminal):
    prompt = choose_prompt(environ={"ROLECALL_MFA_PROMPT": "  "}, which=finds())
    assert await prompt(SERIAL) == "555555"


# ---- the terminal ------------------------------------------------------------------------------------------------

async def test_terminal_comes_before_the_dialogs(terminal, runs):
    prompt = choose_prompt(environ={"DISPLAY": ":99"}, which=finds(*EVERYTHING))
    assert await prompt(SERIAL) == "555555"
    assert terminal == [f"Enter MFA code for {SERIAL}: "] and runs == []


async def test_daemons_never_use_the_terminal(terminal, runs):
    prompt = choose_prompt(terminal=False, environ={"DISPLAY": ":99"}, which=finds(*EVERYTHING))
    await prompt(SERIAL)
    assert [what for _, what, _ in runs] == ["zenity"] and terminal == []
    with pytest.raises(MfaError, match="rolecall mfa login"):
        await choose_prompt(terminal=False, environ={}, which=finds())(SERIAL)
    assert terminal == []


@pytest.mark.parametrize("answer", ["12345", "abcdef", "555555 1", ""])
async def test_terminal_answer_must_be_six_digits(monkeypatch, answer):
    monkeypatch.setattr(mfa_prompt, "has_terminal", lambda: True)
    monkeypatch.setattr(mfa_prompt, "ask", lambda prompt, *, echo=True: answer)
    with pytest.raises(MfaError) as info:
        await choose_prompt(environ={}, which=finds())(SERIAL)
    assert one_line(info.value) == "the terminal gave something that is not a 6-digit MFA code"


@pytest.mark.parametrize("error", [NoTerminal(6, "no terminal"), EOFError("closed")])
async def test_terminal_gone_is_mfa_error(monkeypatch, error):
    monkeypatch.setattr(mfa_prompt, "has_terminal", lambda: True)

    def ask(prompt, *, echo=True):
        raise error

    monkeypatch.setattr(mfa_prompt, "ask", ask)
    with pytest.raises(MfaError, match="terminal closed"):
        await choose_prompt(environ={}, which=finds())(SERIAL)


async def test_terminal_nobody_answers_times_out(monkeypatch, autojump_clock):
    monkeypatch.setattr(mfa_prompt, "has_terminal", lambda: True)
    release = threading.Event()
    monkeypatch.setattr(mfa_prompt, "ask", lambda prompt, *, echo=True: release.wait(30) and "123456")
    try:
        start = trio.current_time()
        with pytest.raises(MfaError) as info:
            await choose_prompt(environ={}, which=finds(), timeout=42)(SERIAL)
        assert trio.current_time() - start == pytest.approx(42)
    finally:
        release.set()
    assert one_line(info.value) == "no MFA code typed within 42 s"


# ---- the dialogs, and nothing ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("environ, found, expected", [
    ({"DISPLAY": ":99"}, EVERYTHING, "zenity"),
    ({"WAYLAND_DISPLAY": "wayland-0"}, EVERYTHING, "zenity"),
    ({"DISPLAY": ":99"}, ("kdialog", "osascript", "ykman"), "kdialog"),
    ({"DISPLAY": ":99"}, ("osascript", "ykman"), None),  # osascript only on macOS; ykman only when asked for
    ({"DISPLAY": ""}, EVERYTHING, None),
    ({}, EVERYTHING, None),
])
async def test_first_dialog_available(runs, environ, found, expected):
    prompt = choose_prompt(environ=environ, which=finds(*found), timeout=9)
    if expected is None:
        with pytest.raises(MfaError, match="rolecall mfa login"):
            await prompt(SERIAL)
        assert runs == []
    else:
        await prompt(SERIAL)
        assert [(argv[0], what, timeout) for argv, what, timeout in runs] == [(expected, expected, 9)]


async def test_kdialog_and_osascript_text(runs, monkeypatch):
    await choose_prompt(environ={"DISPLAY": ":1"}, which=finds("kdialog"))(SERIAL)
    monkeypatch.setattr(mfa_prompt.sys, "platform", "darwin")
    await choose_prompt(environ={}, which=finds("osascript"))(SERIAL)  # macOS needs no DISPLAY
    (kdialog, _, timeout), (osascript, _, _) = runs
    assert kdialog == ["kdialog", "--title", "rolecall", "--inputbox", f"MFA code for {SERIAL}"]
    assert timeout == PROMPT_TIMEOUT
    # the text goes in as an argument, never spliced into the AppleScript source
    assert osascript[0] == "osascript" and osascript[-1] == f"MFA code for {SERIAL}"
    assert all(SERIAL not in part for part in osascript[1:-1])


@pytest.mark.parametrize("profile, hint", [(None, "rolecall mfa login --profile NAME"),
                                           ("dev", "rolecall mfa login --profile dev")])
async def test_nothing_to_ask_on(runs, profile, hint):
    prompt = choose_prompt(profile=profile, environ={"DISPLAY": ":99"}, which=finds())  # chosen without raising
    with pytest.raises(MfaError) as info:
        await prompt(SERIAL)
    message = one_line(info.value)
    assert f"`{hint}`" in message and SERIAL in message
    assert runs == []


async def test_zenity_for_real(bindir, monkeypatch, tmp_path):
    argv_file = fake_program(bindir, "zenity", "echo 123456")
    monkeypatch.setenv("DISPLAY", ":99")
    prompt = choose_prompt()  # os.environ, shutil.which: the fake on PATH
    assert await prompt(SERIAL) == "123456"
    assert argv_file.read_text().splitlines() == ["--entry", "--title", "rolecall", "--text",
                                                  f"MFA code for {SERIAL}"]


async def test_zenity_cancelled(bindir, monkeypatch):
    fake_program(bindir, "zenity", "echo 123456; exit 1")  # what it prints does not matter: Cancel
    monkeypatch.setenv("DISPLAY", ":99")
    with pytest.raises(MfaError) as info:
        await choose_prompt()(SERIAL)
    assert one_line(info.value) == "zenity failed (exit status 1); no MFA code"


@pytest.mark.parametrize("credential", [None, "Amazon Web Services:alice@123456789012"])
async def test_ykman_for_real(bindir, monkeypatch, credential):
    argv_file = fake_program(bindir, "ykman", "echo 246801")
    monkeypatch.setenv("ROLECALL_MFA_PROMPT", "ykman")
    if credential:
        monkeypatch.setenv("YKMAN_OATH_CREDENTIAL_NAME", credential)
    assert await choose_prompt()(SERIAL) == "246801"
    assert argv_file.read_text().splitlines() == ["oath", "accounts", "code", "--single", credential or SERIAL]


async def test_ykman_failing(bindir, monkeypatch):
    fake_program(bindir, "ykman", "echo 'ERROR: No YubiKey detected!' >&2; exit 2")
    monkeypatch.setenv("ROLECALL_MFA_PROMPT", "ykman")
    with pytest.raises(MfaError, match=r"^ykman failed \(exit status 2\); no MFA code$"):
        await choose_prompt()(SERIAL)


async def test_driver_found_but_not_runnable(bindir, monkeypatch):
    with pytest.raises(MfaError) as info:  # `which` says yes, but there is no such program on PATH
        await choose_prompt(environ={"ROLECALL_MFA_PROMPT": "ykman"}, which=finds("ykman"))(SERIAL)
    assert one_line(info.value).startswith("cannot run ykman: ")


# ---- agent.tty -----------------------------------------------------------------------------------------------------

def _python(code: str, **kwargs) -> subprocess.CompletedProcess:
    """``python -c code`` in a new session: no controlling terminal, whatever ran pytest."""
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=20,
                          start_new_session=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, **kwargs)


def test_ask_without_a_terminal_raises_at_once_and_never_reads_stdin():
    code = """
import time
from agent.tty import NoTerminal, ask, has_terminal
print("has_terminal", has_terminal())
start = time.monotonic()
try:
    answer = ask("Enter MFA code: ")
except NoTerminal as exc:
    print("NoTerminal", isinstance(exc, OSError), round(time.monotonic() - start, 3))
else:
    print("answered", answer)
"""
    done = _python(code, input="123456\n")  # stdin is the caller's, never read
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "has_terminal False"
    kind, is_oserror, elapsed = lines[1].split()
    assert (kind, is_oserror) == ("NoTerminal", "True")
    assert float(elapsed) < 0.5


def _ask_on_a_pty(echo: bool, answer: bytes) -> tuple[str, bytes]:
    """Run ``ask`` in a child whose controlling terminal is a fresh pty; type ``answer`` after the prompt.

    Returns what the child printed and everything the terminal showed (the prompt as ``<asked>``).
    """
    code = f"from agent.tty import ask, has_terminal\nprint(has_terminal(), repr(ask('Code: ', echo={echo!r})), flush=True)\n"
    done, shown = on_a_pty(code, {**os.environ, "PYTHONPATH": str(ROOT)}, [(b"Code: ", answer)])
    assert done.returncode == 0, done.stderr
    return done.stdout, shown


def test_ask_reads_the_controlling_terminal():
    out, shown = _ask_on_a_pty(True, b"  123456  \n")
    assert out == "True '123456'\n"
    assert shown.startswith(b"<asked>") and b"123456" in shown  # echoed as typed


def test_ask_without_echo_shows_nothing_typed():
    out, shown = _ask_on_a_pty(False, b"hunter2 passphrase\n")
    assert out == "True 'hunter2 passphrase'\n"
    assert shown.startswith(b"<asked>") and b"hunter2" not in shown

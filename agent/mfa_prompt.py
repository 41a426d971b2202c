"""The MFA prompt helper: where a 6-digit code comes from, as one async callable.

``MfaPrompt = async (serial) -> code``. The drivers, after aws-vault's
``prompt/`` registry:

- ``terminal``: ``Enter MFA code for SERIAL:`` on ``/dev/tty`` (``agent.tty``),
  which works while the caller captures stdout and stderr, as every SDK does
  with ``credential_process``;
- ``zenity``, ``kdialog``, ``osascript``: a desktop dialog;
- ``ykman``: ``ykman oath accounts code --single NAME`` (``NAME`` from
  ``YKMAN_OATH_CREDENTIAL_NAME``, else the serial), a code from a YubiKey;
- ``mfa_process``: the profile's command, run with ``/bin/sh -c`` as aws-vault
  runs it, printing a code;
- ``--token-code``: a code given on the command line, used once.

``choose_prompt`` picks one: a given code, else the profile's ``mfa_process``,
else the driver named by ``ROLECALL_MFA_PROMPT``, else the terminal when there
is one, else the first desktop dialog installed (with a display), else none:
``MfaError`` saying to run ``rolecall mfa login``. Daemons pass
``terminal=False`` (a prompt must never sit inside a metadata request,
security-and-ops.md S15). Every answer must be six digits; a driver that prints
anything else, fails or times out is an ``MfaError``; the code never reaches a
log line or a message.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable, Mapping

import trio

from agent.errors import MfaError
from agent.tty import NoTerminal, ask, has_terminal

__all__ = ["COMMAND_TIMEOUT", "DRIVERS", "MfaPrompt", "PROMPT_TIMEOUT", "choose_prompt", "command_prompt",
           "static_prompt"]

MfaPrompt = Callable[[str], Awaitable[str]]

PROMPT_TIMEOUT = 300.0  # seconds a person gets to answer
COMMAND_TIMEOUT = 60.0  # seconds for mfa_process or ykman (a YubiKey may wait for a touch)
GUI_DRIVERS = ("zenity", "kdialog", "osascript")
DRIVERS = ("terminal", *GUI_DRIVERS, "ykman")
_CODE = re.compile(r"[0-9]{6}")


def _checked(code: str, source: str) -> str:
    code = code.strip()
    if not _CODE.fullmatch(code):
        raise MfaError(f"{source} gave something that is not a 6-digit MFA code")
    return code


def static_prompt(code: str) -> MfaPrompt:
    """A code given on the command line; a second use is refused (codes are single-use)."""
    checked = _checked(code, "--token-code")
    used = False

    async def prompt(serial: str) -> str:
        nonlocal used
        if used:
            raise MfaError(f"the --token-code was used already; a second code is needed for {serial}")
        used = True
        return checked

    return prompt


async def _run(argv: list[str], what: str, timeout: float) -> str:
    """Run a driver: its stdout is the code; stderr passes through; stdin is not the caller's."""
    try:
        with trio.fail_after(timeout):
            done = await trio.run_process(argv, capture_stdout=True, stdin=subprocess.DEVNULL, check=False)
    except trio.TooSlowError:
        raise MfaError(f"{what} gave no MFA code within {timeout:g} s") from None
    except OSError as exc:
        raise MfaError(f"cannot run {what}: {exc.strerror or exc}") from None
    if done.returncode != 0:
        raise MfaError(f"{what} failed (exit status {done.returncode}); no MFA code")
    return _checked(done.stdout.decode("utf-8", "replace"), what)


def command_prompt(command: str, *, timeout: float = COMMAND_TIMEOUT) -> MfaPrompt:
    """``mfa_process``: ``/bin/sh -c COMMAND``, its stdout the code (stderr passes through)."""
    async def prompt(serial: str) -> str:
        return await _run(["/bin/sh", "-c", command], "mfa_process", timeout)

    return prompt


def _terminal(timeout: float) -> MfaPrompt:
    async def prompt(serial: str) -> str:
        try:
            with trio.fail_after(timeout):
                answer = await trio.to_thread.run_sync(ask, f"Enter MFA code for {serial}: ", abandon_on_cancel=True)
        except trio.TooSlowError:
            raise MfaError(f"no MFA code typed within {timeout:g} s") from None
        except (NoTerminal, EOFError):
            raise MfaError("the terminal closed before an MFA code was typed") from None
        return _checked(answer, "the terminal")

    return prompt


def _dialog(driver: str, timeout: float) -> MfaPrompt:
    async def prompt(serial: str) -> str:
        text = f"MFA code for {serial}"
        argv = {
            "zenity": ["zenity", "--entry", "--title", "rolecall", "--text", text],
            "kdialog": ["kdialog", "--title", "rolecall", "--inputbox", text],
            "osascript": ["osascript", "-e", 'on run argv', "-e", 'text returned of (display dialog (item 1 of argv) '
                          'default answer "" with title "rolecall")', "-e", "end run", text],
        }[driver]
        return await _run(argv, driver, timeout)

    return prompt


def _ykman(environ: Mapping[str, str], timeout: float) -> MfaPrompt:
    async def prompt(serial: str) -> str:
        name = environ.get("YKMAN_OATH_CREDENTIAL_NAME") or serial
        return await _run(["ykman", "oath", "accounts", "code", "--single", name], "ykman", timeout)

    return prompt


def _available(driver: str, environ: Mapping[str, str], which: Callable[[str], str | None]) -> bool:
    if driver == "terminal":
        return has_terminal()
    if driver == "osascript":
        return sys.platform == "darwin" and which("osascript") is not None
    if driver in ("zenity", "kdialog"):
        return bool(environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY")) and which(driver) is not None
    return which(driver) is not None


def choose_prompt(*, token_code: str | None = None, mfa_process: str | None = None, terminal: bool = True,
                  profile: str | None = None, environ: Mapping[str, str] | None = None,
                  which: Callable[[str], str | None] = shutil.which,
                  timeout: float = PROMPT_TIMEOUT) -> MfaPrompt:
    """The prompt to use, by the module's order of preference.

    Args:
        token_code: a code given on the command line.
        mfa_process: the profile's ``mfa_process``.
        terminal: whether the terminal may be used (False in daemons).
        profile: named in the hint when nothing can ask.
        environ: ``ROLECALL_MFA_PROMPT``, ``DISPLAY``...; default ``os.environ``.
        which: finds programs (tests inject it).
        timeout: seconds a person gets to answer a terminal or dialog prompt.

    Returns:
        The prompt. It is chosen now, but asks (and may raise ``MfaError``) only when called.

    Raises:
        MfaError: ``ROLECALL_MFA_PROMPT`` names an unknown or unavailable driver.
    """
    environ = os.environ if environ is None else environ
    if token_code is not None:
        return static_prompt(token_code)
    if mfa_process:
        return command_prompt(mfa_process)
    forced = environ.get("ROLECALL_MFA_PROMPT", "").strip()
    if forced:
        if forced not in DRIVERS:
            raise MfaError(f"ROLECALL_MFA_PROMPT={forced!r} is not one of {', '.join(DRIVERS)}")
        if not _available(forced, environ, which) or (forced == "terminal" and not terminal):
            raise MfaError(f"ROLECALL_MFA_PROMPT={forced}: that prompt is not available here")
        return _driver(forced, environ, timeout)
    if terminal and _available("terminal", environ, which):
        return _driver("terminal", environ, timeout)
    for driver in GUI_DRIVERS:
        if _available(driver, environ, which):
            return _driver(driver, environ, timeout)
    return _nothing(profile)


def _driver(name: str, environ: Mapping[str, str], timeout: float) -> MfaPrompt:
    if name == "terminal":
        return _terminal(timeout)
    if name == "ykman":
        return _ykman(environ, COMMAND_TIMEOUT)
    return _dialog(name, timeout)


def _nothing(profile: str | None) -> MfaPrompt:
    async def prompt(serial: str) -> str:
        login = f"rolecall mfa login --profile {profile}" if profile else "rolecall mfa login --profile NAME"
        raise MfaError(f"an MFA code for {serial} is needed and there is no terminal or dialog to ask on: "
                       f"run `{login}` in a terminal first")

    return prompt

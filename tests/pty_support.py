"""A child Python whose controlling terminal is a fresh pseudo-terminal, and a dialogue typed into it."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

__all__ = ["on_a_pty"]

ROOT = Path(__file__).resolve().parents[1]


def on_a_pty(code: str, env: dict[str, str], dialogue: list[tuple[bytes, bytes]]
             ) -> tuple[subprocess.CompletedProcess, bytes]:
    """Run ``python -c code`` with a fresh pty as its controlling terminal; answer each prompt as it shows.

    Each prompt seen is replaced by ``<asked>`` in what is returned, so a later
    look for the same text finds only a second asking. Skips where there are no
    pseudo-terminals.

    Returns:
        The finished child (text stdout/stderr) and everything the terminal showed.
    """
    try:
        master, slave = os.openpty()
    except OSError as exc:
        pytest.skip(f"no pseudo-terminals here: {exc}")
    prelude = f"import os; os.close(os.open({os.ttyname(slave)!r}, os.O_RDWR))\n"  # becomes the controlling tty
    child = subprocess.Popen([sys.executable, "-c", prelude + code], cwd=ROOT, env=env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    shown, deadline = b"", time.monotonic() + 15
    try:
        for prompt, answer in dialogue:
            while prompt not in shown:
                assert time.monotonic() < deadline, f"never asked {prompt!r}: {shown!r}"
                if select.select([master], [], [], 0.05)[0]:
                    shown += os.read(master, 1024)
            shown = shown.replace(prompt, b"<asked>", 1)
            os.write(master, answer)
        out, err = child.communicate(timeout=15)
        while select.select([master], [], [], 0.05)[0]:  # what the terminal showed after the answers
            shown += os.read(master, 1024)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        os.close(master)
        os.close(slave)  # held open until now: with no slave open, reading the master is EIO
    return subprocess.CompletedProcess(child.args, child.returncode, out, err), shown

"""``make bench``: run every benchmark in bench/ that declares itself, or those named.

A benchmark is a script ``bench/NAME.py`` that

- has a top-level line ``BENCHMARK = "one-line description"`` (found by reading
  the file, not importing it, so a benchmark's imports cost nothing here);
- runs on its own (``python bench/NAME.py [options]``), prints its figures, and
  exits 0 when it measured (whatever the figures) or skipped with a reason,
  non-zero on an error.

Usage::

    python bench/run.py                      # every declared benchmark, by name
    python bench/run.py http_layer imds      # only these, in this order
    python bench/run.py --list               # names and descriptions
    python bench/run.py http_layer -- --rounds 5   # arguments after -- go to each

Each runs in a child process with this interpreter from the repository root.
Exit status: 0 when every benchmark ran, 1 when any failed or a name is unknown.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
_DECLARATION = re.compile(r"""^BENCHMARK\s*=\s*(["'])(.+?)\1\s*$""", re.M)


def declared() -> dict[str, str]:
    """``{name: description}`` of the scripts in bench/ that declare themselves."""
    found = {}
    for path in sorted(HERE.glob("*.py")):
        if path.name == Path(__file__).name:
            continue
        match = _DECLARATION.search(path.read_text(encoding="utf-8", errors="replace"))
        if match:
            found[path.stem] = match.group(2)
    return found


def run(name: str, args: list[str]) -> int:
    print(f"== {name} ==", flush=True)
    started = time.monotonic()
    status = subprocess.call([sys.executable, str(HERE / f"{name}.py"), *args], cwd=HERE.parent)
    print(f"== {name}: {'ok' if status == 0 else f'FAILED (exit {status})'} in {time.monotonic() - started:.0f} s ==")
    return status


def main(argv: list[str]) -> int:
    if "--" in argv:
        at = argv.index("--")
        argv, passed = argv[:at], argv[at + 1 :]
    else:
        passed = []
    benchmarks = declared()
    if argv == ["--list"]:
        for name, description in benchmarks.items():
            print(f"{name:16} {description}")
        return 0
    unknown = [name for name in argv if not (HERE / f"{name}.py").is_file()]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; have: {', '.join(benchmarks)}", file=sys.stderr)
        return 1
    names = argv or list(benchmarks)
    failed = [name for name in names if run(name, passed) != 0]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

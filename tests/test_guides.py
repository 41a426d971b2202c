"""The guides cannot rot: every shell block of README.md and docs/*.md is run, or marked and checked.

A block is a fenced ``sh``, ``bash``, ``shell`` or ``console`` block. Each is one of:

- **Unmarked: run.** Each block of a document runs, in document order, with
  ``bash -euo pipefail`` and no terminal (its own session, stdin from /dev/null), and
  must exit 0. The blocks of one document share a working directory, which is also
  their HOME (files carry over from block to block; shell variables do not). The
  environment is a scrubbed shell (no ``AWS_*``, no proxies, no D-Bus or display) into
  which the export lines of a running ``rolecall up`` were pasted: one ``rolecall up``
  per module, on ports 0, whose data dir appears at the default place
  (``~/.local/share/rolecall/up``) and whose control socket is at
  ``$XDG_RUNTIME_DIR/rolecall/agent.sock``. ``rolecall`` on PATH is this repository's;
  ``aws`` and ``python3`` are the test interpreter's. The keyring is rolecall's
  encrypted file with its passphrase in the environment, as on a headless machine.
  In a ``console`` block, ``$ `` lines are commands (a trailing ``\\`` continues one on
  the next line) and the lines after a command are what it prints, stdout and stderr
  together: every shown line must appear, in that order, among the lines the command
  printed. ``<name>`` in a shown line stands for any text, the same text wherever the
  name recurs in the block; ``...`` stands for anything.
- **Marked: checked, not run.** An HTML comment on the line right before the fence,
  ``<!-- guide: WORD [WORD ...] -->``, says why CI cannot run it; the words are
  ``MARKERS`` below. Every ``rolecall ...`` command in the block must parse
  (``cli.main.build_parser``: the subcommand and the flags are accepted), every
  ``make`` target must exist in the Makefile, and every other command must be a shell
  builtin, a function the block defines, on PATH, or in ``SYSTEM_TOOLS``.

Unmarked blocks get the same static checks, and, so that nothing a guide runs here
leaves loopback, may not name the link-local metadata addresses except as the
default of ``${AWS_EC2_METADATA_SERVICE_ENDPOINT:-...}`` (the test always sets it), call
an ``aws`` service other than STS and IAM (whose endpoints the exports set) without
``--endpoint-url``, give ``curl`` a literal URL off loopback, or install anything.

Documents whose runnable blocks need a file that a marked step would have made get
it from ``_PREPARED`` (host.md: the ``rolecall-admin.json`` that ``backend init``
prints, for the test's backend). Test names cited as ``tests/FILE.py::NAME`` in any
guide must exist.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path

import pytest

from cli.main import build_parser

REPO = Path(__file__).resolve().parent.parent
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

# Why a block cannot run on a CI machine. Keep this short, and in step with the module docstring.
MARKERS = {
    "systemd": "needs systemd as PID 1 (systemctl, journalctl, socket units)",
    "root": "changes the host as root (addresses on lo, users, files under /etc, /opt, packages)",
    "aws": "talks to AWS's own endpoints with real credentials",
    "tty": "waits for a person at a terminal (an MFA code, a passphrase)",
    "make": "runs a target of this repository's Makefile",
    "foreground": "runs until Ctrl-C (a server in the foreground)",
    "postgresql": "needs a PostgreSQL server (tests/interop/test_backend_postgres.py runs these against one)",
}
SHELL_LANGUAGES = {"sh", "bash", "shell", "console"}
# Commands a guide may name that a CI machine need not have (systemd hosts, admin tools).
SYSTEM_TOOLS = {
    "systemctl", "journalctl", "systemd-analyze", "systemd-sysusers", "systemd-run", "systemd-creds", "loginctl",
    "networkctl", "usermod", "useradd", "groupadd", "ip", "ss", "sudo", "curl", "jq", "openssl", "docker", "podman",
    "logrotate", "install", "node", "npm", "zenity", "kdialog", "ykman",
}
_BUILTINS = {
    ":", ".", "[", "alias", "bg", "cd", "command", "declare", "echo", "eval", "exec", "exit", "export", "false", "fg",
    "getopts", "hash", "jobs", "break", "continue", "kill", "let", "local", "mapfile", "printf", "pwd", "read", "readarray", "readonly",
    "return", "set", "shift", "source", "test", "trap", "true", "type", "ulimit", "umask", "unset", "wait",
}
_KEYWORDS_BEFORE_A_COMMAND = {"!", "{", "}", "then", "do", "else", "elif", "if", "while", "until", "time", "(", "))"}
_NOT_A_COMMAND = {"fi", "done", "esac", "for", "case", "in", "select", "function", ";;"}
_REDIRECTIONS = {">", ">>", "<", ">&", "<&", "&>", "&>>", "<<", "<<-", "<<<", ">|", "<>"}
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_HEREDOC = re.compile(r"(?<!<)<<-?\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1")
_MARKER = re.compile(r"\s*<!--\s*guide:\s*([a-z][a-z ]*?)\s*-->\s*")
_FENCE = re.compile(r"(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)[^`]*")
_PLACEHOLDER = re.compile(r"<([a-z][a-z0-9_-]*)>|\.\.\.")
_LINK_LOCAL = ("169.254.169.254", "169.254.170.23", "fd00:ec2::254")
_ENDPOINT_DEFAULT = re.compile(r"\$\{AWS_EC2_METADATA_SERVICE_ENDPOINT:-[^}]*\}")
_LOOPBACK_URL = re.compile(r"https?://(127\.0\.0\.1|localhost|\[::1\])[:/]")
_INSTALLERS = {"pip", "pip3", "apt-get", "apt", "npm", "wget", "git"}
_CITED_TEST = re.compile(r"tests/([\w/]+\.py)::(test_\w+)")
_SEPARATOR = "@@rolecall-guide-step-"
BLOCK_TIMEOUT = 60.0


# ---- the Markdown side -------------------------------------------------------------------------


@dataclass
class Block:
    """One fenced shell block: where it is, its language, its markers and its text."""

    path: Path
    line: int
    language: str
    markers: tuple[str, ...]
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"


def shell_blocks(path: Path) -> list[Block]:
    """The fenced shell blocks of a Markdown file, with the markers on the line before each."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        opening = _FENCE.fullmatch(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence, language = opening["indent"], opening["fence"], opening["info"].lower()
        body, j = [], i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j].lstrip())
            j += 1
        if language in SHELL_LANGUAGES:
            marker = _MARKER.fullmatch(lines[i - 1]) if i > 0 else None
            markers = tuple(marker.group(1).split()) if marker else ()
            blocks.append(Block(path, i + 1, language, markers, "\n".join(body) + "\n"))
        i = j + 1
    return blocks


# ---- the shell side: which commands a block runs ------------------------------------------------


def _strip_comment(line: str, quote: str | None = None) -> tuple[str, str | None]:
    """``line`` without a ``#`` comment (one that starts a word outside quotes), and the quote
    still open at its end; ``quote`` is the one open at its start (a string over several lines)."""
    previous = " "
    for index, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and (previous.isspace() or previous in ";&|("):
            return line[:index].rstrip(), None
        previous = char
    return line, quote


def _logical_lines(text: str) -> tuple[list[str], list[str]]:
    """The block's command lines (continuations and quoted newlines joined, comments gone) and
    its here-document bodies."""
    commands, bodies, pending, ending, quote = [], [], "", None, None
    for line in text.splitlines():
        if ending is not None:
            if line.strip() == ending:
                ending = None
            else:
                bodies.append(line)
            continue
        line, quote = _strip_comment(line, quote)
        if quote:
            pending += line + "\n"
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        heredoc = _HEREDOC.search(line)
        if heredoc:
            ending = heredoc.group(2)
        if line.strip():
            commands.append(line)
    return commands, bodies


def _substitutions(text: str) -> list[str]:
    """The insides of the ``$(...)`` command substitutions in ``text`` (outermost ones)."""
    found, start = [], text.find("$(")
    while start != -1:
        depth, index = 0, start + 1
        while index < len(text):
            depth += {"(": 1, ")": -1}.get(text[index], 0)
            if depth == 0:
                break
            index += 1
        found.append(text[start + 2:index])
        start = text.find("$(", index)
    return found


@dataclass
class Commands:
    """What a block runs: each simple command as its words, and the shell functions it defines."""

    run: list[list[str]] = field(default_factory=list)
    functions: set[str] = field(default_factory=set)


def _tokens(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.commenters = ""
    lexer.whitespace_split = True
    return list(lexer)


def _unwrap(words: list[str]) -> list[str]:
    """The command proper: keywords, assignments and wrappers (sudo, env, timeout...) taken off."""
    while words:
        if words[0] in _KEYWORDS_BEFORE_A_COMMAND:
            words = words[1:]
        elif words[0] in _NOT_A_COMMAND:
            return []
        elif _ASSIGNMENT.match(words[0]):
            words = words[1:]
        elif words[0] in ("sudo", "env", "nohup", "timeout", "exec"):
            wrapper, words = words[0], words[1:]
            while words and words[0].startswith("-"):
                takes_value = wrapper == "sudo" and words[0] in ("-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U")
                words = words[2:] if takes_value else words[1:]
            if wrapper == "timeout" and words:
                words = words[1:]
        elif words[0] == "command" and words[1:2] in (["-v"], ["-V"]):
            return []
        else:
            return words
    return []


def shell_commands(text: str) -> Commands:
    """Every simple command in a shell text, those in ``$(...)`` and in here-documents included.

    A static reading (shlex), not a shell: enough for what guides contain. Each
    command is its words after redirections, leading assignments and wrappers such
    as ``sudo`` are taken off. Each ``$(...)`` is read on its own and stands as one
    word (``S``) in the line around it.
    """
    found = Commands()
    lines, bodies = _logical_lines(text)
    for line in lines:
        for inner in _substitutions(line):
            _add(found, inner)
            line = line.replace(f"$({inner})", "S", 1)
        words: list[str] = []
        tokens = _tokens(line)
        index = 0
        while index <= len(tokens):
            token = tokens[index] if index < len(tokens) else ";"
            punctuation = bool(token) and all(c in "();<>|&" for c in token)
            if punctuation and token in _REDIRECTIONS:
                if words and words[-1].isdigit():
                    words.pop()  # the fd of 2> and 2>&1
                index += 2
                continue
            if punctuation:
                if len(words) == 1 and token in ("()", "(") and _NAME.fullmatch(words[0]):
                    found.functions.add(words[0])  # name() { ...
                    index += 2 if token == "(" else 1
                    words = []
                    continue
                command = _unwrap(words)
                if command:
                    found.run.append(command)
                words = []
            else:
                words.append(token)
            index += 1
    for body in bodies:
        for inner in _substitutions(body):
            _add(found, inner)
    return found


def _add(found: Commands, inner: str) -> None:
    """The commands of one ``$(...)``'s inside, into ``found``."""
    nested = shell_commands(inner)
    found.run += nested.run
    found.functions |= nested.functions


# ---- static checks ------------------------------------------------------------------------------


def _makefile_targets() -> set[str]:
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z0-9_./-]+)\s*:(?!=)", text, re.MULTILINE))


def _rolecall_problem(args: list[str]) -> str | None:
    """Why argparse refuses ``rolecall ARGS``, or None."""
    output = StringIO()
    try:
        with redirect_stderr(output), redirect_stdout(output):
            build_parser().parse_args(args)
    except SystemExit as exc:
        if exc.code not in (0, None):
            lines = output.getvalue().strip().splitlines()
            return f"`rolecall {shlex.join(args)}` does not parse: {lines[-1] if lines else exc.code}"
    return None


def _command_problems(words: list[str], functions: set[str], path: str, *, runnable: bool) -> list[str]:
    name = os.path.basename(words[0])
    args = words[1:]
    if "$" in words[0] or name in functions or name in _BUILTINS:
        return []
    if name == "rolecall":
        problem = _rolecall_problem(args)
        if problem:
            return [problem]
        if args[:1] == ["exec"] and "--" in args:  # the command rolecall exec runs
            inner = args[args.index("--") + 1:]
            return _command_problems(inner, functions, path, runnable=runnable) if inner else []
        return []
    if name == "make":
        missing = [t for t in args if not t.startswith("-") and "=" not in t and t not in _makefile_targets()]
        return [f"`make {' '.join(missing)}`: no such target in the Makefile"] if missing else []
    problems = []
    if shutil.which(name, path=path) is None and name not in SYSTEM_TOOLS:
        problems.append(f"`{name}` is not on PATH nor a known system tool (SYSTEM_TOOLS)")
    if runnable:
        problems += _off_loopback(name, args)
    return problems


def _off_loopback(name: str, args: list[str]) -> list[str]:
    """Why running this command in CI could leave loopback (or install something), if it could."""
    if name in _INSTALLERS:
        return [f"`{name}` installs or fetches: mark the block"]
    if name == "aws":
        service = next((a for a in args if not a.startswith("-")), "")
        if "$" not in service and service not in ("sts", "iam", "configure") and "--endpoint-url" not in args and "--version" not in args:
            return [f"`aws {service}` would call AWS itself (only sts and iam point at the test's backend)"]
    if name == "curl":
        urls = [a for a in args if re.match(r"https?://", a)]
        return [f"`curl {u}` is off loopback" for u in urls if not _LOOPBACK_URL.match(u)]
    return []


def static_problems(block: Block, path: str) -> list[str]:
    """What is wrong with a block without running it (see the module docstring)."""
    problems = [f"unknown marker {word!r} (known: {', '.join(MARKERS)})" for word in block.markers
                if word not in MARKERS]
    text = "\n".join(step for step, _ in console_steps(block.text)) if block.language == "console" else block.text
    syntax = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True, timeout=10)
    if syntax.returncode != 0:
        problems.append(f"bash -n: {syntax.stderr.strip()}")
    try:
        commands = shell_commands(text)
    except ValueError as exc:  # shlex: an unclosed quote
        return [*problems, f"cannot read the block's commands: {exc}"]
    runnable = not block.markers
    for words in commands.run:
        problems += _command_problems(words, commands.functions, path, runnable=runnable)
    if runnable:
        bare = _ENDPOINT_DEFAULT.sub("", text)  # the commands: a console block may show the address printed
        problems += [f"names {address} outside ${{AWS_EC2_METADATA_SERVICE_ENDPOINT:-...}}: mark the block"
                     for address in _LINK_LOCAL if address in bare]
    return problems


# ---- running ------------------------------------------------------------------------------------


def console_steps(text: str) -> list[tuple[str, list[str]]]:
    """A console block as (command, shown output lines) pairs."""
    steps: list[tuple[str, list[str]]] = []
    continuing = False
    for line in text.splitlines():
        if continuing:
            command, shown = steps[-1]
            steps[-1] = (command + "\n" + line, shown)
            continuing = line.endswith("\\")
        elif line.startswith("$ "):
            steps.append((line[2:], []))
            continuing = line.endswith("\\")
        elif steps and line.strip():
            steps[-1][1].append(line.rstrip())
    return steps


def _console_script(steps: list[tuple[str, list[str]]]) -> str:
    # the newline ends what the previous command left unended (an IMDS role name has no newline)
    parts = [f"printf '\\n%s\\n' '{_SEPARATOR}{index}'\n{{ {command}\n}} 2>&1" for index, (command, _) in
             enumerate(steps)]
    return "\n".join(parts) + "\n"


def _line_pattern(shown: str, bound: dict[str, str]) -> tuple[re.Pattern[str], dict[str, str]]:
    """A shown line as a regex (``<name>`` any text, or what it matched before; ``...`` anything),
    and the regex group of each name it binds."""
    pattern, position, fresh = "", 0, {}
    for match in _PLACEHOLDER.finditer(shown):
        pattern += re.escape(shown[position:match.start()])
        name = match.group(1)
        if name is None:
            pattern += ".*"
        elif name in bound:
            pattern += re.escape(bound[name])
        elif name in fresh:
            pattern += f"(?P={fresh[name]})"
        else:
            fresh[name] = f"p{len(fresh)}"
            pattern += f"(?P<{fresh[name]}>.+?)"
        position = match.end()
    pattern += re.escape(shown[position:])
    return re.compile(pattern), fresh


def output_problems(steps: list[tuple[str, list[str]]], output: str) -> list[str]:
    """Which shown lines did not appear, in order, in what each command printed."""
    printed: dict[int, list[str]] = {}
    current = None
    for line in output.splitlines():
        if line.startswith(_SEPARATOR):
            current = int(line[len(_SEPARATOR):])
            printed[current] = []
        elif current is not None:
            printed[current].append(line.rstrip())
    problems, bound = [], {}
    for index, (command, shown) in enumerate(steps):
        lines, position = printed.get(index, []), 0
        for expected in shown:
            pattern, groups = _line_pattern(expected, bound)
            while position < len(lines) and not (match := pattern.fullmatch(lines[position])):
                position += 1
            if position == len(lines):
                problems.append(f"`$ {command}` did not print (in order) {expected!r}; it printed:\n"
                                + "\n".join(lines[:40]))
                break
            bound.update({name: match.group(group) for name, group in groups.items()})
            position += 1
    return problems


def run_block(block: Block, env: dict[str, str], cwd: Path) -> list[str]:
    """Run an unmarked block; its problems (exit status, shown output), if any."""
    steps = console_steps(block.text) if block.language == "console" else []
    script = _console_script(steps) if block.language == "console" else block.text
    with tempfile.TemporaryFile(mode="w+") as output:
        process = subprocess.Popen(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env,
                                   stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # no controlling terminal: nothing can prompt
        try:
            status = process.wait(timeout=BLOCK_TIMEOUT)
        except subprocess.TimeoutExpired:
            status = None
        finally:
            try:
                os.killpg(process.pid, signal.SIGKILL)  # what the block left running in the background
            except ProcessLookupError:
                pass
            process.wait()
        output.seek(0)
        printed = output.read()
    if status != 0:
        why = f"timed out after {BLOCK_TIMEOUT:.0f} s" if status is None else f"exited {status}"
        tail = "\n".join(printed.splitlines()[-30:])
        return [f"{why}; the last lines it printed:\n{tail}"]
    return output_problems(steps, printed) if steps else []


def check_document(path: Path, env: dict[str, str], cwd: Path) -> list[str]:
    """Every problem of every shell block of a document: static ones, then those of running it."""
    problems = []
    for block in shell_blocks(path):
        found = static_problems(block, env["PATH"])
        if not found and not block.markers:
            found = run_block(block, env, cwd)
        problems += [f"{block.where} ({block.language} block{', ' + ' '.join(block.markers) if block.markers else ''})"
                     f": {problem}" for problem in found]
    return problems


# ---- the environment of the runs ----------------------------------------------------------------


_DROPPED = ("AWS_", "XDG_", "ROLECALL_", "PYTHON", "DBUS_", "DISPLAY", "WAYLAND_", "SSH_AUTH", "NOTIFY_SOCKET",
            "LISTEN_", "CREDENTIALS_DIRECTORY")


def _bin_dir(root: Path) -> Path:
    """A directory holding a ``rolecall`` that runs this repository's code with this interpreter."""
    bin_dir = root / "bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "rolecall"
    script.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -c "
                      "'import sys; from cli.main import main; sys.argv[0] = \"rolecall\"; sys.exit(main())' \"$@\"\n")
    script.chmod(0o755)
    return bin_dir


def base_env(home: Path, bin_dir: Path, runtime: Path) -> dict[str, str]:
    """A scrubbed shell's environment: this repository's rolecall first on PATH, HOME and the runtime dir given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED) and k.lower() not in (
        "http_proxy", "https_proxy", "all_proxy", "no_proxy")}
    path = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), env.get("PATH", "/usr/bin:/bin")])
    env.update(HOME=str(home), PATH=path, PYTHONPATH=str(REPO), XDG_RUNTIME_DIR=str(runtime),
               NO_PROXY="127.0.0.1,localhost,::1", LC_ALL="C.UTF-8",
               PYTHONUNBUFFERED="1",  # stdout and stderr of one command interleave as on a terminal
               AWS_EC2_METADATA_DISABLED="true")  # until an SDK is pointed at a loopback rolecall (document_env)
    return env


@dataclass
class Up:
    """The module's running ``rolecall up``: its exports, data dir, runtime dir and process."""

    exports: dict[str, str]
    data_dir: Path
    runtime: Path
    bin_dir: Path
    keyring_passphrase: str


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    root = tmp_path_factory.mktemp("guides")
    home, bin_dir = root / "up-home", _bin_dir(root)
    home.mkdir()
    runtime = Path(tempfile.mkdtemp(prefix="rcg"))  # short: the control socket's path is at most 107 bytes
    runtime.chmod(0o700)
    log = open(root / "up.log", "w")
    process = subprocess.Popen([str(bin_dir / "rolecall"), "up", "--imds-listen", "127.0.0.1:0", "--sts-listen",
                                "127.0.0.1:0"], env=base_env(home, bin_dir, runtime), cwd=home,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, start_new_session=True)
    try:
        exports = _read_exports(process, root / "up.log")
        yield Up(exports, home / ".local/share/rolecall/up", runtime, bin_dir, secrets.token_urlsafe(16))
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(runtime, ignore_errors=True)


def _read_exports(process: subprocess.Popen, log: Path) -> dict[str, str]:
    """The five export lines rolecall up prints once ready (it prints nothing else on stdout)."""
    data, deadline = b"", time.monotonic() + 30
    while data.count(b"\n") < 5:
        ready, _, _ = select.select([process.stdout], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(process.stdout.fileno(), 4096) if ready else b""
        if not chunk:
            process.kill()
            raise AssertionError("rolecall up printed no exports:\n" + log.read_text())
        data += chunk
    lines = data.decode().splitlines()[:5]
    return dict(line.removeprefix("export ").split("=", 1) for line in lines)


def document_env(up: Up, home: Path) -> dict[str, str]:
    """The environment of a document's blocks: a shell with up's exports pasted in, HOME of its own."""
    link = home / ".local/share/rolecall/up"
    if not link.exists():   # README.md runs in up's own HOME, where it is the real data dir
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(up.data_dir)  # where the guides find `rolecall up`'s demo account
    (home / ".venv").symlink_to(Path(sys.prefix))  # README's .venv/bin/... (this interpreter's environment)
    env = base_env(home, up.bin_dir, up.runtime)
    del env["AWS_EC2_METADATA_DISABLED"]  # the exports point the SDKs at up's metadata server
    env.update(up.exports)
    env.update(PYTHON_KEYRING_BACKEND="agent.keyring_file.EncryptedFileKeyring",
               ROLECALL_KEYRING_PASSPHRASE=up.keyring_passphrase)
    return env


def _prepare_host(up: Up, home: Path) -> None:
    """host.md: what `backend init` printed (the runnable IAM steps read it), for up's backend."""
    admin = json.loads((up.data_dir / "admin.json").read_text())
    account = json.loads((up.data_dir / "demo.json").read_text())["account_id"]
    path = home / "rolecall-admin.json"
    path.write_text(json.dumps({"AccountId": account, "UserName": "admin",
                                "Arn": f"arn:aws:iam::{account}:user/admin",
                                "AccessKeyId": admin["access_key_id"],
                                "SecretAccessKey": admin["secret_access_key"]}))
    path.chmod(0o600)


_PREPARED = {"host.md": _prepare_host}


# ---- the guides ---------------------------------------------------------------------------------


@pytest.mark.parametrize("document", DOCUMENTS, ids=[str(p.relative_to(REPO)) for p in DOCUMENTS])
def test_every_shell_block_runs_or_is_marked_and_parses(document, up, tmp_path):
    if document.name == "README.md":
        # The README walks through `rolecall up` itself: its shell, HOME and real data dir
        # (`rolecall doctor` rightly refuses a data dir that is a symlink).
        home = up.data_dir.parents[3]
    else:
        home = tmp_path / "home"
        home.mkdir()
    if document.name in _PREPARED:
        _PREPARED[document.name](up, home)
    problems = check_document(document, document_env(up, home), home)
    assert not problems, "\n\n".join(problems)


def test_the_guides_exist_and_the_readme_lists_them():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    guides = {"host.md", "laptop.md", "backend.md", "security.md", "troubleshooting.md", "architecture.md"}
    assert guides <= {p.name for p in DOCUMENTS}
    assert all(f"(docs/{name})" in readme for name in guides)
    assert "## PostgreSQL" in (REPO / "docs" / "backend.md").read_text(encoding="utf-8")


def test_every_test_a_guide_cites_exists():
    cited = {(file, name) for path in DOCUMENTS for file, name in _CITED_TEST.findall(path.read_text())}
    assert cited, "security.md names the tests that show each defence"
    missing = [f"tests/{file}::{name}" for file, name in sorted(cited) if not (REPO / "tests" / file).is_file()
               or not re.search(rf"^(async )?def {name}\(", (REPO / "tests" / file).read_text(), re.MULTILINE)]
    assert not missing, f"cited but not found: {missing}"


# ---- the checker itself can fail ----------------------------------------------------------------


def _check(tmp_path: Path, markdown: str) -> list[str]:
    doc = tmp_path / "guide.md"
    doc.write_text(markdown)
    runtime = tmp_path / "run"
    runtime.mkdir(exist_ok=True)
    env = base_env(tmp_path, _bin_dir(tmp_path), runtime)
    return check_document(doc, env, tmp_path)


def test_a_block_that_fails_fails(tmp_path):
    assert _check(tmp_path, "```sh\ntrue\n```\n") == []
    problems = _check(tmp_path, "```sh\nls /no/such/dir\n```\n")
    assert len(problems) == 1 and "guide.md:1 (sh block): exited 2" in problems[0]


def test_blocks_share_files_not_variables(tmp_path):
    assert _check(tmp_path, "```sh\nX=1\necho hi > f\n```\n\n```bash\ntest -f f\n```\n") == []
    assert _check(tmp_path, "```sh\nX=1\n```\n\n```bash\necho \"$X\"\n```\n")  # -u: X is unset there


def test_shown_output_must_match_in_order_with_placeholders(tmp_path):
    good = "```console\n$ printf 'a 1\\nb\\nc 1\\n'\na <n>\nc <n>\n$ echo done; echo x\n...\n```\n"
    assert _check(tmp_path, good) == []
    for shown in ("c <n>\na <n>", "a <n>\nb 2", "a 2"):
        problems = _check(tmp_path, f"```console\n$ printf 'a 1\\nb\\nc 1\\n'\n{shown}\n```\n")
        assert len(problems) == 1 and "did not print" in problems[0], shown
    same_name = "```console\n$ printf 'a 1\\nb 2\\n'\na <n>\nb <n>\n```\n"
    assert _check(tmp_path, same_name)
    assert _check(tmp_path, "```console\n$ printf a\na\n$ echo b\nb\n```\n") == []  # output without a newline


def test_marked_blocks_are_parsed_not_run(tmp_path):
    assert _check(tmp_path, "<!-- guide: root systemd -->\n```sh\nsudo systemctl stop x && false\n"
                            "sudo rolecall systemd install --dest /tmp/u\n```\n") == []
    problems = _check(tmp_path, "<!-- guide: root -->\n```sh\nrolecall agent status --no-such-flag\n"
                                "no-such-tool --x\nrolecall nosuchcommand\nmake no-such-target\n```\n")
    assert len(problems) == 4, problems
    assert "unrecognized arguments: --no-such-flag" in problems[0] and "`no-such-tool`" in problems[1]
    assert "invalid choice: 'nosuchcommand'" in problems[2] and "no such target" in problems[3]
    assert "unknown marker 'ci'" in _check(tmp_path, "<!-- guide: ci -->\n```sh\ntrue\n```\n")[0]


def test_commands_are_found_where_a_shell_would_run_them():
    found = shell_commands(
        'demo() { python3 -c "x" "$@"; }\n'
        'X=$(curl -sf "$U" | jq .a) 2>/dev/null && sudo -u rolecall rolecall agent status  # comment\n'
        'cat > f <<EOF\nkey = $(demo a)\nEOF\n'
        'if ! grep -q x f; then echo "$(date)"; fi\n'
        'for i in 1 2; do\n  env A=1 timeout 5 rolecall up \\\n    --data-dir d &\ndone\n')
    names = sorted(words[0] for words in found.run)
    assert found.functions == {"demo"}
    assert names == ["cat", "curl", "date", "demo", "echo", "grep", "jq", "python3", "rolecall", "rolecall"], names
    assert ["rolecall", "agent", "status"] in found.run and ["rolecall", "up", "--data-dir", "d"] in found.run


def test_runnable_blocks_stay_on_loopback(tmp_path):
    for text in ("curl -s http://169.254.169.254/latest/meta-data/", "aws s3 ls", "curl https://example.com/",
                 "pip install x"):
        problems = _check(tmp_path, f"```sh\n{text}\n```\n")
        assert problems and ("mark" in problems[0] or "off loopback" in problems[0]
                             or "would call AWS" in problems[0]), (text, problems)
    allowed = ('echo "${AWS_EC2_METADATA_SERVICE_ENDPOINT:-http://169.254.169.254/}"\n'
               'true || aws --endpoint-url http://127.0.0.1:9 s3 ls\n')
    assert not [p for p in _check(tmp_path, f"```sh\n{allowed}\n```\n") if "loopback" in p or "mark" in p]

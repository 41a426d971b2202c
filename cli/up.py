"""`rolecall up`: backend + agent + metadata server in one foreground process on loopback.

    rolecall up [--data-dir D] [--imds-listen H:P] [--sts-listen H:P]

One trio run, one root nursery: the included backend serves STS/IAM on
``--sts-listen`` and the agent (``agent.daemon.run_agent``) talks to it over real
loopback HTTP, exactly as it would to any STS endpoint; the agent's metadata
server listens on ``--imds-listen``. The data directory (default
``$XDG_DATA_HOME/rolecall/up``, else ``~/.local/share/rolecall/up``) is created
on the first run — the backend's state under ``backend/``, the bootstrap
administrator in ``admin.json``, the demo account (``agent.demo``) in
``demo.json``, all 0600 — and reused after. ``demo.json`` is written only once
the demo account is complete; a run interrupted before that (Ctrl-C, a failed
call) is finished by the next one, whose seeding reuses what exists. Each run
writes ``agent.toml`` and ``agent-secret`` (0600) there for the embedded agent.

Once the agent holds its first credentials, stdout gets only ``export K=V``
lines (flushed), with the real ports when a port was 0 and every endpoint
ending with ``/``; logs go to stderr.
SIGINT/SIGTERM stop the agent gracefully, then the backend; exit 0.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from cli.backend import add_audit_options
from cli.errors import CliError
from cli.runtime import leaf_error, run

if TYPE_CHECKING:
    import trio

__all__ = ["default_data_dir", "export_lines", "register", "up_control_socket"]

log = logging.getLogger("rolecall.up")

REGION = "us-east-1"


def default_data_dir(environ=None) -> Path:
    """``$XDG_DATA_HOME/rolecall/up``, else ``~/.local/share/rolecall/up``."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "rolecall" / "up"


def export_lines(imds: str, sts_url: str) -> list[str]:
    """The ``export K=V`` lines ``rolecall up`` prints once ready.

    Every endpoint ends with ``/`` (design.md): older botocore, e.g. Debian 12's AWS
    CLI v2, joins ``AWS_EC2_METADATA_SERVICE_ENDPOINT`` and ``latest/api/token``
    without adding one.
    """
    sts = sts_url if sts_url.endswith("/") else sts_url + "/"
    values = {"AWS_EC2_METADATA_SERVICE_ENDPOINT": f"http://{imds}/", "AWS_ENDPOINT_URL_STS": sts,
              "AWS_ENDPOINT_URL_IAM": sts, "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION}
    return [f"export {name}={value}" for name, value in values.items()]


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``up`` to the root parser."""
    parser = commands.add_parser("up", help="the embedded default: backend + agent + metadata server on loopback")
    parser.add_argument("--data-dir", metavar="D", help="state directory (default $XDG_DATA_HOME/rolecall/up)")
    parser.add_argument("--imds-listen", default="127.0.0.1:8169", metavar="H:P",
                        help="metadata endpoint (default 127.0.0.1:8169; port 0 picks one)")
    parser.add_argument("--sts-listen", default="127.0.0.1:8900", metavar="H:P",
                        help="STS/IAM endpoint (default 127.0.0.1:8900; port 0 picks one)")
    add_audit_options(parser)
    parser.set_defaults(run=_up)


def _write_private(path: Path, text: str) -> None:
    from wire.private_files import write_private

    write_private(path, text.encode("utf-8"), durable=True)


def _open_backend(data_dir: Path):
    """The backend's store (created with its administrator on the first run) and the admin's keys."""
    from agent.demo import Keys
    from sts_backend.iam import bootstrap_admin
    from sts_backend.store import Store, StoreError

    backend_dir, admin_file = data_dir / "backend", data_dir / "admin.json"
    try:
        if not (backend_dir / "rolecall.db").exists() and not admin_file.exists():
            store = Store.create(backend_dir)
            _, key = bootstrap_admin(store)
            _write_private(admin_file, json.dumps({"access_key_id": key.access_key_id,
                                                   "secret_access_key": key.secret_access_key}))
            log.info("initialised %s (account %s)", data_dir, store.account_id())
        else:
            store = Store.open(backend_dir)
        admin = Keys(**json.loads(admin_file.read_text(encoding="utf-8")))
    except (StoreError, OSError, ValueError, TypeError) as exc:
        raise CliError(f"up: {data_dir} cannot be used ({exc}); remove it to start afresh") from None
    return store, admin


def _agent_config(data_dir: Path, account, sts_url: str, imds_listen: str):
    """Write the embedded agent's TOML (its secret in a 0600 file) and load it."""
    from agent.config import load_config

    _write_private(data_dir / "agent-secret", account.agent.secret_access_key)
    control = up_control_socket(data_dir)
    text = (f'[sts]\nendpoint_url = {json.dumps(sts_url)}\nregion = "{REGION}"\n\n'
            f'[source]\naccess_key_id = "{account.agent.access_key_id}"\nsecret_access_key_file = "agent-secret"\n\n'
            f'[role]\narn = "{account.role_arn}"\nsession_name = "rolecall-up"\n\n'
            f'[metadata]\nlisten = [{json.dumps(imds_listen)}]\n\n[agent]\ncontrol_socket = {json.dumps(control)}\n')
    _write_private(data_dir / "agent.toml", text)
    return load_config(str(data_dir / "agent.toml"), environ={})


def up_control_socket(data_dir: Path) -> str:
    """``$ROLECALL_AGENT_SOCKET``, else ``$XDG_RUNTIME_DIR/rolecall/agent.sock``, else in the data dir.

    Never ``/run/rolecall``: that is the system service's, even when ``up`` runs as root.
    """
    if os.environ.get("ROLECALL_AGENT_SOCKET"):
        return os.environ["ROLECALL_AGENT_SOCKET"]
    if os.environ.get("XDG_RUNTIME_DIR"):
        return os.path.join(os.environ["XDG_RUNTIME_DIR"], "rolecall", "agent.sock")
    return str(data_dir / "agent.sock")


async def _demo_account(data_dir: Path, sts_url: str, admin):
    """The demo account from ``demo.json``; created first when the file is missing.

    ``demo.json`` is written (atomically) only once seeding is complete, and
    seeding finishes what an interrupted earlier run began (``agent.demo``).
    """
    from agent.demo import DemoAccount, DemoError, seed_demo
    from wire.clock import SystemClock

    path = data_dir / "demo.json"
    if path.exists():
        try:
            return DemoAccount.load(path)
        except DemoError as exc:
            raise CliError(f"up: {exc}; remove it and run again to re-create the demo account") from None
    try:
        account = await seed_demo(sts_url, admin, SystemClock())
    except DemoError as exc:
        raise CliError(f"up: demo account in {data_dir} is incomplete ({exc}); run again, or remove "
                       f"{data_dir} to start afresh") from None
    account.save(path)
    log.info("demo account %s: role %s (served), user demo with MFA device %s, role %s (MFA only); "
             "keys and MFA seed in %s", account.account_id, account.role_arn, account.mfa_serial,
             account.admin_role_arn, path)
    return account


def _announce(agent, sts_url: str, scope: trio.CancelScope):
    async def announce() -> None:
        with scope:
            await agent.ready.wait()
            print("\n".join(export_lines(agent.metadata[0], sts_url)), flush=True)
            log.info("ready: paste the export lines (stdout) into another shell, then `aws sts get-caller-identity`")
    return announce


async def _start_backend(nursery: trio.Nursery, address: str, store, audit, stop: trio.Event) -> str:
    """The included backend on ``address`` in ``nursery``; its URL (the real port for :0)."""
    from sts_backend import server as backend_server
    from sts_backend.app import Backend
    from wire.clock import SystemClock

    try:
        urls = await nursery.start(lambda task_status: backend_server.serve(
            Backend(store, SystemClock(), audit), [address], stop=stop, task_status=task_status))
    except BaseException as exc:  # noqa: BLE001 - name the address in the one line
        if isinstance(leaf := leaf_error(exc), OSError):
            raise CliError(f"up: cannot listen on {address}: {leaf.strerror or leaf}") from None
        raise
    return urls[0]


async def _run(args: argparse.Namespace, data_dir: Path) -> None:
    """The root nursery: backend, demo account, agent; until SIGINT/SIGTERM."""
    import trio

    from agent.daemon import run_agent
    from sts_backend.audit import AuditLog
    from sts_backend.server import reopen_audit

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        store, admin = _open_backend(data_dir)
        audit = AuditLog(data_dir / "backend" / "audit.log", max_bytes=args.audit_max_bytes, keep=args.audit_keep)
        backend_stop, announcing = trio.Event(), trio.CancelScope()

        async def agent_then_backend(config, task_status=trio.TASK_STATUS_IGNORED) -> None:
            try:
                await run_agent(config, inherited=[], handle_signals=False, task_status=task_status)
            finally:
                announcing.cancel()
                backend_stop.set()  # the backend outlives the agent's last request

        try:
            async with trio.open_nursery() as nursery:
                sts_url = await _start_backend(nursery, args.sts_listen, store, audit, backend_stop)
                account = await _demo_account(data_dir, sts_url, admin)
                config = _agent_config(data_dir, account, sts_url, args.imds_listen)
                agent = await nursery.start(agent_then_backend, config)
                nursery.start_soon(_announce(agent, sts_url, announcing))
                async for signum in signals:
                    if signum == signal.SIGHUP:  # logrotate moved the audit log
                        await trio.to_thread.run_sync(reopen_audit, audit)  # may wait on the writer thread
                        continue
                    log.info("%s received: stopping", signal.Signals(signum).name)
                    break
                agent.stop()
        finally:
            audit.close()
            store.close()


def _check_loopback(option: str, address: str) -> None:
    from wire.listeners import is_loopback_host, parse_address

    try:
        host, _ = parse_address(address)
    except ValueError as exc:
        raise CliError(f"up: {option}: {exc}") from None
    if not is_loopback_host(host):
        raise CliError(f"up: {option} {address}: rolecall up serves on loopback only")


def _up(args: argparse.Namespace) -> int:
    from agent.demo import DemoError

    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    _check_loopback("--imds-listen", args.imds_listen)
    _check_loopback("--sts-listen", args.sts_listen)
    from wire.private_files import UnsafeDirectory, private_dir

    try:
        data_dir.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        private_dir(data_dir)
    except UnsafeDirectory as exc:
        raise CliError(f"up: --data-dir: {exc}") from None
    except OSError as exc:
        raise CliError(f"up: cannot create {data_dir}: {exc.strerror or exc}") from None
    run(_run, args, data_dir, what="up", also=(DemoError,))
    return 0

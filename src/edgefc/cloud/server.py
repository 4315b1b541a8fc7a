"""``edgefc cloud serve``: the data dir and admin token, migrations, the API and the replica's LISTEN loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from edgefc.cloud.app import create_app
from edgefc.cloud.db import database_url, make_engine
from edgefc.cloud.migrate import upgrade
from edgefc.cloud.service import CloudService
from edgefc.config.gateway import split_host_port

log = logging.getLogger("edgefc.cloud")

DEFAULT_LISTEN = "127.0.0.1:8800"
DB_THREADS = 8


@dataclass(frozen=True)
class CloudOptions:
    """What ``edgefc cloud serve`` was given."""

    data_dir: Path = Path("./.edgefc-cloud")
    db: str | None = None
    listen: str = DEFAULT_LISTEN
    tls_cert: Path | None = None
    tls_key: Path | None = None


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: serve() stops the server, then the rest, in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def admin_token(data_dir: Path) -> str:
    """The admin token in ``<data dir>/admin.token``, made (mode 0600) at first start."""
    path = data_dir / "admin.token"
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def _bind(listen: str) -> socket.socket:
    host, port = split_host_port(listen)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(4096)
    return sock


async def serve(options: CloudOptions) -> int:
    """Run one cloud replica until SIGINT/SIGTERM; returns an exit code (3: cannot listen or reach the database)."""
    data_dir = options.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    token = admin_token(data_dir)
    url = database_url(options.db, data_dir)
    engine = make_engine(url)
    try:
        await asyncio.to_thread(upgrade, engine)
    except Exception as exc:  # noqa: BLE001 — any failure to reach or migrate the database ends the start
        log.error("cannot prepare the database %s: %s", engine.url.render_as_string(hide_password=True), exc)
        return 3
    try:
        sock = _bind(options.listen)
    except (OSError, ValueError) as exc:
        log.error("cannot listen on %s: %s", options.listen, exc)
        return 3
    # Database work runs in threads: enough of them that a fleet's long polls and reports do not queue on
    # PostgreSQL.
    # SQLite takes one writer at a time: more threads would only fight over the GIL.
    threads = DB_THREADS if engine.dialect.name == "postgresql" else 2
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=threads, thread_name_prefix="db"))
    service = CloudService(engine)
    app = create_app(service, admin_token=token)
    tls = options.tls_cert is not None
    server = _Server(uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", loop="none", timeout_keep_alive=75,
        limit_concurrency=20000, backlog=4096, proxy_headers=False, timeout_graceful_shutdown=3,
        ssl_certfile=str(options.tls_cert) if tls else None, ssl_keyfile=str(options.tls_key) if tls else None,
    ))  # fmt: skip
    loop = asyncio.get_running_loop()

    def stop() -> None:
        server.should_exit = True
        service.notifier.close()  # long polls and event streams end now, not at their timeout

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    host, port = sock.getsockname()[:2]
    base = f"{'https' if tls else 'http'}://{host if ':' not in host else f'[{host}]'}:{port}"
    try:
        async with asyncio.TaskGroup() as group:
            listener = group.create_task(service.notifier.run(), name="cloud-listen")
            await service.notifier.listening.wait()
            serving = group.create_task(server.serve(sockets=[sock]), name="cloud-http")
            info = data_dir / "cloud.json"
            info.with_suffix(".tmp").write_text(json.dumps({"url": base, "pid": os.getpid()}))
            info.with_suffix(".tmp").rename(info)  # readers never see half a file
            print(f"edgefc cloud listening on {base} — data dir {data_dir}, database "
                  f"{engine.url.render_as_string(hide_password=True)}", file=sys.stderr, flush=True)  # fmt: skip
            await serving
            listener.cancel()
    finally:
        (data_dir / "cloud.json").unlink(missing_ok=True)
        sock.close()
        await asyncio.to_thread(engine.dispose)
    return 0


def run(options: CloudOptions) -> int:
    """Blocking entry point of ``edgefc cloud serve``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(serve(options))
    return uvloop.run(serve(options))

"""Running a gateway in the foreground: the Gateway and its HTTP API on one event loop until a signal."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from edgefc.api.app import create_server_app
from edgefc.config.gateway import GatewayConfig
from edgefc.errors import EdgefcError
from edgefc.gateway.core import Gateway
from edgefc.gateway.deploy import Limits, bundles_from_disk
from edgefc.gateway.http import protocol
from edgefc.sandbox.hostcheck import port_holder

log = logging.getLogger("edgefc.gateway")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the gateway stops the server, then itself, in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(listen: str) -> socket.socket:
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, int(port)))
    sock.listen(2048)
    sock.set_inheritable(False)  # no worker, broker or runc child may hold the API's listening socket
    return sock


async def serve(config: GatewayConfig, *, deploy: Path | None = None) -> int:
    """Start the gateway, serve the API, stop everything cleanly on SIGINT/SIGTERM; returns an exit code
    (1 when a part of the gateway failed for good: the task group's ``failed``)."""
    try:
        sock = _bind(config.listen)
    except OSError as exc:
        log.error(
            "cannot listen on %s: %s%s", config.listen, exc.strerror, port_holder(config.listen_address[1])
        )
        return 3
    with contextlib.closing(sock):
        try:
            async with Gateway.open(config) as gateway:
                return await _serve(gateway, sock, deploy)
        except EdgefcError as exc:  # a broken data dir (a truncated admin.token, say): say what, exit 2
            log.error("cannot start the gateway: %s", exc.message)
            print(f"edgefc gateway cannot start: {exc.message}", file=sys.stderr, flush=True)
            return 2


async def _serve(gateway: Gateway, sock: socket.socket, deploy: Path | None) -> int:
    host, port = sock.getsockname()[:2]
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
    app = create_server_app(gateway)
    server = _Server(
        uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", http=protocol(gateway.config.limits.connections_per_client), loop="none",
                       timeout_keep_alive=30, limit_concurrency=4096, proxy_headers=False,
                       # NO_COLOR (https://no-color.org) turns colour off; otherwise uvicorn decides (a terminal).
                       use_colors=False if os.environ.get("NO_COLOR") else None)
    )  # fmt: skip
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    info = gateway.data_dir / "gateway.json"
    tmp = info.with_suffix(".tmp")
    tmp.write_text(json.dumps({"url": url, "pid": os.getpid()}))
    tmp.rename(info)  # readers never see half a file
    log.info("gateway %s listening on %s (data dir %s)", gateway.gateway_id, url, gateway.data_dir)
    print(f"edgefc gateway listening on {url} — data dir {gateway.data_dir}", file=sys.stderr, flush=True)
    serving = gateway.tasks.spawn(server.serve(sockets=[sock]), "http")
    failed = gateway.tasks.spawn(gateway.tasks.failed.wait(), "watch-failures")
    try:
        if deploy is not None:
            await _deploy_at_start(gateway, deploy, url)
        await asyncio.wait({serving, failed}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        server.should_exit = True
        failed.cancel()
        await asyncio.gather(serving, failed, return_exceptions=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        info.unlink(missing_ok=True)
    died = serving.exception() if serving.done() and not serving.cancelled() else None
    error = gateway.tasks.error or died
    if error is not None:
        print(f"edgefc gateway stopping: {error!r}", file=sys.stderr, flush=True)
        return 1
    print("edgefc gateway stopped: every instance ended, nothing left running", file=sys.stderr, flush=True)
    return 0


async def _deploy_at_start(gateway: Gateway, manifest: Path, url: str) -> None:
    limits = Limits(gateway.config.limits.max_bundle_bytes, gateway.config.limits.max_bundle_files)
    try:
        text, uploads = await asyncio.to_thread(bundles_from_disk, manifest, limits)
        result = await gateway.deployments.deploy(text, uploads)
    except EdgefcError as exc:
        print(f"deploy of {manifest} failed: {exc.message}", file=sys.stderr, flush=True)
        return
    names = ", ".join(result["started"] + result["unchanged"]) or "nothing"
    print(f"deployed {manifest} (version {result['version']}): {names}", file=sys.stderr)
    names_all = result["started"] + result["unchanged"]
    first = "hello" if "hello" in names_all else (names_all or ["hello"])[0]
    print(
        f"try it in another terminal:\n  .venv/bin/edgefc invoke {first} --data '{{\"name\":\"edge\"}}'\n"
        f"  .venv/bin/edgefc ps\n(API {url}, token in {gateway.data_dir / 'admin.token'}; Ctrl-C stops everything)",
        file=sys.stderr, flush=True,
    )  # fmt: skip


def run(config: GatewayConfig, *, deploy: Path | None = None) -> int:
    """Blocking entry point used by ``edgefc gateway run``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        import uvloop

        return uvloop.run(serve(config, deploy=deploy))
    except ImportError:
        return asyncio.run(serve(config, deploy=deploy))

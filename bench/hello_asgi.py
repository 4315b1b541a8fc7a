"""The HTTP baseline: a raw ASGI hello-world under uvicorn (httptools, uvloop), as its own process.

``python bench/hello_asgi.py`` binds 127.0.0.1 on port 0, prints the port on stdout, and serves until killed.
It reads the request body and answers ``hello`` — the least an HTTP function endpoint can do, served by the
same server stack the gateway uses, so the ratio shows what the gateway's own path costs.
"""

from __future__ import annotations

import socket
from typing import Any

import uvicorn

BODY = b"hello"
HEADERS = [(b"content-type", b"application/octet-stream"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Read the whole body, answer 200 ``hello``."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def main() -> None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", http="httptools",
                            loop="uvloop")  # fmt: skip
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()

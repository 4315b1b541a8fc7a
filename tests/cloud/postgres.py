"""A throwaway PostgreSQL cluster for the tests: initdb and pg_ctl as the ``postgres`` user in a temp dir."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from tests.conftest import need, need_root


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresCluster:
    """``start()`` → a running cluster on 127.0.0.1 (trust auth, loopback only); ``stop()`` removes it."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="edgefc-pg-"))
        self.port = 0
        self.url = ""

    def start(self) -> PostgresCluster:
        need_root()
        initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
        need(initdb is not None and pg_ctl is not None, "PostgreSQL (Debian package postgresql)")
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            need(False, "the postgres user (Debian package postgresql)")
            raise
        os.chown(self.dir, user.pw_uid, user.pw_gid)
        data = self.dir / "data"
        self._as_postgres([str(initdb), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"])
        self.port = _free_port()
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._as_postgres([str(pg_ctl), "-D", str(data), "-o", options, "-l", str(self.dir / "pg.log"), "-w", "start"])
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        return self

    def stop(self) -> None:
        pg_ctl = _bin("pg_ctl")
        if self.port and pg_ctl:
            self._as_postgres([pg_ctl, "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop"], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def _as_postgres(self, args: list[str], check: bool = True) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=check, capture_output=True, timeout=60,
                       cwd=self.dir)  # fmt: skip

"""The gateway's secrets in its data dir: the admin token and the gateway id, created once, written atomically."""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

from edgefc.errors import ValidationError

MIN_TOKEN_CHARS = 32  # 128 bits of hex: anything shorter is a token someone typed, or a truncated file


def ensure_secret(path: Path, nbytes: int, *, min_chars: int = 0) -> str:
    """The secret in ``path``, created (mode 0600) when missing.

    The file is written to a temporary name, fsynced and renamed into place, so a crash never leaves an empty or
    half-written secret. Raises ValidationError naming the file when it holds fewer than ``min_chars`` characters.
    """
    if path.exists():
        value = path.read_text().strip()
        if len(value) < max(min_chars, 1):
            raise ValidationError([f"{path}: holds {len(value)} characters, at least {max(min_chars, 1)} are needed; "
                                   "delete the file to have a new secret made"])  # fmt: skip
        return value
    value = secrets.token_hex(nbytes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mkstemp: mode 0600, O_CLOEXEC
    try:
        with os.fdopen(fd, "w") as f:
            f.write(value + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)  # the rename itself is durable
    finally:
        os.close(dir_fd)
    return value

"""A function's ``requirements.txt`` installed into its bundle when it is packaged (as Link IoT Edge users zip
their dependencies next to their code).

pip does the work with its own cross-platform options: ``--only-binary=:all:`` with ``--platform any
--implementation py --abi none`` accepts only pure-Python wheels, which run on the gateway whatever its CPU
(arm64 or x86-64) — the machine running ``edgefc deploy`` is often not the gateway. A package that has only
compiled wheels or only a source archive is refused with pip's own reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from edgefc.errors import ValidationError
from edgefc.package import zip_directory

REQUIREMENTS_FILE = "requirements.txt"
PIP_TIMEOUT_S = 600.0
_MAX_VENDORED_BYTES = 1 << 30  # the bundle caps apply to the merged zip; this only bounds the temporary tree
_MAX_VENDORED_FILES = 200_000


def pip_command(requirements: Path, target: Path) -> list[str]:
    """The pip call that installs ``requirements`` as pure-Python wheels into ``target``."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return [sys.executable, "-m", "pip", "install", "--quiet", "--no-input", "--disable-pip-version-check",
            "--no-compile", "--target", str(target), "--only-binary=:all:", "--platform", "any",
            "--implementation", "py", "--abi", "none", "--python-version", version,
            "--requirement", str(requirements)]  # fmt: skip


def vendor_requirements(requirements: Path, *, label: str) -> bytes:
    """Install ``requirements`` into a fresh folder and return it zipped (console scripts left out).

    Raises ValidationError naming ``label`` and quoting pip when something cannot be installed as a pure-Python
    wheel (compiled code, source archives only, no such package or version, no index reachable).
    """
    with tempfile.TemporaryDirectory(prefix="edgefc-requirements-") as tmp:
        target = Path(tmp) / "site"
        try:
            done = subprocess.run(pip_command(requirements, target), capture_output=True, text=True,
                                  timeout=PIP_TIMEOUT_S, env={**os.environ, "PIP_NO_INPUT": "1"})  # fmt: skip
        except subprocess.TimeoutExpired:
            raise ValidationError([f"{label}: installing {REQUIREMENTS_FILE} took more than "
                                   f"{PIP_TIMEOUT_S:.0f} s; is the package index reachable?"]) from None
        if done.returncode != 0:
            raise ValidationError([f"{label}: cannot install {REQUIREMENTS_FILE} into the bundle: "
                                   f"{_pip_reason(done.stderr)}. Only pure-Python wheels (…-none-any.whl) can be "
                                   "bundled; a package with compiled code must be installed on the gateway's "
                                   "Python instead"])  # fmt: skip
        if not target.is_dir():
            target.mkdir()
        # Scripts carry this machine's interpreter path in their first line; nothing in a bundle can run them.
        shutil.rmtree(target / "bin", ignore_errors=True)
        return zip_directory(target, max_bytes=_MAX_VENDORED_BYTES, max_files=_MAX_VENDORED_FILES, label=label)


def _pip_reason(stderr: str) -> str:
    """pip's ERROR lines (what the user can act on), without its generic advice."""
    errors = [line.removeprefix("ERROR: ").strip() for line in stderr.splitlines() if line.startswith("ERROR:")]
    useful = [e for e in errors if not e.startswith(("No matching distribution", "[notice]"))] or errors
    if useful:
        text = "; ".join(useful)
    else:
        text = stderr.strip().splitlines()[-1] if stderr.strip() else "pip failed"
    return text if len(text) <= 600 else text[:597] + "..."

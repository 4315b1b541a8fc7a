"""A function's ``requirements.txt`` is installed into its bundle at deploy, pure-Python wheels only."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

from tests.cli.harness import gw_env, run, write_project
from tests.e2e.gateway_harness import GatewayProcess, fn

USES_IT = "import tinylib\n\ndef handler(event, context):\n    return tinylib.VALUE\n"


def make_wheel(folder: Path, name: str, version: str, tag: str, files: dict[str, str]) -> Path:
    """A minimal valid wheel (PEP 427) with ``files``: what a package index would serve."""
    dist_info = f"{name}-{version}.dist-info"
    contents = {
        **files,
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist_info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: {'true' if tag.endswith('any') else 'false'}\nTag: {tag}\n",
    }
    record = []
    for path, text in contents.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{dist_info}/RECORD,,")
    wheel = folder / f"{name}-{version}-{tag}.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in contents.items():
            archive.writestr(path, text)
        archive.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return wheel


def test_requirements_are_bundled_and_compiled_ones_refused(gateway: GatewayProcess, tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    make_wheel(wheels, "tinylib", "1.0", "py3-none-any", {"tinylib/__init__.py": "VALUE = 'tiny 1.0'\n"})
    make_wheel(wheels, "fastthing", "1.0", "cp311-cp311-manylinux_2_17_x86_64", {"fastthing/__init__.py": ""})
    # Only the wheels above, whatever the machine's pip configuration says.
    env = gw_env(gateway, tmp_path, PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheels), PIP_CONFIG_FILE="/dev/null")
    path = write_project(tmp_path / "p", {"functions": [fn("f")]}, {"f": USES_IT})
    (tmp_path / "p" / "f" / "requirements.txt").write_text("tinylib==1.0\n")
    done = run("deploy", str(path), env=env)
    assert done.returncode == 0, done.stderr
    assert gateway.invoke("f").content == b"tiny 1.0"
    assert not (tmp_path / "p" / "f" / "tinylib").exists()  # installed into the bundle, not the user's folder
    # Installing again gives the same bytes, so an unchanged function is not restarted on the next deploy.
    again = run("deploy", str(path), "--dry-run", env=env)
    assert again.returncode == 0 and b"no changes" in again.stdout, again

    (tmp_path / "p" / "f" / "requirements.txt").write_text("tinylib==1.0\nfastthing==1.0\n")
    refused = run("deploy", str(path), env=env)
    assert refused.returncode == 2, refused
    err = refused.stderr.decode()
    assert "functions[0] (f).code: cannot install requirements.txt into the bundle" in err, err
    assert "fastthing" in err and "pure-Python wheels" in err, err

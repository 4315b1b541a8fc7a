"""The container cold-start baseline: a bare ``runc run`` of a minimal bundle running ``python -c pass``.

The bundle is the one edgefc itself writes (:func:`edgefc.sandbox.bundle.write_bundle`: a rootfs of read-only
bind mounts of the host's runtime, DESIGN §8), with host networking and ``python -I -c pass`` as the process,
so the difference to a gateway cold start is what the gateway adds: the network namespace and CNI, the worker's
imports and handshake, and the supervisor's bookkeeping.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgefc.sandbox.base import ContainerSpec, InstanceSpec
from edgefc.sandbox.bundle import write_bundle
from edgefc.sandbox.runc import RuncSandbox, find_runc


def available() -> tuple[bool, str]:
    """Whether runc containers can run here, with the reason when not."""
    return RuncSandbox.available()


def time_runc_runs(runs: int) -> list[float]:
    """Start-to-exit milliseconds of ``runs`` fresh containers; raises RuntimeError when runc fails."""
    runc = find_runc() or "runc"
    with tempfile.TemporaryDirectory(prefix="edgefc-bench-runc-") as tmp:
        root = Path(tmp)
        (root / "code").mkdir()
        (root / "worker.sock").touch()
        (root / "state").mkdir(mode=0o700)
        times: list[float] = []
        for _ in range(runs):
            cid = f"efc-bench-{secrets.token_hex(4)}"
            spec = InstanceSpec(instance_id=cid, function="bench", code_dir=root / "code", env={}, memory_mb=128,
                                socket_path=root / "worker.sock", key="-",
                                container=ContainerSpec(host_network=True))  # fmt: skip
            bundle = write_bundle(root / cid, spec, cgroups_path=f"/{cid}", netns_path=None,
                                  argv=[os.path.realpath(sys.executable), "-I", "-c", "pass"])  # fmt: skip
            t0 = time.perf_counter()
            done = subprocess.run([runc, "--root", str(root / "state"), "run", "--bundle", str(bundle), cid],
                                  stdin=subprocess.DEVNULL, capture_output=True, timeout=30)  # fmt: skip
            times.append((time.perf_counter() - t0) * 1000)
            if done.returncode != 0:
                raise RuntimeError(
                    f"runc run failed ({done.returncode}): {done.stderr.decode(errors='replace')}"
                )
        return times

"""Deploy-time host checks of the ``container`` section, and the parsing of its entries."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from edgefc.errors import ValidationError
from edgefc.sandbox.base import ContainerSpec
from edgefc.sandbox.bundle import DeviceMapping, PortMapping, VolumeMapping, python_runtime_dirs
from edgefc.sandbox.hostcheck import check_container_spec, host_ports


def check(spec: ContainerSpec, data_dir: Path) -> list[str]:
    return check_container_spec(spec, path="functions[0].container", data_dir=data_dir)


def test_parsing() -> None:
    assert PortMapping.parse("8080:80") == PortMapping(8080, 80, "tcp")
    assert PortMapping.parse("53:5353/udp") == PortMapping(53, 5353, "udp")
    assert DeviceMapping.parse("/dev/ttyUSB0") == DeviceMapping("/dev/ttyUSB0", "/dev/ttyUSB0", "rwm")
    assert DeviceMapping.parse("/dev/ttyUSB0:/dev/ttyS0:r") == DeviceMapping(
        "/dev/ttyUSB0", "/dev/ttyS0", "r"
    )
    assert VolumeMapping.parse("/a:/b") == VolumeMapping("/a", "/b", False)
    assert VolumeMapping.parse("/a:/b:ro").read_only
    for bad in ("80", "x:80", "8080:80/sctp", "0:80", "70000:80"):
        with pytest.raises(ValidationError):
            PortMapping.parse(bad)
    for bad in ("dev/x", "/dev/x:/dev/y:rwx", "/dev/x:/dev/y:rr", "/a:b:c:d"):
        with pytest.raises(ValidationError):
            DeviceMapping.parse(bad)
    for bad in ("/a", "a:/b", "/a:b", "/a:/b:rx"):
        with pytest.raises(ValidationError):
            VolumeMapping.parse(bad)


def test_a_good_spec_passes(tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = ContainerSpec(
        ports=(f"{port}:80/tcp",), devices=("/dev/null:/dev/mydev:r",), volumes=(f"{vol}:/data:rw",)
    )
    assert check(spec, tmp_path / "data") == []
    assert host_ports(spec) == [(port, "tcp")]


def test_each_problem_is_named_by_its_path(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "inner").mkdir(parents=True)
    other = tmp_path / "other"
    other.mkdir()
    busy = socket.socket()
    busy.bind(("0.0.0.0", 0))
    busy.listen()
    taken = busy.getsockname()[1]
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        free = s.getsockname()[1]
    try:
        spec = ContainerSpec(
            ports=(f"{taken}:80", "9:9:9", f"{free}:1", f"{free}:2", f"{free}:1/udp"),
            devices=("/dev/does-not-exist", "/etc/passwd", "relative"),
            volumes=("/nope:/data", f"{data / 'inner'}:/x", f"{other}:/code/sub", f"{other}:/run", "rel:/y"),
        )
        problems = check(spec, data)
    finally:
        busy.close()
    p = "functions[0].container"
    expected = [
        f"{p}.ports[0]: host port {taken}/tcp is already in use",
        f"{p}.ports[1]: ",
        f"{p}.ports[3]: host port {free}/tcp is mapped twice",
        f"{p}.devices[0]: device /dev/does-not-exist does not exist",
        f"{p}.devices[1]: /etc/passwd is not a device node",
        f"{p}.devices[2]: ",
        f"{p}.volumes[0]: source /nope does not exist",
        f"{p}.volumes[1]: source {data / 'inner'} overlaps the gateway's data dir",
        f"{p}.volumes[2]: target /code/sub would cover /code",
        f"{p}.volumes[3]: target /run would cover /run/edgefc/worker.sock",
        f"{p}.volumes[4]: ",
    ]
    for start in expected:
        assert any(line.startswith(start) for line in problems), (start, problems)
    assert len(problems) == len(expected), problems


def test_limits_and_privileged_devices(tmp_path: Path) -> None:
    spec = ContainerSpec(
        privileged=True, devices=("/dev/null",), volumes=tuple(f"/tmp:/v{i}" for i in range(11))
    )
    problems = check(spec, tmp_path / "data")
    assert "functions[0].container.volumes: at most 10 entries, got 11" in problems
    assert any(p.startswith("functions[0].container.devices: not allowed with privileged") for p in problems)
    for reserved in ("/proc", "/sys/x", "/dev"):
        assert check(ContainerSpec(volumes=(f"/tmp:{reserved}",)), tmp_path / "data") != []


def test_low_host_port_needs_root(tmp_path: Path) -> None:
    problems = check(ContainerSpec(ports=("80:80",)), tmp_path / "data")
    if os.geteuid() != 0:
        assert problems == [
            "functions[0].container.ports[0]: host port 80 is below 1024 and the gateway does not run as root"
        ]
    else:
        assert all("below 1024" not in p for p in problems)


def test_runtime_dirs_cover_the_interpreter_and_edgefc() -> None:
    import sys

    import edgefc

    dirs = python_runtime_dirs()
    for needed in (os.path.realpath(sys.executable), os.path.realpath(edgefc.__file__)):
        assert any(needed.startswith(d + "/") or needed.startswith("/usr/") for d in dirs), (needed, dirs)
    # Outermost only: no listed folder is inside another.
    assert not any(a != b and a.startswith(b + "/") for a in dirs for b in dirs)

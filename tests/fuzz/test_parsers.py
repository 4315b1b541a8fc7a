"""Byte-level fuzzing of what outsiders feed the gateway: the manifest parser, the bundle reader, the worker
frame decoder and the SDK call checker. Each may refuse its input only with its own error type (a clean 4xx, a
closed connection), never with anything else (a 500, a dead reader task).

Bounded for ``make test`` (``EDGEFC_FUZZ_EXAMPLES``, default 100 per target, derandomised so CI is stable);
``make fuzz`` runs them long and random. Inputs start from valid seeds and are mutated byte-wise.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgefc.config.load import parse_manifest
from edgefc.errors import ValidationError
from edgefc.package import BundleStore, check_zip
from edgefc.worker.calls import parse_call
from edgefc.worker.protocol import ProtocolError, encode, take_frames

EXAMPLES = int(os.environ.get("EDGEFC_FUZZ_EXAMPLES", "100"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize="EDGEFC_FUZZ_EXAMPLES" not in os.environ,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
ROOT = Path(__file__).resolve().parents[2]

MANIFEST_SEEDS = [
    (ROOT / "examples" / "quickstart" / "deployment.yaml").read_bytes(),
    b"functions:\n- name: a\n  code: ./a\n  handler: index.handler\n  env: {A: b}\n  container: {ports: ['8080:80/tcp']}\n"
    b"routes:\n- {name: r, source: 'device:/pk/+', topic: '#', target: 'function:a', qos: 1}\n"
    b"devices:\n- {product_key: pk, device_name: d, driver: a, config: {x: [1, 2]}}\n",
    b"a: &x [1, 2]\nb: *x\nfunctions: []\n",
]


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


ZIP_SEEDS = [
    _zip({"index.py": b"def handler(e, c):\n    return e\n", "lib/util.py": b"X = 1\n" * 50}),
    _zip({"index.py": b"x" * 3000}),
]
FRAME_SEEDS = [
    encode({"t": "hello", "instance": "f-1", "key": "k" * 32, "pid": 7}),
    encode(
        {"t": "call", "cid": 1, "op": "invoke", "args": {"name": "g", "payload": b"x" * 40, "type": "sync"}}
    )
    + encode(
        {"t": "log", "time": 1.0, "level": "info", "stream": "stdout", "request_id": "", "message": "m"}
    ),
]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed with a few byte-level edits (overwrite, insert, delete, truncate), or plain random bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=4096))
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.integers(0, 3))
        at = draw(st.integers(0, len(data)))
        if kind == 0 and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif kind == 1:
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == 2:
            del data[at : at + draw(st.integers(1, 16))]
        else:
            del data[at:]
    return bytes(data)


@FUZZ
@given(mutated(MANIFEST_SEEDS))
def test_manifest_parser_refuses_only_with_validation_errors(text: bytes) -> None:
    try:
        parse_manifest(text, source="fuzz.yaml")
    except ValidationError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)


@FUZZ
@given(mutated(ZIP_SEEDS))
def test_bundle_reader_refuses_only_with_validation_errors(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    try:
        check_zip(data, max_bytes=1 << 20, max_files=100, label="fuzz")
    except ValidationError:
        return
    # What the check let through extracts cleanly, inside the store.
    store = BundleStore(tmp_path_factory.getbasetemp() / "fuzz-bundles")
    try:
        sha = store.put(data, label="fuzz", max_bytes=1 << 20, max_files=100)
        code = store.path(sha).resolve()
        assert all(p.resolve().is_relative_to(code) for p in code.rglob("*"))
    except ValidationError:
        pass
    finally:
        store.gc(set())


@FUZZ
@given(mutated(FRAME_SEEDS), st.integers(1, 64))
def test_frame_decoder_refuses_only_with_protocol_errors(data: bytes, step: int) -> None:
    buf = bytearray()
    try:
        for i in range(0, len(data), step):  # fed in pieces, as a socket delivers them
            buf += data[i : i + step]
            for frame in take_frames(buf):
                assert isinstance(frame, dict) and "t" in frame
    except ProtocolError:
        pass


@FUZZ
@given(st.binary(max_size=64))
def test_frame_header_caps_before_allocating(tail: bytes) -> None:
    buf = bytearray(struct.pack(">I", 0xFFFFFFF0) + tail)
    try:
        take_frames(buf)
        raise AssertionError("a 4 GiB frame header was accepted")
    except ProtocolError:
        pass


_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=30,
)


@FUZZ
@given(st.sampled_from(["invoke", "publish", "device.register", "device.report_properties", "device.report_event",
                        "device.tsl", "thing.get_properties", "thing.set_properties", "thing.call_service",
                        "thing.find", "device.list", "nope"]) | _values,
       st.dictionaries(st.sampled_from(["name", "payload", "type", "timeout", "topic", "qos", "product_key",
                                        "device_name", "properties", "params", "kind", "keys", "args", "tags", "x"]),
                       _values, max_size=6) | _values)  # fmt: skip
def test_sdk_calls_refuse_only_with_validation_errors(op: object, args: object) -> None:
    try:
        parsed_op, parsed = parse_call(op, args)
    except ValidationError as exc:
        assert exc.problems
        return
    assert parsed_op == op and isinstance(parsed, dict)
    msgpack.packb(parsed, use_bin_type=True)  # what passed is plain data

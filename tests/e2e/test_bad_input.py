"""Bad input through the HTTP API of a running gateway: the right status and error, the culprit named, nothing changed.

One gateway serves the whole table (small body and bundle caps, so oversized input is cheap to make); before
and after every case the deployed version, its apply status, the function list and every instance pid are
compared.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from edgefc.api.messages import MAX_BODY_BYTES as MESSAGE_CAP
from tests.e2e.gateway_harness import GatewayProcess, fn, zip_of

MAX_BODY = 4096
MAX_BUNDLE = 2048
MAX_FILES = 5
CONFIG = {"limits": {"max_body_bytes": MAX_BODY, "max_bundle_bytes": MAX_BUNDLE, "max_bundle_files": MAX_FILES}}

SOURCE = "def init(context):\n    pass\n\ndef handler(event, context):\n    return 'ok'\n"


def forged_zip() -> bytes:
    """A zip whose headers claim 10 bytes for an entry that inflates to 200 kB."""
    data = bytearray(zip_of({"index.py": SOURCE, "blob.bin": b"\0" * 200_000}))
    offset = 0
    while (offset := data.find(b"PK\x03\x04", offset)) != -1:  # local headers: uncompressed size at +22
        name_len = struct.unpack_from("<H", data, offset + 26)[0]
        if data[offset + 30 : offset + 30 + name_len] == b"blob.bin":
            struct.pack_into("<I", data, offset + 22, 10)
        offset += 4
    offset = 0
    while (offset := data.find(b"PK\x01\x02", offset)) != -1:  # central directory: uncompressed size at +24
        name_len = struct.unpack_from("<H", data, offset + 28)[0]
        if data[offset + 46 : offset + 46 + name_len] == b"blob.bin":
            struct.pack_into("<I", data, offset + 24, 10)
        offset += 4
    return bytes(data)


GOOD_ZIP = zip_of({"index.py": SOURCE})


def manifest(**changes: Any) -> dict[str, Any]:
    """A valid one-function manifest with ``changes`` to its function entry (None deletes a key)."""
    entry = {**fn("f"), **changes}
    return {"functions": [{k: v for k, v in entry.items() if v is not None}]}


@dataclass
class Case:
    id: str
    status: int
    type: str
    names: tuple[str, ...]  # what the message must mention: the field path, file or header at fault
    request: Callable[[GatewayProcess], dict[str, Any]] = field(repr=False)


def multipart(doc: dict[str, Any] | str, parts: dict[str, bytes] | None = None, *,
              manifest_part: bool = True, extra: list[tuple[str, Any]] | None = None) -> Callable[[GatewayProcess], dict[str, Any]]:  # fmt: skip
    """A PUT /v1/deployment as the CLI sends it; ``parts`` default to a good bundle for every function."""

    def build(gw: GatewayProcess) -> dict[str, Any]:
        text = doc if isinstance(doc, str) else yaml.safe_dump(doc)
        bundles = parts
        if bundles is None:
            names = [f["name"] for f in doc.get("functions", []) if isinstance(f, dict)] if isinstance(doc, dict) else []
            bundles = {n: GOOD_ZIP for n in dict.fromkeys(names)}
        files: list[tuple[str, Any]] = []
        if manifest_part:
            files.append(("manifest", ("deployment.yaml", text.encode(), "application/yaml")))
        files += [(n, (f"{n}.zip", data, "application/zip")) for n, data in bundles.items()]
        files += extra or []
        return {"method": "PUT", "url": "/v1/deployment", "files": files}

    return build


def folder_zip(files: dict[str, str | bytes] | bytes) -> Callable[[GatewayProcess], dict[str, Any]]:
    """A PUT /v1/deployment of the manifest's folder as application/zip."""

    def build(gw: GatewayProcess) -> dict[str, Any]:
        body = files if isinstance(files, bytes) else zip_of(files)
        return {"method": "PUT", "url": "/v1/deployment", "content": body, "headers": {"Content-Type": "application/zip"}}

    return build


def raw(method: str, url: str, **kwargs: Any) -> Callable[[GatewayProcess], dict[str, Any]]:
    return lambda gw: {"method": method, "url": url, **kwargs}


def chunks(size: int) -> Iterator[bytes]:
    for _ in range(size // 1024):
        yield b"x" * 1024


def chunked_multipart(gw: GatewayProcess) -> dict[str, Any]:
    """A multipart deploy over the cap in parts that are each under it, sent without a Content-Length."""
    parts = [(f"p{i}", (f"p{i}.zip", random.Random(i).randbytes(MAX_BODY // 2))) for i in range(4)]
    request = httpx.Request("PUT", "/v1/deployment", files=[("manifest", ("d.yaml", b"functions: []\n")), *parts])
    body = request.read()

    def pieces() -> Iterator[bytes]:
        for i in range(0, len(body), 1024):
            yield body[i : i + 1024]

    return {"method": "PUT", "url": "/v1/deployment", "content": pieces(),
            "headers": {"Content-Type": request.headers["Content-Type"]}}  # fmt: skip


ELEVEN_ENV = {f"VAR_{i}": str(i) for i in range(11)}
F0 = "functions[0]"

CASES = [
    # ---- the manifest ------------------------------------------------------------------------------------------
    Case("unknown top-level key", 422, "ValidationError", ("colour",), multipart({**manifest(), "colour": "blue"})),
    Case("unknown function key", 422, "ValidationError", (F0, "unknown key 'memroy_mb'"), multipart(manifest(memroy_mb=64))),
    Case("wrong type of a setting", 422, "ValidationError", (f"{F0}.memory_mb",), multipart(manifest(memory_mb="lots"))),
    Case("functions not a list", 422, "ValidationError", ("functions",), multipart({"functions": {"name": "f"}}, {})),
    Case("manifest not a mapping", 422, "ValidationError", ("deployment.yaml",), multipart("- just\n- a list\n", {})),
    Case("manifest not YAML", 422, "ValidationError", ("deployment.yaml:3", "invalid YAML"), multipart("functions: [\n  {name: f\n", {})),
    Case("bad function name", 422, "ValidationError", (f"{F0}.name", "Bad.Name"), multipart(manifest(name="Bad.Name"))),
    Case("duplicate names", 422, "ValidationError", ("functions[1].name", "duplicate"),
         multipart({"functions": [fn("f"), fn("f")]}, {"f": GOOD_ZIP})),
    Case("missing handler file", 422, "ValidationError", (f"{F0}.handler", "main.py"), multipart(manifest(handler="main.handler"))),
    Case("missing handler function", 422, "ValidationError", (f"{F0}.handler", "nothere"), multipart(manifest(handler="index.nothere"))),
    Case("missing initializer function", 422, "ValidationError", (f"{F0}.initializer", "setup"),
         multipart(manifest(initializer="index.setup"))),
    Case("handler without a module", 422, "ValidationError", (f"{F0}.handler",), multipart(manifest(handler="handler"))),
    Case("eleven env vars", 422, "ValidationError", (f"{F0}.env", "11"), multipart(manifest(env=ELEVEN_ENV))),
    Case("negative memory", 422, "ValidationError", (f"{F0}.memory_mb",), multipart(manifest(memory_mb=-64))),
    Case("absurd memory", 422, "ValidationError", (f"{F0}.memory_mb",), multipart(manifest(memory_mb=10**9))),
    Case("absurd timeout", 422, "ValidationError", (f"{F0}.timeout_s",), multipart(manifest(timeout_s=10**9))),
    Case("negative max_queue", 422, "ValidationError", (f"{F0}.max_queue",), multipart(manifest(max_queue=-1))),
    Case("zero instances", 422, "ValidationError", (f"{F0}.max_instances",), multipart(manifest(max_instances=0))),
    Case("invalid cron", 422, "ValidationError", (f"{F0}.schedule",), multipart(manifest(schedule="61 * * * *"))),
    Case("continuous with idle_timeout_s", 422, "ValidationError", (f"{F0}.idle_timeout_s",),
         multipart(manifest(mode="continuous", idle_timeout_s=30))),
    Case("route to an unknown function", 422, "ValidationError", ("routes[0].target", "ghost"),
         multipart({**manifest(), "routes": [{"name": "r", "source": "api", "topic": "#", "target": "function:ghost"}]})),
    Case("bad version", 422, "ValidationError", ("version",), multipart({**manifest(), "version": "no spaces allowed"})),
    # ---- bundles -----------------------------------------------------------------------------------------------
    Case("zip-slip bundle", 422, "ValidationError", ("functions[0] (f)", "../evil.py"),
         multipart(manifest(), {"f": zip_of({"index.py": SOURCE, "../evil.py": "x"})})),
    Case("absolute path in zip", 422, "ValidationError", ("functions[0] (f)", "/etc/evil.py", "absolute"),
         multipart(manifest(), {"f": zip_of({"index.py": SOURCE, "/etc/evil.py": "x"})})),
    Case("symlink entry", 422, "ValidationError", ("functions[0] (f)", "passwd.py", "link"),
         multipart(manifest(), {"f": zip_of({"index.py": SOURCE}, links={"passwd.py": "/etc/passwd"})})),
    Case("zip bomb over the cap", 422, "ValidationError", ("functions[0] (f)", "unpacks to"),
         multipart(manifest(), {"f": zip_of({"index.py": SOURCE, "zeros.bin": b"\0" * 200_000})})),
    Case("zip with forged sizes", 422, "ValidationError", ("functions[0] (f)",), multipart(manifest(), {"f": forged_zip()})),
    Case("too many files", 422, "ValidationError", ("functions[0] (f)", str(MAX_FILES)),
         multipart(manifest(), {"f": zip_of({"index.py": SOURCE, **{f"m{i}.py": "" for i in range(MAX_FILES)}})})),
    Case("corrupt zip", 422, "ValidationError", ("functions[0] (f)", "not a valid zip"),
         multipart(manifest(), {"f": b"PK\x03\x04 this is not really a zip"})),
    Case("truncated zip", 422, "ValidationError", ("functions[0] (f)",), multipart(manifest(), {"f": GOOD_ZIP[: len(GOOD_ZIP) // 2]})),
    Case("missing bundle part", 422, "ValidationError", (f"{F0}.code", "'f'"), multipart(manifest(), {})),
    Case("extra bundle part", 422, "ValidationError", ("upload", "'ghost'"), multipart(manifest(), {"f": GOOD_ZIP, "ghost": GOOD_ZIP})),
    Case("two parts for one function", 422, "ValidationError", ("upload", "'f'"),
         multipart(manifest(), {"f": GOOD_ZIP}, extra=[("f", ("again.zip", GOOD_ZIP, "application/zip"))])),
    Case("no manifest part", 422, "ValidationError", ("manifest",), multipart(manifest(), manifest_part=False)),
    # ---- the request itself ------------------------------------------------------------------------------------
    Case("wrong content type", 400, "BadRequest", ("Content-Type", "text/plain"),
         raw("PUT", "/v1/deployment", content=b"functions: []", headers={"Content-Type": "text/plain"})),
    Case("no content type", 400, "BadRequest", ("Content-Type",), raw("PUT", "/v1/deployment", content=b"functions: []")),
    Case("malformed multipart", 400, "BadRequest", ("multipart",),
         raw("PUT", "/v1/deployment", content=b"--xyz\r\nContent-Disposition: form-data\r\n\r\nno name\r\n--xyz--\r\n",
             headers={"Content-Type": "multipart/form-data; boundary=xyz"})),
    Case("multipart without boundary", 400, "BadRequest", ("multipart",),
         raw("PUT", "/v1/deployment", content=b"whatever", headers={"Content-Type": "multipart/form-data"})),
    Case("folder zip that is not a zip", 422, "ValidationError", ("upload", "not a valid zip"), folder_zip(b"not a zip at all")),
    Case("folder zip without a manifest", 422, "ValidationError", ("upload", "deployment.yaml"), folder_zip({"f/index.py": SOURCE})),
    Case("folder zip whose code is outside", 422, "ValidationError", (f"{F0}.code",),
         folder_zip({"deployment.yaml": yaml.safe_dump(manifest(code="../elsewhere")), "index.py": SOURCE})),
    Case("folder zip with zip-slip", 422, "ValidationError", ("upload", "../evil.py"),
         folder_zip({"deployment.yaml": yaml.safe_dump(manifest(code=".")), "index.py": SOURCE, "../evil.py": "x"})),
    Case("deploy body over the cap", 413, "PayloadTooLarge", (str(MAX_BODY),),
         multipart(manifest(), {"f": random.Random(0).randbytes(2 * MAX_BODY)})),
    Case("chunked multipart over the cap", 413, "PayloadTooLarge", (str(MAX_BODY),), chunked_multipart),
    # ---- the rest of the API -----------------------------------------------------------------------------------
    Case("invoke unknown function", 404, "NotFound", ("'nope'",), raw("POST", "/v1/functions/nope/invoke", content=b"x")),
    Case("status of unknown function", 404, "NotFound", ("'nope'",), raw("GET", "/v1/functions/nope")),
    Case("restart unknown function", 404, "NotFound", ("'nope'",), raw("POST", "/v1/functions/nope/restart")),
    Case("missing token", 401, "Unauthorized", ("missing", "token"),
         raw("GET", "/v1/functions", headers={"Authorization": ""})),
    Case("wrong token", 401, "Unauthorized", ("wrong", "token"),
         raw("PUT", "/v1/deployment", files=[("manifest", ("d.yaml", b"functions: []"))], headers={"Authorization": "Bearer nope"})),
    Case("token without Bearer", 401, "Unauthorized", ("token",), lambda gw: {"method": "GET", "url": "/v1/deployment",
                                                                             "headers": {"Authorization": gw.token}}),
    Case("oversized invoke body", 413, "PayloadTooLarge", (str(MAX_BODY),),
         raw("POST", "/v1/functions/base/invoke", content=b"x" * (MAX_BODY + 1))),
    Case("oversized chunked invoke body", 413, "PayloadTooLarge", (str(MAX_BODY),),
         lambda gw: {"method": "POST", "url": "/v1/functions/base/invoke", "content": chunks(4 * MAX_BODY)}),
    Case("oversized chunked message body", 413, "PayloadTooLarge", (str(MESSAGE_CAP),),
         lambda gw: {"method": "POST", "url": "/v1/messages", "content": chunks(2 * MESSAGE_CAP),
                     "headers": {"Content-Type": "application/json"}}),
    Case("bad invocation type", 400, "BadRequest", ("X-Edgefc-Invocation-Type", "later"),
         raw("POST", "/v1/functions/base/invoke", content=b"x", headers={"X-Edgefc-Invocation-Type": "later"})),
    Case("unknown invocation", 404, "NotFound", ("'0123abc'",), raw("GET", "/v1/invocations/0123abc")),
    Case("unknown path", 404, "NotFound", (), raw("GET", "/v1/nothing-here")),
    Case("wrong method", 405, "MethodNotAllowed", (), raw("DELETE", "/v1/deployment")),
]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(tmp_path_factory.mktemp("bad-input") / "data", config=CONFIG).start()
    src = "import os\ndef handler(event, context):\n    return str(os.getpid())\n"
    gateway.deploy({"version": "base-1", "functions": [fn("base"), fn("svc", mode="continuous")]}, {"base": src, "svc": src})
    assert gateway.invoke("base").status_code == 200
    yield gateway
    gateway.stop()


def state(gw: GatewayProcess) -> dict[str, Any]:
    """What no bad request may change."""
    assert gw.client is not None
    info = gw.client.get("/v1/deployment").json()
    functions = gw.client.get("/v1/functions").json()
    return {
        "version": info["version"], "status": info["status"], "previous": info["previous_version"],
        "functions": {f["name"]: (f["version"], sorted(i["pid"] for i in f["instances"])) for f in functions},
    }  # fmt: skip


def test_the_table_is_big_enough() -> None:
    assert len(CASES) >= 20
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_and_changes_nothing(gw: GatewayProcess, case: Case) -> None:
    before = state(gw)
    assert before["version"] == "base-1"
    assert gw.client is not None
    spec = case.request(gw)
    headers = {"Authorization": f"Bearer {gw.token}", **spec.pop("headers", {})}
    headers = {k: v for k, v in headers.items() if v}
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        response = client.request(spec.pop("method"), spec.pop("url"), headers=headers, **spec)
    assert response.status_code == case.status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["type"] == case.type, error
    for name in case.names:
        assert name in error["message"], f"{name!r} not named in: {error['message']}"
    assert state(gw) == before
    assert gw.invoke("base").status_code == 200  # and the gateway still serves


def test_every_problem_is_listed_at_once(gw: GatewayProcess) -> None:
    bad = {"functions": [{**fn("f"), "memory_mb": 1, "timeout_s": -1, "env": ELEVEN_ENV}, {**fn("Bad.Name"), "mode": "sometimes"}]}
    spec = multipart(bad, {"f": GOOD_ZIP})(gw)
    assert gw.client is not None
    before = state(gw)
    response = gw.client.request(spec.pop("method"), spec.pop("url"), **spec)
    assert response.status_code == 422
    details = response.json()["error"]["details"]
    for path in (f"{F0}.memory_mb", f"{F0}.timeout_s", f"{F0}.env", "functions[1].name", "functions[1].mode"):
        assert any(d.startswith(path) for d in details), (path, details)
    assert state(gw) == before


def test_the_cli_exits_2_for_bad_input_found_by_the_gateway(gw: GatewayProcess, tmp_path: Path) -> None:
    project = tmp_path / "p"
    (project / "f").mkdir(parents=True)
    (project / "f" / "index.py").write_text(SOURCE)
    # Valid locally; only the gateway knows its bundle cap is smaller than the CLI's default.
    (project / "f" / "big.txt").write_text("x" * (MAX_BUNDLE * 2))
    (project / "deployment.yaml").write_text(yaml.safe_dump(manifest()))
    before = state(gw)
    done = gw.cli("deploy", str(project / "deployment.yaml"), "--yes")  # --yes: it replaces what runs
    assert done.returncode == 2, done
    assert b"ValidationError" in done.stderr and b"functions[0] (f): unpacks to" in done.stderr
    assert state(gw) == before

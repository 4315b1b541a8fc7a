"""Code bundles: deterministic zips of a directory, and the content-addressed store."""

from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path

import pytest

from edgefc.errors import NotFound, ValidationError
from edgefc.package import BundleStore, check_zip, zip_directory

CAPS = {"max_bytes": 1 << 20, "max_files": 100}


def make_function(root: Path) -> Path:
    code = root / "fn"
    (code / "lib").mkdir(parents=True)
    (code / "__pycache__").mkdir()
    (code / "index.py").write_text("def handler(event, context):\n    return event\n")
    (code / "lib" / "helpers.py").write_text("X = 1\n")
    (code / "__pycache__" / "index.cpython-311.pyc").write_bytes(b"junk")
    (code / "alias.py").symlink_to("index.py")
    return code


def test_zip_directory_is_deterministic_and_skips_pycache(tmp_path: Path) -> None:
    code = make_function(tmp_path)
    first = zip_directory(code, label="hello", **CAPS)
    os.utime(code / "index.py", (0, 0))  # timestamps must not change the bytes
    assert zip_directory(code, label="hello", **CAPS) == first
    names = zipfile.ZipFile(io.BytesIO(first)).namelist()
    assert names == ["alias.py", "index.py", "lib/helpers.py"]
    assert zipfile.ZipFile(io.BytesIO(first)).read("alias.py") == (code / "index.py").read_bytes()


def test_zip_directory_refuses_a_link_out(tmp_path: Path) -> None:
    code = make_function(tmp_path)
    (code / "secret").symlink_to("/etc/passwd")
    with pytest.raises(ValidationError, match=r"hello: secret is a link to /etc/passwd, outside"):
        zip_directory(code, label="hello", **CAPS)


def test_zip_directory_refuses_a_link_loop_and_caps(tmp_path: Path) -> None:
    code = make_function(tmp_path)
    (code / "lib" / "up").symlink_to("..")
    with pytest.raises(ValidationError, match="a loop"):
        zip_directory(code, label="hello", **CAPS)
    (code / "lib" / "up").unlink()
    with pytest.raises(ValidationError, match="hello: 3 files, more than the limit of 2"):
        zip_directory(code, label="hello", max_bytes=1 << 20, max_files=2)
    with pytest.raises(ValidationError, match="more than the limit of 10 bytes"):
        zip_directory(code, label="hello", max_bytes=10, max_files=100)


def test_store_extracts_once_read_only_and_traversable(tmp_path: Path) -> None:
    store = BundleStore(tmp_path / "bundles")
    data = zip_directory(make_function(tmp_path), label="hello", **CAPS)
    sha = store.put(data, label="hello", **CAPS)
    assert len(sha) == 64 and store.has(sha)
    code = store.path(sha)
    assert (code / "lib" / "helpers.py").read_text() == "X = 1\n"
    assert stat.S_IMODE(code.stat().st_mode) == 0o755
    assert stat.S_IMODE((code / "lib").stat().st_mode) == 0o755
    assert stat.S_IMODE((code / "index.py").stat().st_mode) == 0o644
    assert store.blob(sha) == data
    assert store.put(data, label="hello", **CAPS) == sha  # idempotent
    assert [p.name for p in (tmp_path / "bundles" / "code").iterdir()] == [sha]  # no temp dirs left


def test_store_refuses_bad_bundles_and_stores_nothing(tmp_path: Path) -> None:
    store = BundleStore(tmp_path / "bundles")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../evil.py", "x")
    with pytest.raises(ValidationError, match=r"functions\[1\] \(evil\): entry '../evil.py' climbs out"):
        store.put(buffer.getvalue(), label="functions[1] (evil)", **CAPS)
    assert list((tmp_path / "bundles" / "code").iterdir()) == []
    assert list((tmp_path / "bundles" / "blobs").iterdir()) == []
    assert not (tmp_path / "evil.py").exists()


def test_store_gc_keeps_only_what_is_asked_and_cleans_leftovers(tmp_path: Path) -> None:
    store = BundleStore(tmp_path / "bundles")
    code = make_function(tmp_path)
    old = store.put(zip_directory(code, label="f", **CAPS), label="f", **CAPS)
    (code / "index.py").write_text("def handler(event, context):\n    return b'v2'\n")
    new = store.put(zip_directory(code, label="f", **CAPS), label="f", **CAPS)
    (tmp_path / "bundles" / "code" / ".tmp-crashed").mkdir()
    store.gc({new})
    assert store.has(new) and not store.has(old)
    assert sorted(p.name for p in (tmp_path / "bundles" / "code").iterdir()) == [new]
    with pytest.raises(NotFound):
        store.path(old)


def test_check_zip_accepts_what_zip_directory_makes(tmp_path: Path) -> None:
    check_zip(zip_directory(make_function(tmp_path), label="f", **CAPS), label="f", **CAPS)

"""Code bundles: zipping a function directory, checking an uploaded zip, and a content-addressed store.

A bundle is untrusted input. :func:`check_zip` refuses what could escape or exhaust the gateway: absolute
paths, ``..``, symlink entries, more files or more bytes than the caps (counting the bytes actually
inflated, since a zip can lie about its sizes). :class:`BundleStore` keeps each bundle as
``blobs/<sha256>.zip`` and extracts it once to ``code/<sha256>/`` read-only.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from edgefc.errors import NotFound, ValidationError

_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the zip epoch: identical trees give identical bytes
_CHUNK = 1 << 16
MAX_NAME_BYTES = 255  # NAME_MAX of Linux file systems
MAX_PATH_BYTES = 1024  # well under PATH_MAX once the data dir is in front
_SHA = re.compile(r"[0-9a-f]{64}")
_MAX_LISTED = 20  # problems listed per bundle; a hostile zip can have thousands


def zip_directory(path: Path, *, max_bytes: int, max_files: int, label: str) -> bytes:
    """Zip a function directory deterministically (same tree → same bytes), skipping ``__pycache__``.

    Links inside the directory are stored as their target's content. Raises ValidationError for links
    leading outside, special files, or a tree over the caps.
    """
    root = path.resolve()
    if not root.is_dir():
        raise ValidationError([f"{label}: code directory {str(path)!r} does not exist or is not a directory"])
    files = sorted(_walk(root, root, "", label, frozenset({root})), key=lambda item: item[0])
    if len(files) > max_files:
        raise ValidationError([f"{label}: {len(files)} files, more than the limit of {max_files}"])
    total = sum(source.stat().st_size for _, source in files)
    if total > max_bytes:
        raise ValidationError([f"{label}: {_mib(total)} of code, more than the limit of {_mib(max_bytes)}"])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for name, source in files:
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            mode = 0o755 if source.stat().st_mode & 0o111 else 0o644
            info.external_attr = (stat.S_IFREG | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, source.read_bytes())
    return buffer.getvalue()


def _walk(
    root: Path, directory: Path, prefix: str, label: str, ancestors: frozenset[Path]
) -> Iterator[tuple[str, Path]]:
    """Yield (name in the zip, real file) for every file under ``directory``, following links inside root."""
    for entry in sorted(directory.iterdir()):
        if entry.name == "__pycache__":
            continue
        name = f"{prefix}{entry.name}"
        real = entry.resolve()
        if entry.is_symlink() and not real.is_relative_to(root):
            raise ValidationError([f"{label}: {name} is a link to {real}, outside the function's directory"])
        if real.is_dir():
            if real in ancestors:
                raise ValidationError([f"{label}: {name} is a link back to a directory above it (a loop)"])
            yield from _walk(root, real, f"{name}/", label, ancestors | {real})
        elif real.is_file():
            yield name, real
        elif entry.exists():
            raise ValidationError([f"{label}: {name} is not a regular file (device, socket or pipe)"])
        else:
            raise ValidationError([f"{label}: {name} is a broken link"])


def check_zip(data: bytes, *, max_bytes: int, max_files: int, label: str) -> None:
    """Check an uploaded bundle is a sound zip within the caps, reading every entry once.

    Raises ValidationError listing what is wrong, each line starting with ``label``.
    """
    problems = list(_zip_problems(data, max_bytes=max_bytes, max_files=max_files))
    if problems:
        if len(problems) > _MAX_LISTED:
            problems = [*problems[:_MAX_LISTED], f"... and {len(problems) - _MAX_LISTED} more problems"]
        raise ValidationError([f"{label}: {problem}" for problem in problems])


def _zip_problems(data: bytes, *, max_bytes: int, max_files: int) -> Iterator[str]:
    if len(data) > max_bytes:
        yield f"the zip is {_mib(len(data))}, more than the limit of {_mib(max_bytes)}"
        return
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 — zipfile raises many types for garbage (found by tests/fuzz: NotImplementedError)
        yield f"not a valid zip file ({type(exc).__name__}: {exc})"
        return
    with archive:
        infos = archive.infolist()
        files = [info for info in infos if not info.is_dir()]
        if len(files) > max_files:
            yield f"{len(files)} files, more than the limit of {max_files}"
            return
        declared = sum(info.file_size for info in files)
        if declared > max_bytes:
            yield f"unpacks to {_mib(declared)}, more than the limit of {_mib(max_bytes)}"
            return
        seen: set[str] = set()
        bad = False
        for info in infos:
            for problem in _entry_problems(info, seen):
                bad = True
                yield problem
        if bad:
            return
        inflated = 0
        for info in files:
            try:
                inflated += _count(archive, info, max_bytes - inflated)
            except _TooBig:
                yield f"unpacks to more than the limit of {_mib(max_bytes)} (its sizes are forged)"
                return
            except (
                zipfile.BadZipFile,
                zlib.error,
                NotImplementedError,
                ValueError,
                OSError,
                EOFError,
            ) as exc:
                # BadZipFile covers CRC mismatches, zlib.error broken deflate data.
                yield f"entry {info.filename!r} is corrupt ({exc})"


class _TooBig(Exception):
    """An entry inflated past the remaining byte budget."""


def _count(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: int) -> int:
    total = 0
    with archive.open(info) as stream:
        while chunk := stream.read(_CHUNK):
            total += len(chunk)
            if total > budget or total > info.file_size:
                raise _TooBig
    return total


def _entry_problems(info: zipfile.ZipInfo, seen: set[str]) -> Iterator[str]:
    name = info.filename
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        yield f"entry {name!r} has an absolute path"
    elif ".." in parts:
        yield f"entry {name!r} climbs out of the bundle with '..'"
    elif "\x00" in name or not name.strip("/"):
        yield f"entry {name!r} has an invalid name"
    elif len(name.encode()) > MAX_PATH_BYTES or any(len(p.encode()) > MAX_NAME_BYTES for p in parts):
        # The file system would refuse it at extraction (ENAMETOOLONG): say so here, about the entry.
        shown = name if len(name) <= 80 else f"{name[:60]}…{name[-16:]}"
        yield (
            f"entry {shown!r} has a name too long (at most {MAX_NAME_BYTES} bytes per part and "
            f"{MAX_PATH_BYTES} in all)"
        )
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind == stat.S_IFLNK:
        yield f"entry {name!r} is a symbolic link; bundles may contain only files and directories"
    elif kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        yield f"entry {name!r} is a special file; bundles may contain only files and directories"
    if info.flag_bits & 0x1:
        yield f"entry {name!r} is encrypted"
    key = name.rstrip("/")
    if key in seen:
        yield f"entry {name!r} appears twice"
    seen.add(key)


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB" if size >= 1 << 20 else f"{size} bytes"


class BundleStore:
    """Content-addressed bundles under ``root``: ``blobs/<sha>.zip`` and, extracted, ``code/<sha>/``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._blobs = root / "blobs"
        self._code = root / "code"
        for directory in (root, self._blobs, self._code):
            directory.mkdir(parents=True, exist_ok=True)
        # Containers run code as an unprivileged user: the code tree must be traversable by anyone.
        self._code.chmod(0o755)

    def put(self, data: bytes, *, label: str, max_bytes: int, max_files: int) -> str:
        """Check, store and extract a bundle; returns its sha256 (hex). Storing the same bytes twice is cheap.

        Raises ValidationError (naming ``label``) for a bundle that is corrupt, unsafe or over the caps.
        """
        check_zip(data, max_bytes=max_bytes, max_files=max_files, label=label)
        sha = hashlib.sha256(data).hexdigest()
        if self.has(sha):
            return sha
        blob = self._blobs / f"{sha}.zip"
        if not blob.exists():
            _atomic_write(blob, data)
        self._extract(sha, data, label=label, max_bytes=max_bytes)
        return sha

    def has(self, sha: str) -> bool:
        """Whether the bundle ``sha`` is stored and extracted."""
        return bool(_SHA.fullmatch(sha)) and (self._code / sha).is_dir()

    def path(self, sha: str) -> Path:
        """The directory holding the extracted bundle ``sha``. Raises NotFound when it is not stored."""
        if not self.has(sha):
            raise NotFound(f"no code bundle {sha!r} in {self.root}")
        return self._code / sha

    def blob(self, sha: str) -> bytes:
        """The stored zip of ``sha``. Raises NotFound when it is not stored."""
        path = self._blobs / f"{sha}.zip"
        if not _SHA.fullmatch(sha) or not path.is_file():
            raise NotFound(f"no code bundle {sha!r} in {self.root}")
        return path.read_bytes()

    def stored(self) -> set[str]:
        """The sha256 of every bundle stored (zip or extracted)."""
        found = {blob.name.removesuffix(".zip") for blob in self._blobs.iterdir() if blob.name.endswith(".zip")}
        return found | {d.name for d in self._code.iterdir() if _SHA.fullmatch(d.name)}

    def gc(self, keep: set[str]) -> None:
        """Delete every bundle not in ``keep``, and leftovers of extractions interrupted by a crash."""
        for blob in self._blobs.iterdir():
            if blob.name.removesuffix(".zip") not in keep:
                blob.unlink(missing_ok=True)
        for directory in self._code.iterdir():
            if directory.name not in keep:
                _remove_tree(directory)

    def _extract(self, sha: str, data: bytes, *, label: str, max_bytes: int) -> None:
        final = self._code / sha
        temp = Path(tempfile.mkdtemp(prefix=f".tmp-{sha[:12]}-", dir=self._code))
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                budget = max_bytes
                for info in archive.infolist():
                    budget -= _extract_entry(archive, info, temp, budget, label)
            _set_modes(temp)
            try:
                temp.rename(final)
            except OSError:
                if not final.is_dir():  # another put of the same bytes won the race; theirs is identical
                    raise
        finally:
            if temp.exists():
                _remove_tree(temp)


def _extract_entry(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, into: Path, budget: int, label: str
) -> int:
    target = into.joinpath(*[part for part in info.filename.replace("\\", "/").split("/") if part])
    if not target.resolve().is_relative_to(into.resolve()):  # check_zip ran; this is the belt to its braces
        raise ValidationError([f"{label}: entry {info.filename!r} leaves the bundle"])
    if info.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with archive.open(info) as source, open(target, "wb") as sink:
        while chunk := source.read(_CHUNK):
            written += len(chunk)
            if written > budget:
                raise ValidationError([f"{label}: unpacks to more than the limit"])
            sink.write(chunk)
    return written


def _set_modes(root: Path) -> None:
    os.chmod(root, 0o755)
    for directory, subdirs, files in os.walk(root):
        for name in subdirs:
            os.chmod(os.path.join(directory, name), 0o755)
        for name in files:
            os.chmod(os.path.join(directory, name), 0o644)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, temp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _remove_tree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        # Extracted trees are read-only for their owner's peace of mind, not for ours: make them removable.
        for directory, _subdirs, _files in os.walk(path):
            os.chmod(directory, 0o755)
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)

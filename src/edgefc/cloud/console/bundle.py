"""Reading and editing the files of a code version (a zip) for the editor and the diff.

Only the console's view of a bundle lives here: the cloud's own bundle checks (zip-slip, links, size caps)
still run on every version the editor saves, because a save is an ordinary upload.
"""

from __future__ import annotations

import difflib
import io
import zipfile
from dataclasses import dataclass

MAX_EDITABLE = 512 * 1024  # bigger files are listed but not opened in the editor
TEXT_SUFFIXES = (".py", ".txt", ".json", ".yaml", ".yml", ".cfg", ".ini", ".toml", ".md", ".js", ".csv")


@dataclass(frozen=True)
class DiffLine:
    """One line of a unified diff: ``kind`` is ``add``, ``del``, ``hunk``, ``file`` or ``same``."""

    kind: str
    text: str


def files(data: bytes) -> dict[str, bytes]:
    """Every regular file of a zip by its path. Raises ValueError for a zip that cannot be read."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return {info.filename: archive.read(info) for info in archive.infolist()
                    if not info.is_dir() and info.file_size <= MAX_EDITABLE}
    except (zipfile.BadZipFile, OSError) as exc:
        raise ValueError(f"the code is not a readable zip: {exc}") from None


def text_files(data: bytes) -> dict[str, str]:
    """The files of a zip that the editor can show (UTF-8 text of a known kind)."""
    out: dict[str, str] = {}
    for path, content in files(data).items():
        if path.endswith(TEXT_SUFFIXES):
            try:
                out[path] = content.decode("utf-8")
            except UnicodeDecodeError:
                continue
    return dict(sorted(out.items()))


def replace_file(data: bytes | None, path: str, text: str) -> bytes:
    """A new zip: the files of ``data`` (if any) with ``path`` set to ``text``. Raises ValueError for a bad path."""
    clean = path.strip().lstrip("/")
    if not clean or ".." in clean.split("/") or "\\" in clean:
        raise ValueError(f"file name {path!r}: write a relative path such as index.py")
    existing = files(data) if data else {}
    existing[clean] = text.replace("\r\n", "\n").encode("utf-8")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in sorted(existing.items()):
            archive.writestr(name, content)
    return buffer.getvalue()


def diff(old: bytes, new: bytes, old_label: str, new_label: str) -> list[DiffLine]:
    """A unified diff of every file that differs between two zips (added and removed files included)."""
    before, after = files(old), files(new)
    lines: list[DiffLine] = []
    for path in sorted(set(before) | set(after)):
        a, b = before.get(path), after.get(path)
        if a == b:
            continue
        a_text = _lines(a)
        b_text = _lines(b)
        lines.append(DiffLine("file", path))
        for line in difflib.unified_diff(a_text, b_text, f"{old_label}/{path}", f"{new_label}/{path}",
                                         lineterm="", n=3):
            if line.startswith(("---", "+++")):
                continue
            kind = {"@": "hunk", "+": "add", "-": "del"}.get(line[:1], "same")
            lines.append(DiffLine(kind, line))
    return lines


def _lines(content: bytes | None) -> list[str]:
    if content is None:
        return []
    try:
        return content.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        return [f"(binary, {len(content)} bytes)"]

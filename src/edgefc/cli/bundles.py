"""What ``edgefc deploy`` uploads: the manifest's text and one zip per function, every problem found in one pass.

The gateway checks all of it again; checking here first means a user sees every problem of a manifest at once
(a missing code folder next to a bad ``memory_mb``), with each entry named, before anything is uploaded.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from edgefc.cli.requirements import REQUIREMENTS_FILE, vendor_requirements
from edgefc.config.load import check_function_code, parse_manifest
from edgefc.config.manifest import FunctionSpec, Manifest
from edgefc.config.problems import label_paths
from edgefc.config.yamltext import load_yaml
from edgefc.errors import ValidationError
from edgefc.package import check_zip, zip_directory


@dataclass(frozen=True)
class Package:
    """A manifest ready to upload: its text, its parsed form and a zip per function name."""

    text: str
    manifest: Manifest
    bundles: dict[str, bytes]


def package(manifest_path: Path, *, max_bytes: int, max_files: int) -> Package:
    """Read ``manifest_path``, check it and each function's code, zip the code (with its requirements).

    Raises ValidationError listing every problem, each entry named (``functions[1] (climate).code: …``).
    """
    try:
        text = manifest_path.read_text("utf-8")
    except OSError as exc:
        raise ValidationError([f"{manifest_path}: cannot read: {exc.strerror}"]) from exc
    except UnicodeDecodeError as exc:
        raise ValidationError([f"{manifest_path}: not UTF-8 text (byte {exc.start})"]) from exc
    try:
        data = load_yaml(text, source=str(manifest_path))
    except ValueError as exc:
        raise ValidationError([str(exc)]) from None
    problems: list[str] = []
    manifest: Manifest | None = None
    try:
        manifest = parse_manifest(text, source=str(manifest_path))
    except ValidationError as exc:
        problems.extend(exc.problems)
    bundles: dict[str, bytes] = {}
    entries = data.get("functions") if isinstance(data, dict) else None
    for index, entry in enumerate(entries if isinstance(entries, list) else []):
        if not isinstance(entry, dict):
            continue
        where = f"functions[{index}]"
        spec = manifest.functions[index] if manifest is not None else _valid_spec(entry)
        found = _bundle(manifest_path.parent, entry, where, max_bytes=max_bytes, max_files=max_files,
                        problems=problems)  # fmt: skip
        if found is None:
            continue
        data_zip, code_dir = found
        name = entry.get("name")
        if isinstance(name, str):
            bundles[name] = data_zip
        if spec is not None and code_dir is not None:
            problems.extend(check_function_code(spec, code_dir, path=where))
    if problems or manifest is None:
        ordered = sorted(dict.fromkeys(problems), key=_entry_order)
        raise ValidationError(label_paths(ordered, data))
    return Package(text, manifest, bundles)


def _valid_spec(entry: dict[str, Any]) -> FunctionSpec | None:
    """The entry as a FunctionSpec when it is valid on its own (so its code is checked even when others are not)."""
    try:
        return FunctionSpec.model_validate(entry)
    except PydanticValidationError:
        return None


_SECTIONS = {"functions": 0, "routes": 1, "devices": 2}
_ENTRY = re.compile(r"^(functions|routes|devices)\[(\d+)\]")


def _entry_order(line: str) -> tuple[int, int]:
    """Problems sorted by the entry they are about, in the manifest's order; file-level problems first."""
    match = _ENTRY.match(line)
    return (_SECTIONS[match.group(1)], int(match.group(2))) if match else (-1, 0)


def _bundle(base: Path, entry: dict[str, Any], where: str, *, max_bytes: int, max_files: int,
            problems: list[str]) -> tuple[bytes, Path | None] | None:  # fmt: skip
    """The zip of one function's code and the folder it came from (None for a .zip); None after a problem."""
    code = entry.get("code", entry.get("name"))
    if not isinstance(code, str) or not code:
        return None  # the schema check has reported it
    path = base / code
    try:
        if path.is_dir():
            data = zip_directory(path, max_bytes=max_bytes, max_files=max_files, label=f"{where}.code")
            if (path / REQUIREMENTS_FILE).is_file():
                extra = vendor_requirements(path / REQUIREMENTS_FILE, label=f"{where}.code")
                data = merge_zips(data, extra, label=f"{where}.code")
            check_zip(data, max_bytes=max_bytes, max_files=max_files, label=f"{where}.code")
            return data, path
        if path.is_file():
            data = path.read_bytes()
            check_zip(data, max_bytes=max_bytes, max_files=max_files, label=f"{where}.code")
            return data, None
    except ValidationError as exc:
        problems.extend(exc.problems)
        return None
    except OSError as exc:
        problems.append(f"{where}.code: cannot read {str(path)!r}: {exc.strerror}")
        return None
    problems.append(f"{where}.code: {code!r} does not exist (looked for {path.resolve()})")
    return None


def merge_zips(code: bytes, extra: bytes, *, label: str) -> bytes:
    """One zip of the function's own files and the installed packages, names sorted (same input, same bytes).

    Raises ValidationError when a package would overwrite one of the function's own files.
    """
    with zipfile.ZipFile(io.BytesIO(code)) as first, zipfile.ZipFile(io.BytesIO(extra)) as second:
        own = {info.filename: (first, info) for info in first.infolist()}
        clashes = sorted(info.filename for info in second.infolist() if info.filename in own and not info.is_dir())
        if clashes:
            raise ValidationError([f"{label}: installing {REQUIREMENTS_FILE} would overwrite the function's own "
                                   f"{', '.join(clashes[:5])}"])  # fmt: skip
        entries = {**{info.filename: (second, info) for info in second.infolist()}, **own}
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as out:
            for name in sorted(entries):
                archive, info = entries[name]
                out.writestr(info, archive.read(info))
    return buffer.getvalue()

"""What a deployment changes relative to the one applied: functions, routes and devices added, changed, removed.

Computed on the client from ``GET /v1/deployment`` (its manifest and bundle hashes) and the new manifest, so
``edgefc deploy`` can show it and ask before anything is removed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from rich.text import Text

from edgefc.cli.output import styled
from edgefc.config.manifest import Manifest


@dataclass
class Section:
    """The changes of one kind of entry (``functions``, ``routes``, ``devices``), each list sorted by name."""

    kind: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: dict[str, list[str]] = field(default_factory=dict)  # name → what changed
    unchanged: list[str] = field(default_factory=list)


@dataclass
class Diff:
    """Every change of a deployment; ``removes_anything`` is what makes ``edgefc deploy`` ask first."""

    sections: list[Section]
    version_from: str | None
    version_to: str | None

    @property
    def removes_anything(self) -> bool:
        return any(s.removed for s in self.sections)

    @property
    def changes_anything(self) -> bool:
        return any(s.added or s.removed or s.changed for s in self.sections)

    def removed_summary(self) -> str:
        """``2 functions (a, b), 1 device (/pk/dn)``."""
        parts = []
        for s in self.sections:
            if s.removed:
                noun = s.kind if len(s.removed) != 1 else s.kind.rstrip("s")
                parts.append(f"{len(s.removed)} {noun} ({', '.join(s.removed)})")
        return ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        """The diff as data (``deploy --dry-run -o json``)."""
        out: dict[str, Any] = {"from": self.version_from, "to": self.version_to,
                               "removes_anything": self.removes_anything}  # fmt: skip
        for s in self.sections:
            out[s.kind] = {"added": s.added, "changed": s.changed, "removed": s.removed, "unchanged": s.unchanged}
        return out

    def render(self) -> Text:
        """The diff as lines: ``+ added``, ``~ changed (fields)``, ``- removed``; unchanged entries counted."""
        out = Text()
        out.append(f"deployment {self.version_from or '(none)'} → {self.version_to or '(new)'}\n")
        for s in self.sections:
            if not (s.added or s.removed or s.changed):
                continue
            out.append(f"{s.kind}:\n")
            for name in s.added:
                out.append_text(styled(f"  + {name}\n", "green"))
            for name, what in s.changed.items():
                out.append_text(styled(f"  ~ {name} ({', '.join(what)})\n", "yellow"))
            for name in s.removed:
                out.append_text(styled(f"  - {name}\n", "red"))
            if s.unchanged:
                out.append(f"  = {len(s.unchanged)} unchanged\n")
        if not self.changes_anything:
            out.append("no changes\n")
        out.rstrip()
        return out


def sha256(data: bytes) -> str:
    """The hash the gateway stores a bundle under."""
    return hashlib.sha256(data).hexdigest()


def diff(old: Manifest | None, old_bundles: dict[str, str], new: Manifest, new_bundles: dict[str, str],
         *, old_version: str | None = None) -> Diff:  # fmt: skip
    """Compare two manifests and their bundle hashes (function → sha256)."""
    functions = _compare(
        "functions",
        {f.name: _function_view(f.model_dump(mode="json"), old_bundles.get(f.name)) for f in (old.functions if old else [])},
        {f.name: _function_view(f.model_dump(mode="json"), new_bundles.get(f.name)) for f in new.functions},
    )  # fmt: skip
    routes = _compare("routes", {r.name: r.model_dump(mode="json") for r in (old.routes if old else [])},
                      {r.name: r.model_dump(mode="json") for r in new.routes})  # fmt: skip
    devices = _compare(
        "devices",
        {f"/{d.product_key}/{d.device_name}": d.model_dump(mode="json") for d in (old.devices if old else [])},
        {f"/{d.product_key}/{d.device_name}": d.model_dump(mode="json") for d in new.devices},
    )
    return Diff([functions, routes, devices], old_version, new.version)


def _function_view(dumped: dict[str, Any], sha: str | None) -> dict[str, Any]:
    # Where the code folder is named does not matter to the gateway; what is in it does.
    view = {k: v for k, v in dumped.items() if k != "code"}
    view["code"] = sha
    return view


def _compare(kind: str, old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]) -> Section:
    section = Section(kind)
    for name in sorted(new):
        if name not in old:
            section.added.append(name)
        elif old[name] != new[name]:
            keys = sorted(k for k in set(old[name]) | set(new[name]) if old[name].get(k) != new[name].get(k))
            section.changed[name] = keys
        else:
            section.unchanged.append(name)
    section.removed = sorted(set(old) - set(new))
    return section

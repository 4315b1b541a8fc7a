"""Named gateways (``edgefc login``): URL and token kept in the user's config dir, like kubectl contexts.

The file is ``$XDG_CONFIG_HOME/edgefc/gateways.yaml`` (``~/.config/edgefc`` by default), mode 0600 in a 0700
folder, because it holds admin tokens::

    current: plant-1
    gateways:
      plant-1: {url: "http://10.0.0.7:9999", token: "..."}
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from edgefc.errors import ValidationError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


@dataclass(frozen=True)
class Gateway:
    """One stored gateway."""

    name: str
    url: str
    token: str


def config_dir() -> Path:
    """``$XDG_CONFIG_HOME/edgefc``, else ``~/.config/edgefc`` (the XDG base directory default)."""
    base = os.environ.get("XDG_CONFIG_HOME") or ""
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".config"
    return root / "edgefc"


def config_file() -> Path:
    """Where the named gateways are stored."""
    return config_dir() / "gateways.yaml"


class GatewayBook:
    """The stored gateways and which one is current. Reading never fails for a missing file."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or config_file()
        data = self._read()
        self.current: str | None = data.get("current") if isinstance(data.get("current"), str) else None
        raw = data.get("gateways") if isinstance(data.get("gateways"), dict) else {}
        self.gateways: dict[str, Gateway] = {}
        for name, entry in (raw or {}).items():
            if isinstance(entry, dict) and isinstance(entry.get("url"), str):
                self.gateways[str(name)] = Gateway(str(name), entry["url"], str(entry.get("token") or ""))

    def _read(self) -> dict[str, Any]:
        """The file's mapping. Raises ValidationError naming the file when it is not YAML."""
        try:
            text = self.path.read_text("utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ValidationError([f"{self.path}: cannot read: {exc.strerror}"]) from exc
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ValidationError([f"{self.path}: invalid YAML: {exc}"]) from exc
        if not isinstance(data, dict):
            raise ValidationError([f"{self.path}: must be a mapping with 'current' and 'gateways'"])
        return data

    def get(self, name: str) -> Gateway | None:
        """The gateway stored as ``name``."""
        return self.gateways.get(name)

    def by_url(self, url: str) -> Gateway | None:
        """A stored gateway with this URL (so ``--gateway URL`` finds its token too)."""
        wanted = url.rstrip("/")
        return next((g for g in self.gateways.values() if g.url.rstrip("/") == wanted), None)

    def put(self, gateway: Gateway, *, make_current: bool = True) -> None:
        """Store (or replace) a gateway and save. Raises ValidationError for a bad name."""
        if not _NAME.fullmatch(gateway.name) or "://" in gateway.name:
            raise ValidationError([f"name: {gateway.name!r} must be letters, digits and ._- (up to 63), "
                                   "e.g. plant-1"])  # fmt: skip
        self.gateways[gateway.name] = gateway
        if make_current or self.current is None:
            self.current = gateway.name
        self.save()

    def remove(self, name: str) -> None:
        """Forget a gateway. Raises ValidationError when there is none of that name."""
        if name not in self.gateways:
            raise ValidationError([f"no gateway named {name!r} (see: edgefc gateways)"])
        del self.gateways[name]
        if self.current == name:
            self.current = next(iter(self.gateways), None)
        self.save()

    def use(self, name: str) -> None:
        """Make ``name`` the gateway commands talk to. Raises ValidationError when it is unknown."""
        if name not in self.gateways:
            raise ValidationError([f"no gateway named {name!r} (see: edgefc gateways)"])
        self.current = name
        self.save()

    def save(self) -> None:
        """Write the file atomically, readable by its owner only (it holds tokens)."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = {"current": self.current,
                "gateways": {g.name: {"url": g.url, "token": g.token} for g in self.gateways.values()}}  # fmt: skip
        fd, temp = tempfile.mkstemp(prefix=".gateways-", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                yaml.safe_dump(data, handle, sort_keys=False)
            os.replace(temp, self.path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise


def complete_gateway(ctx: Any, param: Any, incomplete: str) -> list[str]:
    """Shell completion of ``--gateway``: the stored names starting with what was typed."""
    try:
        return sorted(name for name in GatewayBook().gateways if name.startswith(incomplete))
    except ValidationError:
        return []

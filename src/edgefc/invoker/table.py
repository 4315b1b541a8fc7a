"""The table of deployed functions: the deployer writes it, the invoker and status views read it."""

from __future__ import annotations

from collections.abc import Iterator

from edgefc.supervisor.manager import FunctionManager


class FunctionTable:
    """Function name → its manager, replaced whole by each deployment (readers never see half an apply)."""

    def __init__(self) -> None:
        self._managers: dict[str, FunctionManager] = {}

    def get(self, name: str) -> FunctionManager | None:
        return self._managers.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._managers

    def __iter__(self) -> Iterator[str]:
        return iter(self._managers)

    def __len__(self) -> int:
        return len(self._managers)

    def snapshot(self) -> dict[str, FunctionManager]:
        """A copy, safe to iterate while a deployment changes the table."""
        return dict(self._managers)

    def replace(self, managers: dict[str, FunctionManager]) -> None:
        self._managers = dict(managers)

    def put(self, name: str, manager: FunctionManager) -> None:
        self._managers = {**self._managers, name: manager}

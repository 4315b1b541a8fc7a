"""Safe YAML reading for manifests and gateway configuration, with errors that point at a line.

Differences from ``yaml.safe_load``, each because it bit someone: a key given twice is an error (PyYAML keeps
the last silently), dates stay strings (``version: 2024-05-01`` must not become a ``date``), and a document is
refused when it is nested deeper than :data:`MAX_DEPTH` levels (900 levels ended in a 500) or holds more than
:data:`MAX_NODES` values with its aliases written out (a 2.4 KB alias bomb held the deploy lock for 145 s of
CPU); an alias to a value that contains it is refused too.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_DEPTH = 64
MAX_NODES = 50_000  # a manifest of 1 000 functions with common settings is ~20 000; PyYAML parses ~15 000/s
MAX_TEXT = 4 * 1024 * 1024


class _Loader(yaml.SafeLoader):
    """SafeLoader without timestamp resolution or aliases, with duplicate-key detection and size caps."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._expanded = 0  # values in the document with every alias written out
        self._sizes: dict[int, int] = {}  # id(node) → its expanded size, once composed

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        # Counted while composing, before any value is built: an alias costs what it stands for, so a bomb of
        # nested aliases is refused after a few hundred events instead of expanding to billions of values.
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            node = super().compose_node(parent, index)
            size = self._sizes.get(id(node))
            if size is None:
                raise yaml.composer.ComposerError(
                    None, None, "an alias refers to a value that contains it", mark
                )
            self._grow(size, mark)
            return node
        mark = self.peek_event().start_mark
        before = self._expanded
        self._grow(1, mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._sizes[id(node)] = self._expanded - before
        return node

    def _grow(self, count: int, mark: yaml.Mark) -> None:
        self._expanded += count
        if self._expanded > MAX_NODES:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"more than {MAX_NODES} values in one document (aliases counted as written out)",
                mark,
            )


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    result: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark
            ) from None
        if key in result:
            raise yaml.constructor.ConstructorError(
                None, None, f"the key {key!r} appears twice in one mapping", key_node.start_mark
            )
        result[key] = loader.construct_object(value_node, deep=True)
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(text: str | bytes, *, source: str) -> Any:
    """Parse YAML text into plain Python data.

    Raises ValueError with ``source:line:column: what`` for text that is not valid YAML, uses an alias, or
    exceeds a cap (:data:`MAX_TEXT`, :data:`MAX_DEPTH`, :data:`MAX_NODES`).
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{source}: not UTF-8 text (byte {exc.start})") from exc
    if len(text) > MAX_TEXT:
        raise ValueError(f"{source}: {len(text)} characters; at most {MAX_TEXT}")
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506  # _Loader derives from SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        what = " ".join(part for part in (exc.context, exc.problem) if part)
        raise ValueError(f"{where}: invalid YAML: {what}") from exc
    except yaml.YAMLError as exc:
        raise ValueError(f"{source}: invalid YAML: {exc}") from exc

"""Parsing YAML that somebody else wrote, within bounds.

PyYAML's safe loader builds no objects but data, yet data alone can exhaust the process:
an alias bomb (``a: &a [x, x]``, ``b: &b [*a, *a]``, … nine levels) is a few hundred
bytes that expand to billions of nodes when anything walks or constructs them, a deeply
nested flow sequence overflows the interpreter's stack in the composer, and a
5,000-digit integer fails deep inside ``int()``. The bounds here are checked on the
composed node graph *before* anything expands it:

* the file's size (``MAX_BYTES``),
* nesting depth, counted while composing, so the composer never recurses past it
  (``MAX_DEPTH``),
* nodes after alias expansion, counted on the graph with one memoised pass, so an alias
  costs what it would cost expanded without being expanded (``MAX_NODES``),
* digits of an integer scalar (``MAX_INT_DIGITS``),
* recursive aliases (a node that contains itself) are refused.

Breaking a bound raises :class:`BoundError` with the line and column of the node at
fault; :mod:`watchkeeper.policies.yamlsource` turns it into a located document error.
The limits are far above what a hand-written config or policy file needs (the largest
example policy is ~300 nodes) and far below what hurts.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from watchkeeper.errors import WatchkeeperError

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 100_000
MAX_INT_DIGITS = 40
_INT_TAG = "tag:yaml.org,2002:int"
_DIGITS = re.compile(r"[0-9a-fA-F]")


class BoundError(WatchkeeperError, ValueError):
    """A YAML document breaks one of the bounds; ``line`` / ``column`` are 1-based."""

    retriable = False

    def __init__(self, message: str, line: int | None = None, column: int | None = None):
        self.message = message
        self.line = line
        self.column = column
        super().__init__(message)


def _at(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class BoundedLoader(yaml.SafeLoader):
    """The safe loader, refusing to compose deeper than :data:`MAX_DEPTH`."""

    def __init__(self, stream: str, max_depth: int = MAX_DEPTH) -> None:
        super().__init__(stream)
        self._depth = 0
        self._max_depth = max_depth

    def compose_node(self, parent: Any, index: Any) -> Any:  # PyYAML's recursive step
        self._depth += 1
        try:
            if self._depth > self._max_depth:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise BoundError(
                    f"nested deeper than {self._max_depth} levels",
                    mark.line + 1,
                    mark.column + 1,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def check_graph(root: yaml.Node, max_nodes: int = MAX_NODES) -> int:
    """Nodes ``root`` expands to (aliases counted as copies), checked against ``max_nodes``.

    One pass over the graph: each distinct node's expanded size is computed once and
    reused wherever an alias points at it, so the check is linear in the document, not in
    its expansion. Raises :class:`BoundError` at the first node that breaks a bound.
    """
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    # iterative post-order walk: the graph may be as deep as MAX_DEPTH, the stack is ours
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            total = 1 + sum(sizes[id(child)] for child in _children(node))
            if total > max_nodes:
                line, column = _at(node)
                raise BoundError(
                    f"expands to more than {max_nodes} nodes (YAML aliases are counted "
                    "as copies): too large to be a configuration",
                    line,
                    column,
                )
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if key in on_path:
            line, column = _at(node)
            raise BoundError("an alias refers to a node that contains it (recursive)", line, column)
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _INT_TAG and len(_DIGITS.findall(str(node.value))) > MAX_INT_DIGITS:
                line, column = _at(node)
                raise BoundError(f"an integer of more than {MAX_INT_DIGITS} digits", line, column)
            sizes[key] = 1
            continue
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            child_key = id(child)
            if child_key in on_path:
                line, column = _at(child)
                raise BoundError(
                    "an alias refers to a node that contains it (recursive)", line, column
                )
            if child_key not in sizes:
                stack.append((child, False))
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def load_bounded(text: str) -> tuple[yaml.Node | None, Any]:
    """The composed node graph of one document and its data, both within the bounds.

    Raises :class:`BoundError` for a broken bound and PyYAML's ``YAMLError`` for bad syntax.
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_BYTES:
        raise BoundError(f"{size} bytes: larger than the limit of {MAX_BYTES} bytes", 1, 1)
    loader = BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        check_graph(node)
        data = loader.construct_document(node)
    finally:
        loader.dispose()
    return node, data

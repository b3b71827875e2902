"""Loading YAML with positions: every key and value keeps its file:line:col.

Only a safe subset is accepted: standard YAML tags (no ``!!python/...``), no duplicate keys, and a bounded
number of nodes after alias expansion, so an alias bomb is an error instead of an out-of-memory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..errors import PipelineError, Problem

MAX_BYTES = 1024 * 1024
MAX_NODES = 100_000
MAX_DEPTH = 64
"""Nesting levels a pipeline file may have (a real one needs fewer than ten)."""

Path = tuple[str | int, ...]
_COLLECTION_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:omap"}


@dataclass
class Source:
    """A parsed YAML document with the position (1-based line, col) of every key and value."""

    file: str
    data: Any
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    """Problems that did not stop parsing (duplicate keys, unsupported tags); the caller reports them."""

    def problem(self, path: Path, message: str, *, at_key: bool = False) -> Problem:
        """A problem located at ``path``, or at its nearest located parent."""
        probe = path
        table = self.keys if at_key else self.values
        while probe and probe not in table and probe not in self.values:
            probe = probe[:-1]
        line, col = table.get(probe) or self.values.get(probe) or (1, 1)
        return Problem(self.file, line, col, message, ".".join(str(p) for p in path))


class _Builder:
    def __init__(self, file: str):
        self.file = file
        self.source = Source(file, None)
        self.nodes = 0
        self.problems: list[Problem] = []
        self.constructor = yaml.SafeLoader("")

    def at(self, node: yaml.Node) -> tuple[int, int]:
        return node.start_mark.line + 1, node.start_mark.column + 1

    def fail(self, node: yaml.Node, message: str, path: Path) -> None:
        line, col = self.at(node)
        self.problems.append(Problem(self.file, line, col, message, ".".join(str(p) for p in path)))

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _TooBig(node)
        self.source.values.setdefault(path, self.at(node))
        if len(path) > MAX_DEPTH:  # aliases nest what the text does not show (the text's own depth is checked first)
            self.fail(node, f"nested more than {MAX_DEPTH} levels through anchors and aliases; flatten the "
                      "document", path[:4])
            return None
        if not isinstance(node, yaml.ScalarNode) and node.tag not in _COLLECTION_TAGS:
            self.fail(node, f"unsupported YAML tag {node.tag!r}; only plain YAML values are allowed", path)
            return None
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError:
            self.fail(node, f"unsupported YAML tag {node.tag!r}; only plain YAML values are allowed", path)
            return None

    def mapping(self, node: yaml.MappingNode, path: Path) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        merged: list[yaml.MappingNode] = []
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for source in sources:
                    if isinstance(source, yaml.MappingNode) and source.tag in _COLLECTION_TAGS:
                        merged.append(source)
                    else:
                        self.fail(source, "a merge key (<<) takes a mapping or a list of mappings", path)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.fail(key_node, "mapping keys must be plain strings", path)
                continue
            key = self.build(key_node, (*path, "<key>"))
            if not isinstance(key, str):
                self.fail(key_node, f"key {key_node.value!r} is read as {type(key).__name__} {key!r}, not text; quote "
                          f"it: '{key_node.value}'", path)
                key = key_node.value
            if key in result:
                line, _ = self.source.keys[(*path, key)]
                self.fail(key_node, f"duplicate key {key!r} (first defined on line {line})", (*path, key))
                continue
            self.source.keys.setdefault((*path, key), self.at(key_node))  # explicit keys win over merged ones
            result[key] = self.build(value_node, (*path, key))
        for extra in merged:
            for key, value in self.mapping(extra, path).items():
                result.setdefault(key, value)
        self.source.values.pop((*path, "<key>"), None)
        return result


class _TooBig(Exception):
    def __init__(self, node: yaml.Node):
        self.node = node


def syntax_hint(text: str, line: int, col: int, detail: str = "") -> str:
    """What probably went wrong on ``line``, then that line with a caret under ``col``."""
    lines = text.splitlines()
    here = lines[line - 1] if 0 < line <= len(lines) else ""
    hint = ""
    if "${{" in here and not re.search(r"""["']\$\{\{""", here):
        hint = "; a value with ${{ ... }} must be quoted, e.g. ifc: \"${{ inputs.arch }}\""
    elif any(word in detail for word in ("block", "mapping values are not allowed", "expected ':'")):
        hint = "; check the indentation: keys of one mapping start in the same column"
    caret = f"\n    {here}\n    {' ' * (col - 1)}^" if here.strip() else ""
    return hint + caret


def _events(text: str) -> Any:
    """The parser's events, by libyaml when PyYAML has it; a document libyaml refuses is parsed by PyYAML's own
    parser (whose errors, with their marks, are the ones reported)."""
    fast = getattr(yaml, "CSafeLoader", None)
    if fast is not None:
        try:
            return list(yaml.parse(text, Loader=fast))
        except yaml.YAMLError:
            pass
    return yaml.parse(text, Loader=yaml.SafeLoader)


def _check_depth(text: str, file: str) -> None:
    """Refuse a document nested deeper than ``MAX_DEPTH`` before composing it (PyYAML's composer recurses per
    level: ``[[[[...`` would end in a RecursionError). The parser's events are read iteratively."""
    depth = 0
    for event in _events(text):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                mark = event.start_mark
                line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
                raise PipelineError([Problem(file, line, col, f"nested more than {MAX_DEPTH} "
                                             "levels deep; pipelines need a few levels: write it out plainly")])
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _compose(text: str) -> yaml.Node | None:
    """The document's node tree: by libyaml when PyYAML has it (the same nodes and marks, several times faster:
    most of checking a big pipeline is parsing it); a document libyaml refuses is parsed again by PyYAML's own
    parser, whose errors (and the hints above) are the ones reported."""
    fast = getattr(yaml, "CSafeLoader", None)
    if fast is not None:
        try:
            return yaml.compose(text, Loader=fast)
        except yaml.YAMLError:
            pass
    return yaml.compose(text, Loader=yaml.SafeLoader)


def load(text: str | bytes, file: str) -> Source:
    """Parse ``text`` as one YAML document; raise :class:`PipelineError` when it cannot be read at all."""
    if len(text) > MAX_BYTES:
        raise PipelineError([Problem(file, 1, 1, f"file is {len(text):,} bytes; pipeline files are limited to "
                                     f"{MAX_BYTES:,} bytes. Split it, or move data into input files.")])
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PipelineError([Problem(file, 1, 1, f"file is not UTF-8 text ({exc.reason} at byte {exc.start})")]) from None
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise PipelineError([Problem(file, line, 1, "file contains a NUL byte; pipeline files must be text")])
    try:
        _check_depth(text, file)
        node = _compose(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        detail = " ".join(part for part in (exc.context, exc.problem) if part)
        raise PipelineError([Problem(file, line, col, f"YAML syntax error: {detail}{syntax_hint(text, line, col, detail)}")]) from None
    except yaml.YAMLError as exc:
        raise PipelineError([Problem(file, 1, 1, f"YAML error: {exc}")]) from None
    builder = _Builder(file)
    if node is None:
        raise PipelineError([Problem(file, 1, 1, "file is empty; a pipeline needs at least 'version' and 'steps'")])
    try:
        builder.source.data = builder.build(node, ())
    except _TooBig as big:
        raise PipelineError([Problem(file, *builder.at(big.node), f"document expands to more than {MAX_NODES:,} "
                                     "nodes (an alias/anchor bomb?); write the pipeline out plainly")]) from None
    except RecursionError:
        raise PipelineError([Problem(file, 1, 1, "document is nested too deeply (recursive alias?)")]) from None
    builder.source.problems = builder.problems
    return builder.source

"""YAML in and out, remembering where every key came from.

Parsing composes PyYAML's node tree with the safe loader (no tag ever builds a Python
object) and converts it by hand, so that each spec path gets its line and column,
duplicate keys are reported instead of silently overwritten, and alias bombs are cut off.
Numbers are read as YAML 1.2 reads them (`1e-3` is a float), not only as PyYAML's 1.1.
"""

from __future__ import annotations

import bisect
import re
from typing import Any

import attrs
import yaml

from tdsl.errors import Diagnostic, Location, SpecPath
from tdsl.spec.yaml_limits import (  # noqa: F401 (read_text: the spec files' reader)
    MAX_CHARACTERS,
    MAX_DEPTH,
    MAX_NODES,
    event_limits,
    read_text,
    too_long,
)
from tdsl.wording import describe_value

_MAP, _SEQ, _MERGE = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:merge"
_YAML_TAG = "tag:yaml.org,2002:"
_PLAIN_TAGS = {"map", "seq", "str", "int", "float", "bool", "null", "merge", "timestamp"}


# YAML 1.2's floats that YAML 1.1 (PyYAML) reads as strings: an exponent without a dot or
# without a sign (`1e-3`, `1E5`, `1.0e5`). Only a dot or an exponent makes a float, so
# integers stay integers; `.inf`, `.nan` and the rest stay as PyYAML reads them.
_YAML12_FLOAT = re.compile(
    r"^[-+]?(?:[0-9]+\.[0-9]*(?:[eE][-+]?[0-9]+)?"
    r"|\.[0-9]+(?:[eE][-+]?[0-9]+)?"
    r"|[0-9]+[eE][-+]?[0-9]+)$"
)
_FLOAT = "tag:yaml.org,2002:float"


class _Loader(yaml.SafeLoader):
    """The safe loader, plus YAML 1.2 floats (on this class only, not PyYAML's own)."""


# Appended after PyYAML's resolvers, so what they read as an int or a float is unchanged.
_Loader.add_implicit_resolver(_FLOAT, _YAML12_FLOAT, list("-+0123456789."))


def load_value(text: str) -> Any:
    """One YAML value (a scalar or a flow collection, as `--set` takes), read as a spec is."""
    return yaml.load(text, Loader=_Loader)  # a SafeLoader: no tag builds a Python object


# Where a value set by `--set` is: it is not in the file, whatever the file held there.
COMMAND_LINE = Location("<command line>", 1, 1)


@attrs.frozen
class SourceMap:
    """Spec path -> where its key (or list item) starts in the file; paths whose values
    came from the command line instead (`--set`) are located there."""

    file: str | None
    positions: dict[SpecPath, Location] = attrs.field(eq=False)
    overridden: frozenset[SpecPath] = attrs.field(default=frozenset(), eq=False)

    def locate(self, path: SpecPath) -> Location:
        for end in range(len(path), -1, -1):
            if tuple(path[:end]) in self.overridden:
                return COMMAND_LINE
        for end in range(len(path), -1, -1):
            found = self.positions.get(tuple(path[:end]))
            if found is not None:
                return found
        return Location(self.file, 1, 1)


# The line breaks an editor counts. YAML also breaks lines at NEL, LINE SEPARATOR and
# PARAGRAPH SEPARATOR, which editors show inside a line, so PyYAML's line numbers drift.
_EDITOR_BREAK = re.compile(r"\r\n|\r|\n")


class _Lines:
    """Locations as an editor shows them, recounted from the character offset of a mark."""

    def __init__(self, text: str, file: str | None):
        self.file = file
        self.starts = [0, *(match.end() for match in _EDITOR_BREAK.finditer(text))]

    def at(self, index: int) -> Location:
        line = bisect.bisect_right(self.starts, index)
        return Location(self.file, line, index - self.starts[line - 1] + 1)

    def mark(self, mark: yaml.Mark | None) -> Location:
        return self.at(mark.index) if mark is not None else Location(self.file, 1, 1)


class _Converter:
    def __init__(self, loader: _Loader, lines: _Lines):
        self.loader = loader
        self.lines = lines
        self.file = lines.file
        self.positions: dict[SpecPath, Location] = {}
        self.problems: list[Diagnostic] = []
        self.visited = 0

    def mark(self, path: SpecPath, node: yaml.Node) -> None:
        self.positions.setdefault(path, self.lines.mark(node.start_mark))

    def problem(self, path: SpecPath, node: yaml.Node, message: str, at_key: bool = False) -> None:
        """Report at `node`, or with at_key at the key that holds the path (if there is one)."""
        location = self.lines.mark(node.start_mark)
        if at_key:
            location = self.positions.get(path, location)
        self.problems.append(Diagnostic(path, message, location=location))

    def refuse_tag(self, path: SpecPath, node: yaml.Node) -> bool:
        """Only YAML's own plain tags are data; anything else (`!!python/...`) is refused."""
        tag = node.tag.removeprefix(_YAML_TAG)
        collection = tag in ("map", "seq", "merge")
        if tag in _PLAIN_TAGS and collection != isinstance(node, yaml.ScalarNode):
            return False
        shown = node.tag.replace(_YAML_TAG, "!!", 1)
        self.problem(path, node, f"YAML tag {shown!r} is not allowed", at_key=True)
        return True

    def convert(self, node: yaml.Node, path: SpecPath) -> Any:
        self.visited += 1
        if self.visited > MAX_NODES:
            raise _TooLarge(node)
        if len(path) > MAX_DEPTH:
            raise _TooDeep(node)
        if self.refuse_tag(path, node):
            return None
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                self.mark((*path, index), item)
                items.append(self.convert(item, (*path, index)))
            return items
        try:
            return self.loader.construct_object(node)
        except yaml.constructor.ConstructorError as exc:
            self.problem(path, node, f"cannot read value: {exc.problem}")
        except Exception:  # `!!int abc`, `!!bool maybe`, a 5000-digit integer, ...
            tag = node.tag.replace(_YAML_TAG, "!!", 1)
            self.problem(path, node, f"cannot read value: {node.value!r} is not a valid {tag}")
        return None

    def mapping(self, node: yaml.MappingNode, path: SpecPath) -> dict:
        result: dict[Any, Any] = {}
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merged = self.convert(value_node, path)
                extras = merged if isinstance(merged, list) else [merged]
                if not all(isinstance(extra, dict) for extra in extras):
                    self.problem(
                        (*path, "<<"),
                        key_node,
                        "expected a mapping or a list of "
                        f"mappings to merge, got {describe_value(merged)}",
                    )
                    continue
                for extra in extras:
                    for key, value in extra.items():
                        result.setdefault(key, value)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.problem(path, key_node, "mapping keys must be plain scalars")
                continue
            if self.refuse_tag(path, key_node):
                continue
            try:
                key = self.loader.construct_object(key_node)
            except Exception:  # a key that does not read as its tag says
                self.problem(path, key_node, f"cannot read key {key_node.value[:40]!r}")
                continue
            if not isinstance(key, str | int | float | bool) and key is not None:
                self.problem(path, key_node, f"unsupported key {key!r}")
                continue
            if key in seen:
                self.problem(
                    (*path, key),
                    key_node,
                    f"duplicate key {key!r} (first defined on line {seen[key]})",
                )
                continue
            seen[key] = self.lines.mark(key_node.start_mark).line
            self.mark((*path, key), key_node)
            result[key] = self.convert(value_node, (*path, key))
        return result


class _TooLarge(Exception):
    def __init__(self, node: yaml.Node):
        self.node = node


class _TooDeep(_TooLarge):
    pass


def parse(text: str, file: str | None = None) -> tuple[Any, SourceMap, list[Diagnostic]]:
    """YAML text -> (plain data, source map, problems). Never raises for bad YAML."""
    source = SourceMap(file, {})
    if len(text) > MAX_CHARACTERS:
        message = too_long(len(text) / 2**20)
        return None, source, [Diagnostic((), message, location=Location(file, 1, 1))]
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:  # a control character, NUL, ... anywhere in the text
        where = _Lines(text, file).at(exc.position)
        message = f"invalid YAML: character #x{exc.character:04x} is not allowed in YAML text"
        return None, source, [Diagnostic((), message, location=where)]
    lines = _Lines(text, file)
    too_deep = event_limits(text, lines)
    if too_deep is not None:
        return None, source, [too_deep]
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        where = lines.mark(exc.problem_mark or exc.context_mark)
        message = f"invalid YAML: {exc.problem or exc.context}"
        hint = _syntax_hint(exc, lines)
        return None, source, [Diagnostic((), message, hint=hint, location=where)]
    except yaml.YAMLError as exc:
        return None, source, [Diagnostic((), f"invalid YAML: {exc}", location=Location(file, 1, 1))]
    except RecursionError:
        msg = f"YAML nested too deeply (limit {MAX_DEPTH})"
        return None, source, [Diagnostic((), msg, location=Location(file, 1, 1))]
    finally:
        loader.dispose()
    if node is None:
        return None, source, [Diagnostic((), "the spec is empty", location=Location(file, 1, 1))]
    converter = _Converter(loader, lines)
    try:
        data = converter.convert(node, ())
    except _TooLarge as exc:
        where = lines.mark(exc.node.start_mark)
        if isinstance(exc, _TooDeep):
            message = f"YAML nested too deeply (limit {MAX_DEPTH} levels)"
        else:
            message = f"YAML expands to more than {MAX_NODES} nodes (an alias bomb?)"
        return None, source, [Diagnostic((), message, location=where)]
    return data, SourceMap(file, converter.positions), converter.problems


def _syntax_hint(exc: yaml.MarkedYAMLError, lines: _Lines) -> str | None:
    """PyYAML's messages name the symptom; say what usually causes it."""
    problem, context = exc.problem or "", exc.context or ""
    if "'\\t'" in problem or "\t" in problem:
        return "YAML indentation must use spaces, not tabs"
    if "mapping values are not allowed" in problem:
        return (
            "check this line's indentation against the keys above it; "
            "quote values that contain ': '"
        )
    if context.startswith("while parsing a flow") and exc.context_mark is not None:
        opener = "[" if "sequence" in context else "{"
        mark = lines.mark(exc.context_mark)
        return f"the '{opener}' at line {mark.line}, column {mark.column} is never closed"
    return None


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        # Indent list items under their key, as people write them.
        super().increase_indent(flow, False)


# A string the loader would read as a float (`"1e-3"`) must be dumped quoted.
_Dumper.add_implicit_resolver(_FLOAT, _YAML12_FLOAT, list("-+0123456789."))


def _represent_list(dumper: yaml.SafeDumper, items: list) -> yaml.Node:
    # Short lists of scalars (`shape: [8, 3]`) read better inline.
    flow = all(not isinstance(i, dict | list) for i in items) and len(items) <= 8
    return dumper.represent_sequence(_SEQ, items, flow_style=flow)


def _represent_dict(dumper: yaml.SafeDumper, mapping: dict) -> yaml.Node:
    # Small flat mappings (`{op: linear, out_features: 4}`) read better on one line.
    flat = all(not isinstance(v, dict) and not _nested_list(v) for v in mapping.values())
    width = len(", ".join(f"{k}: {v}" for k, v in mapping.items()))
    flow = flat and len(mapping) <= 6 and width <= 72
    return dumper.represent_mapping(_MAP, mapping.items(), flow_style=flow)


def _nested_list(value: Any) -> bool:
    return isinstance(value, list) and any(isinstance(i, dict | list) for i in value)


# Characters a YAML reader folds or drops inside plain and single-quoted scalars; a
# double-quoted scalar escapes them (NEL becomes \N), so they survive a round trip.
_FRAGILE = {"\x85", "\u2028", "\u2029"}


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    style = '"' if any(ch in _FRAGILE for ch in text) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(dict, _represent_dict)


def dump_data(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)

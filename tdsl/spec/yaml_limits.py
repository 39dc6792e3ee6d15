"""The limits on a spec file, enforced while it is read rather than after: its size before
reading (a 100 MB file is never read), and its node count and nesting from PyYAML's event
stream, before any node is composed (a 10 MB flow list of three million items took minutes
and gigabytes to compose before a count of its nodes could be checked)."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import yaml

from tdsl.errors import Diagnostic, Location
from tdsl.special_files import open_regular

MAX_NODES = 100_000  # a real spec has hundreds; more means an alias bomb
MAX_DEPTH = 64
MAX_CHARACTERS = 10 * 2**20  # a spec is a page or two; megabytes of it are a mistake


def event_limits(text: str, lines: Any) -> Diagnostic | None:
    """Find nesting beyond MAX_DEPTH, or more than MAX_NODES nodes, from the event stream,
    which PyYAML produces without recursion and without building anything: composing nodes
    recurses (and would overflow the stack first), and composing a 10 MB flow list of
    millions of nodes takes minutes and gigabytes before a limit could be checked."""
    # libyaml's parser (where PyYAML has it) makes the pass ~20x faster; its marks count
    # bytes, which are the characters _Lines counts only in ASCII text. It refuses nesting
    # past 1000 levels and a few oddities PyYAML reads: then PyYAML's own parser decides.
    exact = text.isascii()
    try:
        return _event_limits(text, _FastLoader, lines.mark if exact else _mark_location(lines))
    except yaml.YAMLError:
        pass
    try:
        return _event_limits(text, yaml.SafeLoader, lines.mark)
    except yaml.YAMLError:
        return None  # a syntax error: composing reports it with its location


def _event_limits(text: str, loader: Any, located: Any) -> Diagnostic | None:
    depth = nodes = 0
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, _NODE_EVENTS):
            nodes += 1
            if nodes > MAX_NODES:
                message = f"YAML has more than {MAX_NODES} nodes; a spec has hundreds"
                return Diagnostic((), message, location=located(event.start_mark))
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH + 1:  # the top-level mapping is depth 1
                message = f"YAML nested too deeply (limit {MAX_DEPTH} levels)"
                return Diagnostic((), message, location=located(event.start_mark))
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return None


_NODE_EVENTS = (yaml.ScalarEvent, yaml.CollectionStartEvent, yaml.AliasEvent)
_FastLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _mark_location(lines: Any) -> Any:
    """Locations from a mark's own line and column (libyaml's, in non-ASCII text)."""
    return lambda mark: Location(lines.file, mark.line + 1, mark.column + 1)


def read_text(path: Path) -> str:
    """File contents as text; raises OSError or UnicodeDecodeError for the caller to report:
    a FIFO or device is refused without blocking on it, and a file over the size limit
    before it is read (a 100 MB file would take 400 MB to hold as text)."""
    with open_regular(path) as handle:
        size = os.fstat(handle.fileno()).st_size
        data = handle.read(MAX_CHARACTERS + 1)  # at most: the size may change while reading
    if max(size, len(data)) > MAX_CHARACTERS:
        megabytes = max(size, len(data)) / 2**20
        raise OSError(errno.EFBIG, too_long(megabytes), str(path))
    return data.decode("utf-8")


def too_long(megabytes: float) -> str:
    """The message for a spec of `megabytes`, over the limit."""
    shown = f"{megabytes:.0f}" if megabytes >= 10.5 else f"{megabytes:.1f}"
    return f"the spec is {shown} MB; specs are limited to {MAX_CHARACTERS // 2**20} MB"

"""Python spec files: `tdsl run experiment.py` runs the file and takes its `spec`.

Running a Python file executes its code: the user asked for that by naming the file, as
with `python experiment.py`. YAML files never execute anything; nothing here is reached for
them. The file defines `spec`, a `tdsl.Spec`, or `def spec() -> tdsl.Spec` (called with no
arguments). It runs with `__name__ == "__tdsl_spec__"` (so an `if __name__ == "__main__":`
block is skipped) and its folder first on `sys.path` (sibling modules import). `--set`
overrides apply to the produced spec as to a YAML file's: the spec is turned into plain
data, overridden and read again. Anything that goes wrong is a located diagnostic: the
line of the spec file (or of the user's module) that raised, never a traceback.
"""

from __future__ import annotations

import os
import runpy
import sys
import traceback
from pathlib import Path
from typing import Any

import attrs

from tdsl import spec as S
from tdsl.errors import Diagnostic, Location
from tdsl.spec.convert import structure_spec, unstructure
from tdsl.spec.located_yaml import COMMAND_LINE
from tdsl.spec.origins import PythonSource
from tdsl.spec.overrides import overridden_paths
from tdsl.spec.value_hooks import Invalid

_TDSL = str(Path(__file__).resolve().parents[1]) + os.sep
DEFINE = "define `spec = tdsl.Spec(...)` or `def spec() -> tdsl.Spec`"


def is_python_file(source: Any) -> bool:
    return isinstance(source, str | os.PathLike) and os.fspath(source).endswith(".py")


def _raised(exc: BaseException, file: str, what: str) -> Diagnostic:
    """`what raised Type: message`, located at the deepest line of the spec file in the
    traceback, else the deepest line of user code (not tdsl's)."""
    if isinstance(exc, SyntaxError) and exc.filename:
        where = Location(exc.filename, exc.lineno or 1, exc.offset or 1)
        return Diagnostic((), f"{what} has a syntax error: {exc.msg}", location=where)
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if _same(f.filename, file)]
    users = [f for f in frames if not f.filename.startswith((_TDSL, "<frozen"))]
    frame = (mine or users or [None])[-1]
    where = Location(frame.filename, frame.lineno or 1, 1) if frame else Location(file, 1, 1)
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    message = f"{what} raised {type(exc).__name__}" + (f": {reason}" if reason else "")
    return Diagnostic((), message, location=where)


def _same(a: str, b: str) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def _execute(file: str) -> dict[str, Any]:
    folder = str(Path(file).resolve().parent)
    sys.path.insert(0, folder)
    try:
        return runpy.run_path(file, run_name="__tdsl_spec__")
    finally:
        if folder in sys.path:
            sys.path.remove(folder)


def read_python_spec(
    source: str | os.PathLike, overrides: Any = None
) -> tuple[S.Spec | None, list[Diagnostic]]:
    """(spec or None, located diagnostics) from a Python spec file; never raises for a
    mistake in the file (KeyboardInterrupt and SystemExit pass through)."""
    file = os.fspath(source)
    top = Location(file, 1, 1)
    if not Path(file).is_file():
        what = "not a regular file" if Path(file).exists() else "no such file"
        return None, [Diagnostic((), what, location=top)]
    try:
        namespace = _execute(file)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # the user's code failed: where and why, in one line
        return None, [_raised(exc, file, "the spec file")]
    found = namespace.get("spec")
    if found is None:
        return None, [Diagnostic((), f"the spec file defines no `spec`: {DEFINE}", location=top)]
    if callable(found) and not isinstance(found, S.Spec):
        try:
            found = found()
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            return None, [_raised(exc, file, "spec()")]
    if not isinstance(found, S.Spec):
        message = f"`spec` is not a tdsl.Spec (got {type(found).__name__}): {DEFINE}"
        return None, [Diagnostic((), message, location=top)]
    if overrides is None:
        return attrs.evolve(found, source=PythonSource(file, found)), []
    return _overridden(found, file, overrides)


def _overridden(built: S.Spec, file: str, overrides: Any) -> tuple[S.Spec | None, list[Diagnostic]]:
    """`--set` on a built spec: as plain data, overridden, and read again."""
    data = unstructure(built)
    arrays = built.data if isinstance(built.data, S.Arrays) else None
    if arrays is not None:  # arrays have no plain form; they stay as they are
        data["data"] = {"kind": "rings"}
    data, problems = overrides(before := data)
    if problems:
        return None, problems
    changed = overridden_paths(before, data)
    if arrays is not None and any(path[:1] == ("data",) for path in changed):
        message = "data given as tdsl.Arrays cannot be changed with --set; change the spec file"
        return None, [Diagnostic(("data",), message, location=COMMAND_LINE)]
    source = PythonSource(file, built, changed)
    try:
        spec = structure_spec(data)
    except Invalid as exc:
        return None, [attrs.evolve(p, location=source.locate(p.path)) for p in exc.problems]
    if arrays is not None:
        spec = attrs.evolve(spec, data=arrays)
    return attrs.evolve(spec, source=source), []

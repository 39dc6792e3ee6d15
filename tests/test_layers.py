"""The package layout is a layered DAG: each stage imports only from stages below it.

The order is the one `docs/design.md` lists; every import of a `tdsl` module (top-level or
inside a function) is read from the source with `ast`, so a lazy import running back up
fails here as well.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tdsl"

# Bottom to top. Packages on one level (model and data) must not import each other.
LAYERS = [
    {"wording"},
    {"errors"},
    {"special_files"},
    {"registry"},
    {"spec"},
    {"model", "data"},
    {"check"},
    {"train"},
    {"runs"},
    {"__init__", "__main__"},
]
LEVEL = {name: level for level, names in enumerate(LAYERS) for name in names}


def stage_of(module: str) -> str:
    """`tdsl.check.pipeline` -> `check`; `tdsl` (the package itself) -> `__init__`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1] if len(parts) > 2 else [*parts[:-1], "__init__"]
    return ".".join(parts)


def tdsl_imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "tdsl"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "tdsl":  # `from tdsl import spec as S` names a package
                found += [(node.lineno, f"tdsl.{a.name}") for a in node.names]
            elif node.module.split(".")[0] == "tdsl":
                found.append((node.lineno, node.module))
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_stage_is_a_regular_package():
    """Without `__init__.py` a folder is a namespace package, which setuptools' package
    discovery leaves out of a (non-editable) install."""
    folders = {p.parent for p in MODULES}
    assert [f for f in folders if not (f / "__init__.py").exists()] == []


def test_every_module_sits_in_a_stage():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == ["__init__.py", "__main__.py", "errors.py", "special_files.py", "wording.py"]
    for path in MODULES:
        assert stage_of(module_name(path)) in LEVEL, path


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_runs_back_up(path):
    mine = stage_of(module_name(path))
    for line, imported in tdsl_imports(path):
        theirs = stage_of(imported)
        if theirs == mine:
            continue
        assert LEVEL[theirs] < LEVEL[mine], (
            f"{path.relative_to(PACKAGE)}:{line} imports {imported}: "
            f"{mine} (level {LEVEL[mine]}) may only import from levels below it, "
            f"and {theirs} is level {LEVEL[theirs]}"
        )


def test_the_checker_sees_upward_and_lazy_imports(tmp_path):
    source = tmp_path / "probe.py"
    source.write_text("def f():\n    from tdsl.runs.cli import main\nfrom tdsl import spec as S\n")
    assert sorted(tdsl_imports(source)) == [(2, "tdsl.runs.cli"), (3, "tdsl.spec")]

"""The README's code blocks still do what they show.

- ```python blocks run, each in a fresh namespace from the repository root.
- ```console blocks: each `$ ` line is run (`tdsl` as `python -m tdsl` with this interpreter)
  and must print the lines under it; a `...` line stands for any number of lines.
- ```yaml blocks: a whole spec (name, data, model and loss) must validate, and equal the file
  its first comment names (`# specs/ring_dnn.yaml`); a section or two must validate once put
  into a whole spec: the README's first, or one in specs/. A composed spec (`base:`) must be
  the text of the file its first comment names, and that file must validate.
- ```sh blocks are not run (they install, or train for minutes); the repository files they
  name (`specs/...yaml`, `bench/...py`) must exist.

`<!-- not-run: REASON -->` on the line before a fence skips running it: a python block so
marked is still compiled, its imports run and its `module.name`s looked up; a console block
is skipped; a yaml section need only load (it may name user code that does not exist).
"""

from __future__ import annotations

import ast
import functools
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

import tdsl
from tdsl.spec.located_yaml import dump_data, parse

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SPEC_FILES = sorted((ROOT / "specs").glob("*.yaml")) + sorted(
    (ROOT / "specs" / "models").glob("*.yaml")
)
LANGUAGES = {"python", "console", "yaml", "sh", "text", ""}
_OPENING = re.compile(r"^```([\w-]*)\s*$")
_NOT_RUN = re.compile(r"^<!--\s*not-run:\s*(\S.*?)\s*-->\s*$")
_SECONDS = re.compile(r"\(\d+(?:\.\d+)?s\)")  # timings such as (0.05s) differ every run


class Block(NamedTuple):
    language: str
    line: int  # of the opening fence
    text: str
    not_run: str | None  # the reason given by a marker, or None


def readme_blocks() -> list[Block]:
    lines = README.read_text(encoding="utf-8").splitlines()
    blocks, index = [], 0
    while index < len(lines):
        opening = _OPENING.match(lines[index])
        if opening is None:
            index += 1
            continue
        end = lines.index("```", index + 1)
        marker = _NOT_RUN.match(lines[index - 1]) if index else None
        text = "\n".join(lines[index + 1 : end]) + "\n"
        blocks.append(Block(opening.group(1), index + 1, text, marker and marker.group(1)))
        index = end + 1
    return blocks


BLOCKS = readme_blocks()


def _of(language: str) -> list:
    return [pytest.param(b, id=f"README.md:{b.line}") for b in BLOCKS if b.language == language]


def test_every_block_is_one_this_test_reads():
    assert {b.language for b in BLOCKS} <= LANGUAGES
    for language in ("python", "console", "yaml", "sh"):
        assert any(b.language == language for b in BLOCKS), language
    marked = [b for b in BLOCKS if b.not_run is not None]
    assert all(b.language in ("python", "console", "yaml") for b in marked)
    lines = README.read_text(encoding="utf-8").splitlines()
    markers = [i for i, line in enumerate(lines, 1) if "not-run" in line]
    assert markers == [b.line - 1 for b in marked], "a not-run marker goes right above a fence"


# --- python ----------------------------------------------------------------------------------


@pytest.mark.parametrize("block", _of("python"))
def test_python_block_runs(block: Block, monkeypatch, capsys):
    code = compile(block.text, f"README.md:{block.line}", "exec")
    monkeypatch.chdir(ROOT)
    if block.not_run is not None:
        _check_names(block)
        return
    exec(code, {"__name__": "__readme__"})  # noqa: S102 (the README's own code)
    capsys.readouterr()


def _check_names(block: Block) -> None:
    """Run a block's imports and look up every `module.name` it uses on an imported module."""
    tree = ast.parse(block.text)
    namespace: dict = {}
    imports = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    exec(compile(ast.Module(imports, []), "imports", "exec"), namespace)  # noqa: S102
    modules = {k: v for k, v in namespace.items() if type(v) is type(sys)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            module = modules.get(node.value.id)
            if module is not None:
                where = f"README.md:{block.line + node.lineno}"
                assert hasattr(module, node.attr), f"{where}: no {node.value.id}.{node.attr}"


# --- console ---------------------------------------------------------------------------------


def _commands(text: str) -> list[tuple[str, list[str]]]:
    """`$ command` lines, each with the output lines shown under it."""
    commands: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("$ "):
            commands.append((line[2:], []))
        else:
            assert commands, f"output before the first command: {line!r}"
            commands[-1][1].append(line)
    return commands


def _shell(command: str) -> str:
    python = f'"{sys.executable}" -m tdsl'
    return re.sub(r"(^|&& |; |\| )tdsl(?= )", lambda m: m.group(1) + python, command)


def _normalise(lines: list[str]) -> list[str]:
    return [_SECONDS.sub("(Ns)", line.rstrip()) for line in lines]


def _matches(shown: list[str], printed: list[str]) -> bool:
    """The printed lines are the shown ones, with any number of lines where `...` stands."""
    pattern = "".join(
        r"(?:[^\n]*\n)*?" if line == "..." else re.escape(line) + r"\n" for line in shown
    )
    return re.fullmatch(pattern, "".join(line + "\n" for line in printed)) is not None


@functools.cache
def _started() -> dict[tuple[int, str], subprocess.Popen]:
    """Every console command of the README, all started at once: most of each one's time
    is importing torch."""
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    return {
        (block.line, command): subprocess.Popen(
            _shell(command),
            shell=True,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for block in BLOCKS
        if block.language == "console" and block.not_run is None
        for command, _ in _commands(block.text)
    }


@pytest.mark.parametrize("block", _of("console"))
def test_console_block_prints_what_it_shows(block: Block):
    if block.not_run is not None:
        pytest.skip(block.not_run)
    for command, shown in _commands(block.text):
        process = _started()[block.line, command]
        printed, _ = process.communicate(timeout=120)
        assert process.returncode in (0, 1), f"$ {command} exited {process.returncode}\n{printed}"
        shown_lines, printed_lines = _normalise(shown), _normalise(printed.splitlines())
        assert _matches(shown_lines, printed_lines), (
            f"README.md:{block.line}: $ {command}\nshows:\n"
            + "\n".join(shown_lines)
            + "\nprints:\n"
            + "\n".join(printed_lines)
        )


def test_output_matching():
    assert _matches(["a", "...", "d"], ["a", "b", "c", "d"])
    assert _matches(["a", "...", "d"], ["a", "d"])
    assert _matches(["a", "..."], ["a", "b"])
    assert not _matches(["a", "b"], ["a", "b", "c"])
    assert not _matches(["a", "...", "d"], ["a", "b", "c"])
    assert not _matches(["x", "..."], ["a", "x"])
    assert _normalise(["epoch 1/2 loss=0.5 (0.05s)  "]) == ["epoch 1/2 loss=0.5 (Ns)"]
    assert _shell("cd x && tdsl validate a.yaml").endswith("-m tdsl validate a.yaml")


# --- yaml ------------------------------------------------------------------------------------

_WHOLE = {"name", "data", "model", "loss"}


def _data(block: Block) -> dict:
    data, _, problems = parse(block.text, f"README.md:{block.line}")
    assert not problems, [p.format() for p in problems]
    assert isinstance(data, dict)
    return data


def _first_whole_spec() -> dict:
    return next(_data(b) for b in BLOCKS if b.language == "yaml" and set(_data(b)) >= _WHOLE)


def _bases(section: dict) -> list[tuple[dict, Path]]:
    """Whole specs to put a section into, each with the folder its paths are relative to:
    the README's own and the shipped ones, those that hold the same section first."""
    shipped = [(_data_of(path.read_text(encoding="utf-8")), path.parent) for path in SPEC_FILES]
    bases = [(_first_whole_spec(), ROOT), *shipped]
    return sorted(bases, key=lambda base: -sum(base[0].get(k) == v for k, v in section.items()))


def _data_of(text: str) -> dict:
    data, _, problems = parse(text)
    assert not problems and isinstance(data, dict)
    return data


@pytest.mark.parametrize("block", _of("yaml"))
def test_yaml_block_is_a_valid_spec_or_section(block: Block, tmp_path, monkeypatch):
    data = _data(block)
    if "base" in data:  # a composed spec: its bases are files, so it is shown as one
        named = re.match(r"# (\S+\.ya?ml)\n", block.text)
        assert named, f"README.md:{block.line}: a composed spec names its file"
        path = ROOT / named.group(1)
        assert path.read_text(encoding="utf-8") == block.text.split("\n", 1)[1]
        report = tdsl.validate(path)
        assert report.ok, "\n".join(d.format() for d in report.errors)
        return
    if set(data) >= _WHOLE:
        path = tmp_path / "spec.yaml"
        path.write_text(block.text, encoding="utf-8")
        report = tdsl.validate(path)
        assert report.ok, "\n".join(d.format() for d in report.errors)
        named = re.match(r"# (\S+\.ya?ml)\n", block.text)
        if named and (ROOT / named.group(1)).is_file():
            assert tdsl.load(path) == tdsl.load(ROOT / named.group(1))
        return
    sections = {f.name for f in tdsl.Spec.__attrs_attrs__ if not f.metadata.get("internal")}
    assert set(data) <= sections, f"not spec sections: {sorted(set(data) - sections)}"
    if block.not_run is not None:  # it names things that do not exist here: it must load
        tdsl.load(dump_data({**_first_whole_spec(), **data}))  # raises naming each problem
        return
    problems = []
    for base, folder in _bases(data):
        monkeypatch.chdir(folder)
        report = tdsl.validate(dump_data({**base, **data}))
        if report.ok:
            return
        problems.append(f"in {base['name']}: " + "; ".join(d.format() for d in report.errors))
    pytest.fail(f"README.md:{block.line} fits no whole spec:\n" + "\n".join(problems))


# --- sh --------------------------------------------------------------------------------------

_REPO_FILE = re.compile(r"(?<![\w/.-])((?:specs|bench|tools|examples)/[\w./-]+\.(?:py|ya?ml))\b")


@pytest.mark.parametrize("block", _of("sh"))
def test_sh_block_names_files_that_exist(block: Block):
    for name in _REPO_FILE.findall(block.text):
        assert (ROOT / name).is_file(), f"README.md:{block.line}: no file {name}"

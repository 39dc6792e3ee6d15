"""Finding one's way: `tdsl list`, help for every option, a quick `tdsl --help`, and a
lazily imported `tdsl` package that still offers every public name."""

import subprocess
import sys
from pathlib import Path

import pytest

import tdsl
from tdsl.runs.cli import _parser, main
from tdsl.runs.cli_help import undocumented
from tdsl.runs.listing import listing

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("what", "name", "shown"),
    [
        ("ops", "conv2d", "in_channels=(inferred) out_channels kernel_size stride=1 padding=0"),
        ("ops", "relu", "inplace=false"),
        ("losses", "cross_entropy", "label_smoothing=0.0"),
        ("metrics", "accuracy", "threshold=0.5"),
        ("optimizers", "adam", "lr=0.001"),
        ("schedules", "step", "step_size gamma=0.1"),
        ("data", "csv", "skip_rows=0 header=true names=[]"),
    ],
)
def test_list_shows_arguments_with_defaults(what, name, shown):
    (entry,) = [e for e in listing(what) if name in e.names]
    assert " ".join(entry.arguments).startswith(shown) or shown in " ".join(entry.arguments)
    assert entry.doc and "\n" not in entry.doc


def test_list_filters_by_substring(capsys):
    assert main(["list", "ops", "conv"]) == 0
    out = capsys.readouterr().out
    heads = [line.split()[0] for line in out.splitlines() if not line.startswith(" ")]
    assert "conv2d" in heads and "conv_transpose1d" in heads and "linear" not in heads
    assert all("conv" in line for line in heads)
    assert main(["list", "losses", "nothing-like-this"]) == 1
    assert capsys.readouterr().err == "no losses named like 'nothing-like-this'\n"


def test_every_option_has_help_and_every_command_an_example():
    assert undocumented(_parser()) == []


def test_help_does_not_import_torch():
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "tdsl", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0 and "usage: tdsl" in done.stdout
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()]
    assert imported and not [m for m in imported if m.split(".")[0] == "torch"]


def test_every_public_name_imports_from_a_fresh_interpreter():
    names = ", ".join(tdsl.__all__)
    code = f"from tdsl import {names}; import tdsl; print(len([{names}]))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(len(tdsl.__all__))
    for name in tdsl.__all__:
        assert getattr(tdsl, name) is not None and name in dir(tdsl)
    assert tdsl.Spec is tdsl.spec.Spec and tdsl.load is tdsl.spec.load_dump.load
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = tdsl.nothing

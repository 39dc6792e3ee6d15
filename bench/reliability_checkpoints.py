"""The checkpoint and data part of `bench/reliability.py`: checkpoints damaged in the ways
disks and interrupted copies damage them, then resumed and evaluated by the real command;
and data files holding NaN or infinities at random places, validated.

Each function does the thing for real and returns markdown table rows:
(check, tried, handled as intended, failures).
"""

from __future__ import annotations

import contextlib
import io
import shutil
from collections.abc import Callable
from pathlib import Path
from random import Random

import numpy as np
import pytest
import torch
from helpers import Interrupt
from test_data_sources import spec_for
from test_runs import small_spec

import tdsl
from tdsl.runs.cli import main
from tdsl.runs.directories import run

Row = tuple[str, int, str, str]


def _flip_in_tensor(data: bytearray, path: Path, chance: Random) -> None:
    weight = torch.load(path, weights_only=True)["model"]["linear1.weight"].numpy().tobytes()
    at = data.find(weight)
    data[at + chance.randrange(len(weight))] ^= 1 << chance.randrange(8)


def _flip_in_pickle(data: bytearray, path: Path, chance: Random) -> None:
    at = data.find(b"history")  # a key inside the pickled payload
    data[at + chance.randrange(7)] ^= 0x20


DAMAGES: dict[str, Callable[[bytearray, Path, Random], bytes]] = {
    "a bit flipped in a tensor": lambda d, p, c: (_flip_in_tensor(d, p, c), d)[1],
    "a bit flipped in the pickle": lambda d, p, c: (_flip_in_pickle(d, p, c), d)[1],
    "cut to half": lambda d, p, c: d[: len(d) // 2],
    "last 100 bytes cut": lambda d, p, c: d[:-100],
    "empty": lambda d, p, c: b"",
    "random bytes": lambda d, p, c: bytes(c.randrange(256) for _ in range(len(d))),
}


def _quiet(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    return code, err.getvalue()


def damaged_checkpoints(folder: Path, chance: Random) -> list[Row]:
    """Each damage done to `last.pt` (then `resume`) and to `best.pt` (then `eval`) of a run
    stopped after its first epoch; the message must be one line naming the file, and the
    intact other checkpoint must be offered and work."""
    folder.mkdir(parents=True)
    source = folder / "source"
    with pytest.raises(KeyboardInterrupt):
        run(small_spec(epochs=3), source, callbacks=[Interrupt(after=1)], progress=False)
    tried = refused = offered = recovered = silent = tracebacks = 0
    for index, damage in enumerate(DAMAGES.values()):
        for which, command, other in (
            ("last", ["resume"], ["resume", "--checkpoint", "best"]),
            ("best", ["eval"], ["eval", "--checkpoint", "last"]),
        ):
            directory = Path(shutil.copytree(source, folder / f"{which}{index}"))
            path = directory / "checkpoints" / f"{which}.pt"
            path.write_bytes(bytes(damage(bytearray(path.read_bytes()), path, chance)))
            tried += 1
            code, err = _quiet([command[0], str(directory), *command[1:]])
            lines = [line for line in err.splitlines() if line.startswith("error:")]
            silent += code == 0
            tracebacks += "Traceback" in err
            named = len(lines) == 1 and str(path) in lines[0]
            said = any(w in err for w in ("checksum does not match", "truncated"))
            refused += code == 1 and named and said
            offered += f"checkpoints/{'best' if which == 'last' else 'last'}.pt is intact" in err
            again, _ = _quiet([other[0], str(directory), *other[1:]])
            recovered += again == 0
    old = Path(shutil.copytree(source, folder / "old"))
    for sidecar in (old / "checkpoints").glob("*.sha256"):
        sidecar.unlink()
    old_ok = _quiet(["resume", str(old)])[0] == 0
    return [
        (
            f"damaged checkpoints ({', '.join(DAMAGES)}; last.pt then resume, best.pt then "
            "eval), and a run from before checksums",
            tried + 1,
            f"{refused} refused in one line naming the file and what failed; {offered} offered "
            f"the intact other checkpoint, {recovered} went on with it; old run "
            f"{'resumed' if old_ok else 'FAILED'}",
            f"{silent} loaded silently, {tracebacks} tracebacks, {tried - refused} unclear",
        )
    ]


def nonfinite_data(folder: Path, chance: Random, cases: int = 12) -> Row:
    """.npz files with NaN, inf or -inf at a random row and column: `validate` must name the
    file, that row and that column, at the feature's spec path."""
    folder.mkdir(parents=True)
    located = 0
    for index in range(cases):
        rows, columns = chance.randrange(20, 400), chance.randrange(1, 9)
        x = np.random.default_rng(index).normal(size=(rows, columns)).astype(np.float32)
        row, column = chance.randrange(rows), chance.randrange(columns)
        x[row, column] = chance.choice([np.nan, np.inf, -np.inf])
        path = folder / f"d{index}.npz"
        np.savez(path, x=x, y=(np.arange(rows) % 2).astype(np.float32))
        data = tdsl.Tensors(file=str(path), features=["x"], target="y", target_kind="binary")
        report = tdsl.validate(spec_for(data, shape=(columns,)))
        located += any(
            d.path == ("data", "features", 0)
            and str(path) in d.message
            and f"at row {row}, column {column} " in d.message
            for d in report.errors
        )
    return (
        "data files with NaN or an infinity at a random cell (.npz, validate)",
        cases,
        f"{located} located at the feature naming file, row and column",
        f"{cases - located} missed or misplaced",
    )

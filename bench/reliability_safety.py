"""Rows of bench/reliability.py for the adversarial cases: concurrent runs into one folder
and default-named runs started together, FIFOs where tdsl reads files, symlinked run
folders, and spec files built to exhaust the YAML parser. Every case is a real `tdsl`
process, timed out (and counted as a hang) after HANG_LIMIT seconds."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HANG_LIMIT = 120

TINY = """name: tiny
data: {kind: rings, n_positive: 20, n_negative: 20, split: {train: 0.5, val: 0.5}}
model: {inputs: [{shape: [2]}], layers: [{op: linear, out_features: 1}]}
loss: bce_with_logits
optimizer: {kind: sgd, lr: 0.1}
train: {epochs: 1, batch_size: 20}
"""


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tdsl", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    )


def _finish(process: subprocess.Popen) -> tuple[str, int, str]:
    """(outcome, exit code, stderr): 'hang' when it ran past HANG_LIMIT."""
    began = time.monotonic()
    while process.poll() is None and time.monotonic() - began < HANG_LIMIT:
        time.sleep(0.05)
    if process.poll() is None:
        process.kill()
        process.communicate()
        return "hang", -9, ""
    _, err = process.communicate()
    outcome = "crash" if "Traceback" in err else "ok"
    return outcome, process.returncode, err


def concurrent_rows(folder: Path, count: int) -> list[tuple]:
    folder.mkdir(parents=True)
    (folder / "tiny.yaml").write_text(TINY)
    same = [_start(["run", "tiny.yaml", "--out", "shared"], folder) for _ in range(count)]
    results = [_finish(p) for p in same]
    trained = sum(code == 0 for _, code, _ in results)
    refused = sum(
        code == 1 and ("in use by another tdsl process" in err or "already holds a run" in err)
        for _, code, err in results
    )
    other = count - trained - refused
    first = (
        f"{count} `tdsl run` at once into one --out",
        count,
        f"{trained} trained, {refused} refused with a message",
        f"{other} other ({sum(r[0] == 'hang' for r in results)} hang)",
    )
    (folder / "named").mkdir()
    (folder / "named" / "tiny.yaml").write_text(TINY)
    named = [_start(["run", "tiny.yaml"], folder / "named") for _ in range(count)]
    results = [_finish(p) for p in named]
    finished = list((folder / "named" / "runs").glob("*/final.json"))
    second = (
        f"{count} default-named runs of one spec at once",
        count,
        f"{sum(code == 0 for _, code, _ in results)} trained into "
        f"{len(finished)} distinct directories",
        f"{sum(code != 0 for _, code, _ in results)} failed",
    )
    return [first, second]


def _fifo_cases(folder: Path) -> dict[str, tuple[list[str], Path]]:
    """Case -> (tdsl arguments, working directory), each reading a FIFO somewhere."""
    folder.mkdir(parents=True)
    (folder / "tiny.yaml").write_text(TINY)
    subprocess.run(
        [sys.executable, "-m", "tdsl", "run", "tiny.yaml", "--out", "run"],
        cwd=folder,
        capture_output=True,
        check=True,
    )
    cases: dict[str, tuple[list[str], Path]] = {}
    images = folder / "images"
    shutil.copytree(ROOT / "specs" / "data" / "images", images)
    os.mkfifo(next(p for p in sorted(images.iterdir()) if p.is_dir()) / "fifo.png")
    image_spec = (ROOT / "specs" / "image_cnn.yaml").read_text()
    (folder / "images.yaml").write_text(image_spec.replace("data/images", str(images)))
    cases["image folder"] = (["validate", "images.yaml"], folder)
    os.mkfifo(folder / "table.csv")
    csv = TINY.replace(
        "{kind: rings, n_positive: 20, n_negative: 20, split: {train: 0.5, val: 0.5}}",
        "{kind: csv, file: table.csv, target: y, target_kind: binary, columns: [a, b]}",
    )
    (folder / "csv.yaml").write_text(csv)
    cases["CSV file"] = (["validate", "csv.yaml"], folder)
    os.mkfifo(folder / "spec.yaml")
    cases["spec file"] = (["validate", "spec.yaml"], folder)
    os.mkfifo(folder / "input.npy")
    cases["predict input"] = (
        ["predict", "run", "--input", "input.npy", "--output", "out.csv"],
        folder,
    )
    for name in ("best.pt", "transforms.json"):
        run = folder / f"run-{name}"
        shutil.copytree(folder / "run", run)
        target = run / ("checkpoints" if name.endswith(".pt") else "") / name
        target.unlink(missing_ok=True)
        os.mkfifo(target)
        cases[name] = (["eval", run.name], folder)
    return cases


def fifo_row(folder: Path) -> tuple:
    if not hasattr(os, "mkfifo"):
        return ("FIFOs where files are read", 0, "skipped: no FIFOs here", "")
    cases = _fifo_cases(folder)
    started = {name: _start(args, cwd) for name, (args, cwd) in cases.items()}
    results = {name: _finish(process) for name, process in started.items()}
    refused = [n for n, (what, code, _) in results.items() if what == "ok" and code == 1]
    bad = {n: r[0] if r[0] != "ok" else f"exit {r[1]}" for n, r in results.items()}
    bad = {n: why for n, why in bad.items() if n not in refused}
    return (
        f"FIFOs where tdsl reads ({', '.join(cases)})",
        len(cases),
        f"{len(refused)} refused with a message",
        ", ".join(f"{n}: {why}" for n, why in bad.items()) or "0 hang, 0 crash",
    )


def symlink_row(folder: Path) -> tuple:
    folder.mkdir(parents=True)
    (folder / "tiny.yaml").write_text(TINY.replace("epochs: 1", "epochs: 2"))
    outside = folder / "outside"
    outside.mkdir()
    attempts: dict[str, Callable[[], subprocess.Popen]] = {}
    subprocess.run(
        [sys.executable, "-m", "tdsl", "run", "tiny.yaml", "--out", "done"],
        cwd=folder,
        capture_output=True,
        check=True,
    )
    (folder / "done" / "checkpoints").rename(outside / "checkpoints")
    (folder / "done" / "checkpoints").symlink_to(outside / "checkpoints")
    attempts["resume, checkpoints/ linked out"] = lambda: _start(["resume", "done"], folder)
    (folder / "fresh").mkdir()
    (folder / "fresh" / "tensorboard").symlink_to(outside)
    attempts["new run, tensorboard/ linked out"] = lambda: _start(
        ["run", "tiny.yaml", "--out", "fresh"], folder
    )
    before = sorted(p.name for p in outside.rglob("*"))
    results = {name: _finish(start()) for name, start in attempts.items()}
    refused = sum(code == 1 and what == "ok" for what, code, _ in results.values())
    written = sorted(p.name for p in outside.rglob("*")) != before
    return (
        "run folders that are symlinks out of the run",
        len(attempts),
        f"{refused} refused, nothing written through the links: {not written}",
        f"{len(attempts) - refused} not refused",
    )


def yaml_rows(folder: Path) -> list[tuple]:
    folder.mkdir(parents=True)
    items = (int(9.8 * 2**20) - 40) // 3
    (folder / "flow.yaml").write_text("name: x\nmodel: {layers: [" + "1, " * items + "]}\n")
    with open(folder / "huge.yaml", "wb") as file:
        file.truncate(100 * 2**20)
    rows = []
    for name, what in (("flow.yaml", "9.8 MB flow list"), ("huge.yaml", "100 MB spec file")):
        began = time.monotonic()
        with open(folder / "err.txt", "w+") as err_file:  # validate prints to stdout
            process = subprocess.Popen(
                [sys.executable, "-m", "tdsl", "validate", name],
                cwd=folder,
                stdout=err_file,
                stderr=subprocess.STDOUT,
            )
            _, status, usage = os.wait4(process.pid, 0)  # its own peak memory, not the others'
            process.returncode = code = os.waitstatus_to_exitcode(status)
            seconds = time.monotonic() - began
            err_file.seek(0)
            err = err_file.read()
        peak = usage.ru_maxrss / 1024  # Linux: kilobytes
        first = (err.strip().splitlines() or ["(nothing)"])[0].split(": error: ")[-1]
        rows.append(
            (
                f"spec file: {what} (`tdsl validate`)",
                1,
                f"refused in {seconds:.1f} s at {peak:.0f} MB peak: {first}",
                "none" if code == 1 and "Traceback" not in err else f"exit {code}",
            )
        )
    return rows


def safety_rows(folder: Path, quick: bool, say: Callable[[str], None]) -> list[tuple]:
    say("concurrent runs")
    rows = concurrent_rows(folder / "concurrent", 4 if quick else 8)
    say("FIFOs, symlinks and huge YAML")
    rows.append(fifo_row(folder / "fifo"))
    rows.append(symlink_row(folder / "links"))
    rows += yaml_rows(folder / "yaml")
    return rows


if __name__ == "__main__":  # these rows alone: python bench/reliability_safety.py [--quick]
    import tempfile

    with tempfile.TemporaryDirectory(prefix="tdsl-safety-") as tmp:
        found = safety_rows(Path(tmp), "--quick" in sys.argv, lambda t: print("...", t))
    for row in found:
        print("| " + " | ".join(map(str, row)) + " |")

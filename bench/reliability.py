"""Reliability figures, measured: malformed and fuzzed specs, runs killed or failing, and
imports of user code refused. Prints a markdown table to quote in the README.

Run: .venv/bin/python bench/reliability.py [--quick] [--seed N]
(about two minutes on 2 cores, --quick under one; more on a busy machine. Needs the test
dependencies, `pip install -e '.[dev]'`: it reuses the test suite's helpers and mutations.)

Every figure counts things that were done just now: each malformed file is validated by
`tdsl validate` under a time limit, each fuzz mutation and random spec is validated, each
run is really killed with SIGKILL or SIGTERM and resumed by a new process (after its first
kill, always once it has written a checkpoint), and its last checkpoint is compared bitwise
with an uninterrupted run; each damaged checkpoint is resumed or evaluated by the command.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from reliability_checkpoints import damaged_checkpoints, nonfinite_data  # noqa: E402
from reliability_runs import interrupted_runs, nan_runs, refused_imports  # noqa: E402
from reliability_safety import safety_rows  # noqa: E402
from test_fuzz import Hang, _check_report, _hard_limit, _validate, mutated  # noqa: E402
from test_malformed import HANG_PRONE  # noqa: E402

from tdsl.runs.cli import main  # noqa: E402

CORPUS = sorted((ROOT / "tests" / "corpus" / "invalid").glob("*.yaml"))
SPEC_FILES = sorted((ROOT / "specs").glob("*.yaml"))
# A clean answer: every line is `FILE:LINE:COL: error|warning: PATH: message` or its hint.
LOCATED = re.compile(r"^.+?:\d+:\d+: (error|warning): .+$")
# Subprocess cases that may hang (huge, nested 100,000 deep, an alias bomb, a FIFO).
HANG_CASES = ["fifty_megabytes", "alias_bomb", "nested_100000_lists", "nested_100000_unclosed"]
# Seconds before an input counts as a hang: generous, since the 2-core machine this runs on is
# also busy with the hang-prone processes (a right answer takes a few seconds at most).
HANG_LIMIT = 60


def validate_file(path: Path, seconds: dict[str, float]) -> str:
    """`tdsl validate PATH` in this process: rejected, valid, unlocated, crash or hang; its
    time goes into `seconds`."""
    out, err = io.StringIO(), io.StringIO()
    began = time.monotonic()
    try:
        with (
            warnings.catch_warnings(),
            _hard_limit(HANG_LIMIT),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            warnings.simplefilter("ignore")
            code = main(["validate", str(path)])
    except Hang:
        return "hang"
    except SystemExit as exc:
        code = exc.code
    except Exception:
        return "crash"
    finally:
        seconds[path.name] = time.monotonic() - began
    return classify(code, out.getvalue(), err.getvalue())


def classify(code: object, out: str, err: str) -> str:
    if "Traceback" in out + err:
        return "crash"
    if code == 0:
        return "valid"
    # Besides the located lines: their hints, and where a composed spec's base was included.
    extra = ("    hint: ", "    included from ")
    heads = [line for line in out.splitlines() if not line.startswith(extra)]
    clean = code == 1 and heads and all(LOCATED.match(line) for line in heads)
    return "rejected" if clean and not err.strip() else "unlocated"


def generated_inputs(folder: Path, chance: random.Random, count: int) -> list[Path]:
    """Random bytes, and the real specs cut short or with bytes replaced at random."""
    (folder / "data").symlink_to(ROOT / "specs" / "data")  # so their data paths resolve
    made = []
    for index in range(count):
        texts = [spec.read_bytes() for spec in SPEC_FILES]
        original = chance.choice(texts)
        kind = index % 3
        if kind == 0:
            data = chance.randbytes(chance.randint(1, 4096))
        elif kind == 1:
            data = original[: chance.randint(0, len(original) - 1)]
        else:
            data = bytearray(original)
            for _ in range(chance.randint(1, 4)):
                where = chance.randrange(len(data))
                data[where] = chance.choice(b"\x00\t\n:[]{}&*!#'\"-|>%@`\xff\xc3")
        path = folder / f"generated_{index:03d}.yaml"
        path.write_bytes(bytes(data))
        made.append(path)
    return made


def start_hang_prone(folder: Path) -> dict[str, tuple[subprocess.Popen, float]]:
    started = {}
    for name in HANG_CASES:
        path = folder / f"{name}.yaml"
        path.write_bytes(HANG_PRONE[name]())
        command = [sys.executable, "-m", "tdsl", "validate", str(path)]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace"
        )
        started[name] = (process, time.monotonic())
    if hasattr(os, "mkfifo"):  # a named pipe no one writes to: reading it would block
        os.mkfifo(folder / "fifo.yaml")
        command = [sys.executable, "-m", "tdsl", "validate", str(folder / "fifo.yaml")]
        started["fifo"] = (
            subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
            time.monotonic(),
        )
    return started


def finish_hang_prone(started: dict[str, tuple[subprocess.Popen, float]]) -> Counter:
    outcomes: Counter = Counter()
    for process, began in started.values():
        try:
            out, err = process.communicate(
                timeout=max(1.0, HANG_LIMIT - (time.monotonic() - began))
            )
            outcomes[classify(process.returncode, out, err)] += 1
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            outcomes["hang"] += 1
    return outcomes


def fuzz(examples_per_spec: int, random_specs: int, seed: int) -> tuple[Counter, Counter]:
    """(outcomes of mutated real specs, outcomes of random whole specs)."""
    import yaml
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed
    from strategies import specs

    import tdsl

    def record(outcomes: Counter, source: object, text: str | None) -> None:
        try:
            report = _validate(source)
        except Hang:
            outcomes["hang"] += 1
            return
        except Exception:
            outcomes["exception"] += 1
            return
        try:
            _check_report(report, text)
        except AssertionError:
            outcomes["bad diagnostics"] += 1
            return
        outcomes["valid" if report.ok else "diagnostics"] += 1

    def configured(count: int):
        return settings(
            max_examples=count,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )

    mutations: Counter = Counter()
    here = Path.cwd()
    for spec_file in SPEC_FILES:
        original = yaml.safe_load(spec_file.read_text(encoding="utf-8"))
        os.chdir(spec_file.parent)  # YAML text reads data paths from the working directory
        try:

            @hypothesis_seed(seed)
            @configured(examples_per_spec)
            @given(data=mutated(original))
            def mutate(data):
                text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
                record(mutations, text, text)

            mutate()
        finally:
            os.chdir(here)

    whole: Counter = Counter()

    @hypothesis_seed(seed)
    @configured(random_specs)
    @given(spec=specs())
    def random_spec(spec):
        record(whole, spec, None)
        record(whole, tdsl.dump(spec), tdsl.dump(spec))

    random_spec()
    return mutations, whole


def main_(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer trials, about a minute")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    scale = 0.3 if args.quick else 1.0
    chance = random.Random(args.seed)
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"  # for the runs' subprocesses
    began = time.monotonic()
    rows = []
    with tempfile.TemporaryDirectory(prefix="tdsl-reliability-") as tmp:
        folder = Path(tmp)
        (folder / "inputs").mkdir()
        hang_prone = start_hang_prone(folder / "inputs")
        say("validating the corpus and generated malformed files")
        generated = generated_inputs(folder / "inputs", chance, int(150 * scale))
        seconds: dict[str, float] = {}
        outcomes = {path.name: validate_file(path, seconds) for path in [*CORPUS, *generated]}
        files = Counter(outcomes.values())
        rows.append(
            malformed_row(files, len(CORPUS), len(generated), slowest=max(seconds.values()))
        )
        failed = [f"{name}: {what}" for name, what in outcomes.items() if what in BAD]
        say("fuzzing")
        mutations, whole = fuzz(int(40 * scale), int(100 * scale), args.seed)
        rows.append(fuzz_row("mutated real specs (validate)", mutations))
        rows.append(fuzz_row("random whole specs (object and YAML)", whole))
        say("waiting for the hang-prone inputs")
        rows.append(malformed_row(finish_hang_prone(hang_prone), hang_prone=len(hang_prone)))
        say("killing and resuming runs")
        rows += interrupted_runs(folder / "runs", chance, runs=max(1, round(3 * scale)), say=say)
        say("damaged checkpoints")
        rows += damaged_checkpoints(folder / "damaged", chance)
        say("diverging runs")
        rows += nan_runs(folder / "nan")
        rows.append(nonfinite_data(folder / "nonfinite", chance))
        say("refused imports")
        rows.append(refused_imports(folder / "imports"))
        rows += safety_rows(folder / "safety", args.quick, say)
    print(
        f"tdsl reliability, {time.strftime('%Y-%m-%d')}, {machine()}, seed {args.seed}, "
        f"{time.monotonic() - began:.0f} s\n"
    )
    print("| check | tried | handled as intended | failures |")
    print("| --- | ---: | --- | --- |")
    for check, tried, good, bad in rows:
        print(f"| {check} | {tried} | {good} | {bad} |")
    if failed:
        print("\nnot handled cleanly (generated files come back with the same --seed):")
        print("\n".join(failed))
    return 0


BAD = ("unlocated", "crash", "hang")


def malformed_row(
    outcomes: Counter, corpus: int = 0, generated: int = 0, hang_prone: int = 0, slowest=None
):
    tried = sum(outcomes.values())
    what = (
        f"hang-prone inputs ({', '.join([*HANG_CASES, 'fifo'][:hang_prone])}), one process each"
        if hang_prone
        else f"malformed spec files ({corpus} corpus, {generated} generated)"
    )
    good = f"{outcomes['rejected']} rejected cleanly, {outcomes['valid']} valid"
    if slowest is not None:
        good += f"; slowest {slowest:.1f} s"
    bad = ", ".join(f"{outcomes[k]} {k}" for k in BAD)
    return what, tried, good, bad


def fuzz_row(what: str, outcomes: Counter):
    good = f"{outcomes['diagnostics']} located diagnostics, {outcomes['valid']} valid"
    bad = ", ".join(f"{outcomes[k]} {k}" for k in ("exception", "bad diagnostics", "hang"))
    return what, sum(outcomes.values()), good, bad


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    return (
        f"{platform.system()} {cpu}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, torch {torch.__version__}"
    )


def say(text: str) -> None:
    print(f"... {text}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main_())

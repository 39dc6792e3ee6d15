"""Tokenizing ~100 MB of text: `validate` and `load_data` (tokenize, fit the vocabulary,
encode) of both text sources with each tokenizer, and the load again from a run directory's
token cache.

Writes two files of generated text into a fresh temporary folder: words drawn with a fixed
seed from a Zipf-like vocabulary (word r has weight 1/(r+2.7)^1.07; a few words carry
accents, some end in punctuation), one line of 3-40 words at a time; `labelled.txt` has a
0/1 label and a tab before each line (`kind: text`), `plain.txt` is the text alone
(`kind: text_lm`). Each measurement runs in a fresh process (no import or file cache of an
earlier one inside it) and reports that process's CPU seconds, wall seconds and peak
resident memory (ru_maxrss: torch and pyarrow alone are ~250 MB of it). The cached loads
run `load_data` under `tdsl.runs.data_cache.run_data_cache(RUN)` twice: the first fills
RUN/data_cache, the second reads it.

Run: python bench/text.py [--mb 100] [--repeat 3] [--quick] [--dir /tmp] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

VOCABULARY = 30_000
LETTERS = list("abcdefghijklmnopqrstuvwxyz") * 4 + list("éüßñç")
PUNCTUATION = [",", ".", ";", "!", "?"]
SOURCES = [  # (name, data section, vocabulary size); the model is sized from the vocabulary
    ("text/regex", "kind: text, tokenizer: regex, length: 64", 20_000),
    ("text/whitespace", "kind: text, tokenizer: whitespace, length: 64", 20_000),
    ("lm/char", "kind: text_lm, tokenizer: char, block_size: 64", 256),
    ("lm/whitespace", "kind: text_lm, tokenizer: whitespace, block_size: 64", 65_536),
    ("lm/regex", "kind: text_lm, tokenizer: regex, block_size: 64", 65_536),
]
MODES = ("validate", "load", "cache-fill", "cache-hit")


def words(rng: np.random.Generator) -> np.ndarray:
    lengths = rng.integers(1, 12, VOCABULARY)
    letters = "".join(rng.choice(LETTERS, int(lengths.sum())).tolist())
    ends = np.cumsum(lengths)
    out = np.empty(VOCABULARY, dtype=object)
    out[:] = [letters[e - n : e] for n, e in zip(lengths.tolist(), ends.tolist(), strict=True)]
    return out


def generate(folder: Path, megabytes: float, seed: int = 0) -> None:
    """`labelled.txt` and `plain.txt`, each about `megabytes` MB."""
    rng = np.random.default_rng(seed)
    vocabulary = words(rng)
    weights = 1.0 / (np.arange(VOCABULARY) + 2.7) ** 1.07
    weights /= weights.sum()
    target = int(megabytes * 1e6)
    with (folder / "labelled.txt").open("w") as labelled, (folder / "plain.txt").open("w") as plain:
        written, block = 0, min(200_000, max(300, target // 8))  # words at a time
        while written < target:
            drawn = vocabulary[rng.choice(VOCABULARY, block, p=weights)]
            marked = rng.random(len(drawn)) < 0.05
            drawn[marked] = drawn[marked] + rng.choice(PUNCTUATION, int(marked.sum()))
            per_line = rng.integers(3, 41, len(drawn) // 3)
            ends = np.cumsum(per_line)
            ends = ends[ends < len(drawn)]
            separators = np.full(len(drawn), " ", dtype=object)
            separators[ends - 1] = "\n"
            starts = np.concatenate([[0], ends[:-1]])
            body = np.empty(2 * len(drawn), dtype=object)
            body[0::2], body[1::2] = drawn, separators
            cut = 2 * int(ends[-1])  # whole lines only
            plain.write("".join(body[:cut].tolist()))
            labels = np.where(rng.random(len(starts)) < 0.5, "0\t", "1\t").astype(object)
            body[2 * starts] = labels + body[2 * starts]
            chunk = "".join(body[:cut].tolist())
            labelled.write(chunk)
            written += len(chunk.encode("utf-8"))


def spec_text(data: str, vocab: int) -> str:
    text = "kind: text," in data
    length = 64
    data += ", file: labelled.txt" if text else ", file: plain.txt"
    if text:
        data += f", vocab_size: {vocab}"
        layers = [
            f"{{op: embedding, num_embeddings: {vocab}, embedding_dim: 4}}",
            "{op: flatten}",
            "{op: linear, out_features: 1}",
        ]
        loss, inputs = "bce_with_logits", f"[{{shape: [{length}], dtype: int64}}]"
    else:
        data += f", vocab_size: {vocab}, stride: 64"
        layers = [
            f"{{op: embedding, num_embeddings: {vocab}, embedding_dim: 4}}",
            f"{{op: linear, out_features: {vocab}}}",
        ]
        loss = "{kind: cross_entropy, class_dim: -1}"
        inputs = f"[{{shape: [{length}], dtype: int64}}]"
    return (
        f"name: bench_text\nseed: 0\ndata: {{{data}}}\n"
        f"model:\n  inputs: {inputs}\n  layers: [{', '.join(layers)}]\n"
        f"loss: {loss}\noptimizer: {{kind: sgd, lr: 0.1}}\ntrain: {{epochs: 1, batch_size: 64}}\n"
    )


def worker(mode: str, spec_path: str, run_dir: str) -> None:
    """One measurement, in this fresh process; prints a JSON line."""
    import torch

    torch.set_num_threads(1)
    import tdsl
    from tdsl.data import load_data

    spec = tdsl.load(spec_path)
    wall, cpu = time.perf_counter(), time.process_time()
    if mode == "validate":
        report = tdsl.validate(spec)
        assert not report.errors, report.errors
    elif mode == "load":
        load_data(spec)
    else:
        from tdsl.runs.data_cache import run_data_cache

        with run_data_cache(Path(run_dir)):
            load_data(spec)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"cpu": cpu, "wall": wall, "peak_mb": peak}))


def measure(mode: str, spec_path: Path, run_dir: Path) -> dict[str, float]:
    command = [sys.executable, __file__, "--worker", mode, str(spec_path), str(run_dir)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{mode} {spec_path} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=100.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2 MB, once: a smoke test")
    parser.add_argument("--only", nargs="*", default=None, help="sources by name")
    parser.add_argument("--modes", nargs="*", default=list(MODES))
    parser.add_argument("--dir", default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(*args.worker)
    megabytes, repeat = (2.0, 1) if args.quick else (args.mb, args.repeat)
    folder = Path(tempfile.mkdtemp(prefix="tdsl-text-", dir=args.dir))
    try:
        started = time.perf_counter()
        generate(folder, megabytes)
        sizes = {n: (folder / n).stat().st_size / 1e6 for n in ("labelled.txt", "plain.txt")}
        print(f"generated {sizes} MB in {time.perf_counter() - started:.1f} s")
        print(f"load average {os.getloadavg()}")
        chosen = [s for s in SOURCES if args.only is None or s[0] in args.only]
        results: dict[tuple[str, str], list[dict[str, float]]] = {}
        for round_ in range(repeat):  # interleaved: load drifts hit every variant alike
            for name, data, vocab in chosen:
                spec_path = folder / f"{name.replace('/', '_')}.yaml"
                spec_path.write_text(spec_text(data, vocab))
                run_dir = folder / f"run-{name.replace('/', '_')}-{round_}"
                for mode in args.modes:
                    found = measure(mode, spec_path, run_dir)
                    results.setdefault((name, mode), []).append(found)
                    print(json.dumps({"source": name, "mode": mode, **found}), flush=True)
        print(f"{'source':16} {'mode':10} {'cpu s':>14} {'wall s':>14} {'peak MB':>8}")
        for (name, mode), runs in results.items():
            cpu = sorted(r["cpu"] for r in runs)
            wall = sorted(r["wall"] for r in runs)
            peak = max(r["peak_mb"] for r in runs)
            print(
                f"{name:16} {mode:10} {statistics.median(cpu):6.2f} ({cpu[0]:.2f}-{cpu[-1]:.2f})"
                f" {statistics.median(wall):6.2f} ({wall[0]:.2f}-{wall[-1]:.2f}) {peak:8.0f}"
            )
        print(f"load average {os.getloadavg()}")
    finally:
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

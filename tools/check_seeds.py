"""Train every spec in specs/ to completion and check it reaches what its seed reports.

    python tools/check_seeds.py                        # every spec (`make examples`)
    python tools/check_seeds.py ring_dnn tabular --out runs/seeds

Each spec trains as `tdsl run` trains it, in a run directory of its own; the checks then
read the outcome: the parameter count `tdsl validate` reports, the loss of the first and
last epochs, the best checkpoint's validation metrics (what `tdsl eval` prints) and, for the
linear regression, the weights of the last checkpoint. Prints a markdown table of the
numbers reached and exits 1 when any check misses (2 for a usage error).
"""

from __future__ import annotations

import argparse
import datetime
import io
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import attrs
import torch

import tdsl
from tdsl.errors import TdslError, did_you_mean
from tdsl.runs.directories import evaluate_run, run

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


@attrs.frozen
class Outcome:
    """What a finished run reached."""

    params: int
    epochs: int
    first_loss: float
    last_loss: float
    val: dict[str, float]  # the best checkpoint's validation metrics, unprefixed
    weights: dict[str, list[float]]  # the last checkpoint's parameters, flattened
    # What `tdsl validate` lists: regularizer / param-group path -> the parameters it picked.
    selections: dict[str, tuple[str, ...]] = attrs.Factory(dict)
    seconds: float = 0.0


@attrs.frozen
class Verdict:
    reached: str
    ok: bool


@attrs.frozen
class Params:
    count: int

    def wanted(self) -> str:
        return f"{self.count:,} parameters"

    def judge(self, outcome: Outcome) -> Verdict:
        return Verdict(f"{outcome.params:,} parameters", outcome.params == self.count)


@attrs.frozen
class Trains:
    """The last epoch's training loss is below the first epoch's."""

    def wanted(self) -> str:
        return "trains"

    def judge(self, outcome: Outcome) -> Verdict:
        text = f"loss {outcome.first_loss:.4g} → {outcome.last_loss:.4g}"
        return Verdict(text, outcome.last_loss < outcome.first_loss)


@attrs.frozen
class ValAtLeast:
    metric: str
    threshold: float

    def wanted(self) -> str:
        return f"val {self.metric} >= {self.threshold:g}"

    def judge(self, outcome: Outcome) -> Verdict:
        value = outcome.val.get(self.metric)
        if value is None:
            return Verdict(f"no val {self.metric}", False)
        return Verdict(f"val {self.metric} {value:.4f}", value >= self.threshold)


@attrs.frozen
class ValAtMost:
    metric: str
    threshold: float

    def wanted(self) -> str:
        return f"val {self.metric} <= {self.threshold:g}"

    def judge(self, outcome: Outcome) -> Verdict:
        value = outcome.val.get(self.metric)
        if value is None:
            return Verdict(f"no val {self.metric}", False)
        return Verdict(f"val {self.metric} {value:.4f}", value <= self.threshold)


@attrs.frozen
class LinearWeights:
    """A linear layer's weight and bias, each within a tolerance of the true values."""

    layer: str
    weight: tuple[float, ...]
    bias: float
    weight_tolerance: float
    bias_tolerance: float

    def wanted(self) -> str:
        w = ", ".join(f"{v:g}" for v in self.weight)
        return f"w [{w}] ± {self.weight_tolerance:g}, b {self.bias:g} ± {self.bias_tolerance:g}"

    def judge(self, outcome: Outcome) -> Verdict:
        weight = outcome.weights.get(f"{self.layer}.weight")
        bias = outcome.weights.get(f"{self.layer}.bias")
        if weight is None or bias is None or len(weight) != len(self.weight):
            return Verdict(f"no weights of a {self.layer!r} layer", False)
        pairs = zip(weight, self.weight, strict=True)
        ok = all(abs(a - b) <= self.weight_tolerance for a, b in pairs)
        ok = ok and abs(bias[0] - self.bias) <= self.bias_tolerance
        shown = ", ".join(f"{v:.3f}" for v in weight)
        return Verdict(f"w [{shown}], b {bias[0]:.3f}", ok)


@attrs.frozen
class ParamGroups:
    """`tdsl validate` lists this many optimizer param groups, none of them empty."""

    count: int

    def wanted(self) -> str:
        return f"validate shows {self.count} param groups"

    def judge(self, outcome: Outcome) -> Verdict:
        picked = [
            names for path, names in outcome.selections.items() if path.startswith("optimizer.")
        ]
        sizes = " + ".join(str(len(names)) for names in picked) or "none"
        ok = len(picked) == self.count and all(picked)
        return Verdict(f"{len(picked)} param groups of {sizes} parameters", ok)


@attrs.frozen
class Unchanged:
    """The parameters under `prefixes` end bitwise as `file` (relative to specs/) holds
    them: a frozen trunk loaded from another run."""

    file: str
    prefixes: tuple[str, ...]

    def wanted(self) -> str:
        return f"{', '.join(p + '*' for p in self.prefixes)} unchanged from {self.file}"

    def judge(self, outcome: Outcome) -> Verdict:
        start = torch.load(SPECS / self.file, weights_only=True)
        names = [n for n in start if n.startswith(self.prefixes)]
        same = [n for n in names if outcome.weights.get(n) == start[n].flatten().tolist()]
        ok = bool(names) and len(same) == len(names)
        return Verdict(f"{len(same)} of {len(names)} tensors unchanged", ok)


Check = Params | Trains | ValAtLeast | LinearWeights | ParamGroups | Unchanged


@attrs.frozen
class Seed:
    """A spec, the seed setup it reproduces, and what it must reach."""

    spec: str
    setup: str
    checks: tuple[Check, ...]


SEEDS = (
    Seed(
        "linear_regression",
        "400 points, y = x·[2,-3] + 10 + N(0,2), one linear layer",
        (Params(3), LinearWeights("linear1", (2.0, -3.0), 10.0, 0.1, 0.5)),
    ),
    Seed(
        "ring_dnn",
        "two noisy rings, 2-4-8-1 MLP, BCE with logits, Adam",
        (Params(61), ValAtLeast("accuracy", 0.91)),
    ),
    Seed(
        "ring_focal_l1l2",
        "rings 200 vs 6000, sigmoid, focal + L1 + L2 (0.001, no biases), Adam 0.01",
        (Params(61), ValAtLeast("accuracy", 0.97)),
    ),
    Seed(
        "weight_decay_groups",
        "SGD momentum 0.9, weight decay 1e-5 on weights, none on biases",
        (Params(61), ParamGroups(2), Trains()),
    ),
    Seed(
        "tabular",
        "Titanic-style CSV, 15 features after transforms, 15-20-15-1 MLP",
        (Params(651), ValAtLeast("accuracy", 0.75)),
    ),
    Seed(
        "digits_cnn",
        "the MNIST CNN on scikit-learn's 8x8 digits",
        (Params(53_994), ValAtLeast("accuracy", 0.95)),
    ),
    Seed(
        "finetune_digits",
        "digits_cnn's conv trunk (data/digits_cnn.pt) frozen, a new head on odd/even",
        (
            Params(53_730),
            ValAtLeast("accuracy", 0.95),
            Unchanged("data/digits_cnn.pt", ("conv1.", "conv2.")),
        ),
    ),
    Seed(
        "image_cnn",
        "CIFAR-style CNN on a generated image folder",
        (Params(54_273), Trains()),
    ),
    Seed(
        "text_cnn",
        "embedding + conv1d text model on a generated corpus",
        (Params(40_625), Trains()),
    ),
    Seed(
        "gpt_adder",
        "2-digit addition as characters, 2-block causal GPT, loss on the sum's digits",
        (Params(102_144), ValAtLeast("exact_match", 0.99)),
    ),
    Seed(
        "char_lm",
        "character-level GPT on 4 KB of short tales, windows of 64",
        (Params(110_336), Trains()),
    ),
    Seed(
        "multitask",
        "customers CSV, one trunk, churn (bce_with_logits) and spend (mse, weight 0.5) heads",
        (Params(290), ValAtLeast("churn_auroc", 0.83), ValAtMost("spend_mae", 1.25)),
    ),
    Seed(
        "unet_shapes",
        "U-Net (blocks, transposed convs, concat skips) segmenting generated shapes",
        (Params(29_508), ValAtLeast("mean_iou", 0.9)),
    ),
    Seed(
        "timeseries_lstm",
        "5-layer LSTM, output block times the last input step",
        (Params(492), Trains()),
    ),
)
BY_NAME = {seed.spec: seed for seed in SEEDS}


def judge(seed: Seed, outcome: Outcome) -> list[Verdict]:
    return [check.judge(outcome) for check in seed.checks]


def measure(path: Path, directory: Path) -> Outcome:
    """Train the spec at `path` to completion in `directory` and read what it reached."""
    report = tdsl.validate(path)
    if not report.ok:
        raise tdsl.SpecError(report.diagnostics)
    started = time.perf_counter()
    directory, result = run(tdsl.load(path), directory, stream=io.StringIO())
    seconds = time.perf_counter() - started
    val = evaluate_run(directory).get("val", {})
    last = torch.load(directory / "checkpoints" / "last.pt", weights_only=True)
    weights = {name: value.flatten().tolist() for name, value in last["model"].items()}
    history = result.history
    return Outcome(
        params=report.param_count or 0,
        epochs=len(history),
        first_loss=history[0]["loss"],
        last_loss=history[-1]["loss"],
        val=val,
        weights=weights,
        selections=dict(report.selections),
        seconds=seconds,
    )


def table(rows: Sequence[tuple[Seed, Outcome | None, list[Verdict]]]) -> str:
    lines = [
        "| spec | seed setup | must reach | reached | best val | epochs | time | ok |",
        "| --- | --- | --- | --- | --- | ---: | ---: | :-: |",
    ]
    for seed, outcome, verdicts in rows:
        wanted = "; ".join(check.wanted() for check in seed.checks)
        reached = "; ".join(v.reached for v in verdicts)
        ok = "yes" if all(v.ok for v in verdicts) else "**NO**"
        epochs, seconds, val = "-", "-", "-"
        if outcome is not None:
            epochs, seconds = str(outcome.epochs), f"{outcome.seconds:.0f} s"
            val = ", ".join(f"{k} {v:.4g}" for k, v in outcome.val.items() if k != "loss") or "-"
        lines.append(
            f"| `{seed.spec}` | {seed.setup} | {wanted} | {reached} | {val} | {epochs} "
            f"| {seconds} | {ok} |"
        )
    return "\n".join(lines)


def machine() -> str:
    today = datetime.date.today().isoformat()
    system = f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores"
    return f"{today}, {system}, torch {torch.__version__}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", metavar="SPEC", help="spec names (default: all)")
    parser.add_argument("--out", metavar="DIR", help="keep the run directories here")
    parser.add_argument("--specs", metavar="DIR", default=str(SPECS), help="the specs folder")
    # These models are tiny: one thread is fastest and keeps a busy machine's timings stable.
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    return parser


def select(names: Sequence[str], folder: Path) -> list[Path] | str:
    """The spec files to run, or a usage error."""
    found = {path.stem: path for path in sorted(folder.glob("*.yaml"))}
    unexpected = sorted(set(found) - set(BY_NAME))
    if unexpected:
        return f"no seed expectations for {', '.join(unexpected)}: add them to SEEDS"
    for name in names:
        if name not in found:
            hint = did_you_mean(name, found)
            return f"no spec {name!r} in {folder}" + (f" ({hint})" if hint else "")
    return [found[name] for name in names] or [found[s.spec] for s in SEEDS if s.spec in found]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    chosen = select(args.names, Path(args.specs))
    if isinstance(chosen, str):
        print(f"error: {chosen}", file=sys.stderr)
        return 2
    torch.set_num_threads(max(args.threads, 1))
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.out) if args.out else Path(scratch)
        rows = []
        for path in chosen:
            seed = BY_NAME[path.stem]
            try:
                outcome: Outcome | None = measure(path, root / path.stem)
                verdicts = judge(seed, outcome)
            except TdslError as exc:  # an invalid spec or an unusable run directory
                outcome, verdicts = None, [Verdict(f"error: {exc}".splitlines()[0], False)]
            mark = "ok" if all(v.ok for v in verdicts) else "MISSED"
            print(f"{path.stem}: {mark}: {'; '.join(v.reached for v in verdicts)}", file=sys.stderr)
            rows.append((seed, outcome, verdicts))
    print(f"Reached on {machine()}:\n")
    print(table(rows))
    missed = [seed.spec for seed, _, verdicts in rows if not all(v.ok for v in verdicts)]
    if missed:
        print(f"\nmissed: {', '.join(missed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Make specs/data/digits_cnn.pt, the starting weights of specs/finetune_digits.yaml: train
specs/digits_cnn.yaml as `tdsl run` does and keep its best checkpoint's parameters and
buffers as a plain state dict (no optimizer state, so the file stays small).

    python tools/digits_weights.py            # `make digits-weights`

The file is committed so that the fine-tuning spec validates and runs anywhere, before
and without any other run; this script is how it was made.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

import tdsl
from tdsl.runs.directories import run

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "specs" / "data" / "digits_cnn.pt"


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        directory, _ = run(tdsl.load(ROOT / "specs" / "digits_cnn.yaml"), Path(folder) / "run")
        best = torch.load(directory / "checkpoints" / "best.pt", weights_only=True)
    state = best["state"]
    weights = {name: t.contiguous() for name, t in {**state["params"], **state["buffers"]}.items()}
    torch.save(weights, OUT)
    print(f"wrote {OUT.relative_to(ROOT)}: val {best['history'][-1]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

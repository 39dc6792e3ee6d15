"""What validating a spec imports: not pyarrow (0.2 s) for a spec without tables or text
files, nor torch._dynamo (1.2 s) for the common layers and optimizers (`bench/startup.py`
times it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("spec", ["ring_dnn.yaml", "linear_regression.yaml"])
def test_validating_a_spec_without_tables_imports_neither_pyarrow_nor_dynamo(spec):
    code = (
        "import sys\n"
        "from tdsl.runs.cli import main\n"
        f"assert main(['validate', 'specs/{spec}']) == 0\n"
        "print(sorted(m for m in ('pyarrow', 'torch._dynamo') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr
    # Regression: the text-token module imported pyarrow with every `tdsl.data`.
    assert done.stdout.strip().splitlines()[-1] == "[]"

"""Shared test set-up."""

from pathlib import Path

import pytest
import torch

# Tiny models run fastest single-threaded, and a busy 2-core CI machine makes torch's
# default thread pool spin; one thread keeps the suite fast and its timings stable.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml"))


@pytest.fixture
def root() -> Path:
    return ROOT

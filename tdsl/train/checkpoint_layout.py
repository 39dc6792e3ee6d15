"""What a tdsl checkpoint holds (the Checkpointer's payload), checked after loading: a file
that torch reads but that another program wrote (a bare state_dict, a list of tensors, a
checkpoint with entries missing) is named as not a tdsl checkpoint instead of failing with
a KeyError deep inside resume, eval or predict."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

# Entry -> the types it may have, and how a message names them.
ENTRIES: dict[str, tuple[tuple[type, ...], str]] = {
    "spec": ((str,), "text"),
    "state": ((Mapping,), "a mapping"),
    "history": ((list,), "a list"),
    "callbacks": ((list,), "a list"),
    "checkpointer": ((Mapping,), "a mapping"),
    "stop_reason": ((str, type(None)), "text or null"),
}
# TrainState.to_dict's entries that resume, eval and predict read.
STATE_ENTRIES = ("params", "buffers", "optimizer", "hyper", "schedule", "step", "epoch", "rng")


def _kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, torch.Tensor):
        return "a tensor"
    return f"a {type(value).__name__}"


def layout_problem(loaded: Any) -> str | None:
    """Why `loaded` (what torch.load returned) is not a tdsl checkpoint; None when it is."""
    if not isinstance(loaded, Mapping):
        return f"it holds {_kind(loaded)}, not the mapping a run's checkpoint is"
    missing = [name for name in ENTRIES if name not in loaded]
    if missing and loaded and all(isinstance(v, torch.Tensor) for v in loaded.values()):
        return "it holds only tensors: a bare state_dict, not a run's checkpoint"
    if missing:
        return f"no {', '.join(repr(name) for name in missing)} entry"
    for name, (types, expected) in ENTRIES.items():
        if not isinstance(loaded[name], types):
            return f"its {name!r} entry is {_kind(loaded[name])}, expected {expected}"
    absent = [name for name in STATE_ENTRIES if name not in loaded["state"]]
    if absent:
        return f"its 'state' entry has no {', '.join(repr(name) for name in absent)}"
    return None


def not_a_checkpoint(path: Path, why: str) -> str:
    return f"{path} is not a tdsl checkpoint ({why})"


def refused_pickle(path: Path) -> str:
    """For a file holding Python objects that loading with weights_only refuses to build:
    one line, and never torch's advice to load it with weights_only=False (which would run
    whatever code the file names)."""
    return not_a_checkpoint(path, "it holds Python objects beyond tensors") + (
        "; it was not loaded, since loading it could run code"
    )

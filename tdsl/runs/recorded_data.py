"""What a run's data yielded, kept in the run directory, so that inference from the run
(`predict`, `export`, `load_model`, `eval --data`, `--generate`) needs no training data:
the run's spec compiles from `data_signature.json`, the transforms from `transforms.json`.
`resume` and `eval` on the run's own splits do read the data, and say so when it is gone.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

from tdsl import spec as S
from tdsl.data import DataSignature, is_synthetic
from tdsl.data.recorded import recorded_signature, signature_from_json, signature_to_json
from tdsl.errors import Diagnostic, SpecError
from tdsl.runs.drift import data_paths
from tdsl.runs.run_lock import RunError
from tdsl.spec.load_dump import locate, read_spec
from tdsl.train.atomic_files import atomic_write_text

SIGNATURE_FILE = "data_signature.json"


def record_signature(directory: Path, spec: S.Spec, signature: DataSignature) -> None:
    """Keep what `spec`'s data yields (generated data is not read: nothing to keep)."""
    if is_synthetic(spec.data):
        return
    text = json.dumps(signature_to_json(signature), indent=2)
    atomic_write_text(Path(directory) / SIGNATURE_FILE, text + "\n")


@contextlib.contextmanager
def run_signature(directory: Path, spec: S.Spec) -> Iterator[None]:
    """Within the block `spec`'s data (the run's own) is not read for its signature, where
    the run recorded one; runs made before it was recorded read their data as before."""
    path = Path(directory) / SIGNATURE_FILE
    try:
        signature = signature_from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        signature = None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RunError(f"{path} is damaged ({type(exc).__name__}: {exc})") from None
    if signature is None:
        yield
        return
    with recorded_signature(spec.data, signature):
        yield


def require_data(directory: Path, spec: S.Spec, command: str) -> None:
    """Refuse `command` (which reads the run's own rows) when a data path of the run is gone,
    located at its field in the run's spec.yaml."""
    for where, path in data_paths(spec).items():
        if path.exists():
            continue
        field = tuple(where.split(".")[1:])
        message = (
            f"no such file: {path}; `tdsl {command}` needs the run's training data "
            "(`tdsl predict`, `tdsl export` and `tdsl eval --data FILE` do not)"
        )
        diagnostic = Diagnostic(("data", *field), message)
        spec_file = Path(directory) / "spec.yaml"
        written, _ = read_spec(spec_file) if spec_file.is_file() else (None, ())
        if written is None or written.source is None:
            raise RunError(f"{spec_file}: data.{'.'.join(field)}: {message}")
        raise SpecError([locate(diagnostic, written.source)])

"""`tdsl export`: TorchScript, torch.export and ONNX files that load without tdsl, take any
batch size, and give tdsl's own outputs.

The default suite exports every gallery spec as TorchScript (fast), a few as torch.export
(ring_dnn, tabular, multitask) and ring_dnn as ONNX; `TDSL_EXPORT_ALL=1` (or
`make test-export`) exports every gallery spec in every format (a few minutes).
"""

import functools
import importlib.util
import io
import os
import warnings
from pathlib import Path

import attrs
import pytest
import torch

import tdsl
from tdsl.data import load_data
from tdsl.runs.cli import main
from tdsl.runs.directories import RunError
from tdsl.runs.export import export_module, export_run
from tdsl.runs.inference import checked_features
from tdsl.train.loops import predict

SPECS = Path(__file__).resolve().parent.parent / "specs"
GALLERY = sorted(p.stem for p in SPECS.glob("*.yaml"))
ALL = bool(os.environ.get("TDSL_EXPORT_ALL"))
HAS_ONNX = all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime", "onnxscript"))
DEFAULT = {
    "torchscript": GALLERY,
    "exported": ["ring_dnn", "tabular", "multitask"],
    "onnx": ["ring_dnn"],
}


def _cases():
    for fmt, names in DEFAULT.items():
        for name in GALLERY:
            marks = [] if ALL or name in names else [pytest.mark.skip(reason="TDSL_EXPORT_ALL")]
            if fmt == "onnx" and not HAS_ONNX:
                marks = [pytest.mark.skip(reason="needs the onnx extra")]
            yield pytest.param(name, fmt, marks=marks, id=f"{name}-{fmt}")


@functools.cache
def _compiled(name: str):
    """A gallery spec's program, fresh state and five validation rows (shared by formats)."""
    spec = tdsl.load(SPECS / f"{name}.yaml")
    program = tdsl.compile(spec)
    splits = load_data(spec)
    rows = splits.val if splits.val is not None and len(splits.val) >= 5 else splits.train
    return program, program.init(), checked_features(spec, next(rows.batches(5)).features, "val")


@pytest.mark.parametrize(("name", "fmt"), list(_cases()))
def test_every_gallery_spec_round_trips(tmp_path, name, fmt):
    program, state, features = _compiled(name)
    module = program.module_for(state).eval().cpu()
    path = tmp_path / f"model.{fmt}"
    diff, tolerance = export_module(
        module, fmt, path, features, lambda batch: predict(program, state, batch)
    )
    assert path.stat().st_size > 0 and diff <= tolerance


@pytest.fixture(scope="module")
def ring_run(tmp_path_factory):
    spec = tdsl.load(SPECS / "ring_dnn.yaml")
    spec = attrs.evolve(spec, train=attrs.evolve(spec.train, epochs=1))
    directory, _ = tdsl.run(spec, tmp_path_factory.mktemp("ring") / "run", progress=False)
    return directory


def test_the_command_writes_checks_and_reports(ring_run, tmp_path, capsys):
    out = tmp_path / "ring.pt"
    assert main(["export", str(ring_run), "--format", "torchscript", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"wrote {out} (torchscript)"
    assert lines[1].startswith(
        "checked on seeded rows and val rows in batches of 5 and 3: max abs diff 0 "
    )
    with warnings.catch_warnings():  # torch 2.10+ deprecates TorchScript, still loads it
        warnings.simplefilter("ignore", DeprecationWarning)
        loaded = torch.jit.load(str(out))  # a plain TorchScript file, any batch size
    rows = torch.randn(11, 2)
    model = tdsl.load_model(ring_run)
    assert torch.allclose(loaded(rows), model.outputs((rows,)), atol=1e-6)
    assert main(["export", str(ring_run), "--format", "exported", "--checkpoint", "last"]) == 0
    assert (ring_run / "last.pt2").is_file()
    # --which, the spelling, is the same option
    assert main(["export", str(ring_run), "--format", "exported", "--which", "last"]) == 0


class _Refuses(torch.nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: torch.export cannot hold it
            return x
        return -x


def test_a_graph_the_format_cannot_hold_is_refused_in_one_line(tmp_path):
    features = (torch.randn(5, 2),)
    with pytest.raises(RunError) as caught:
        export_module(_Refuses(), "exported", tmp_path / "m.pt2", features, lambda b: b[0])
    message = str(caught.value)
    assert message.startswith("cannot export as exported: ") and "\n" not in message
    assert not (tmp_path / "m.pt2").exists()


def test_a_mismatch_fails_the_export(ring_run, tmp_path):
    module = torch.nn.Linear(2, 1)
    wrong = lambda batch: module(batch[0]) + 1  # noqa: E731
    with pytest.raises(RunError, match="differs from tdsl's outputs by up to 1 "):
        export_module(module, "torchscript", tmp_path / "m.pt", (torch.randn(5, 2),), wrong)


def test_onnx_without_the_extra_names_it(ring_run, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "onnxruntime" else real(n, *a)
    )
    assert main(["export", str(ring_run), "--format", "onnx"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ONNX export needs onnx, onnxruntime and onnxscript: pip install")


def test_export_run_reports_what_it_measured(ring_run, tmp_path):
    done = export_run(ring_run, "torchscript", out=tmp_path / "m.pt")
    assert (
        done.path == tmp_path / "m.pt"
        and done.rows == 10
        and done.source == "seeded rows and val rows"
    )
    assert 0 <= done.max_abs_diff <= done.tolerance
    assert io.BytesIO(done.path.read_bytes()).read(2) == b"PK"  # a TorchScript zip archive

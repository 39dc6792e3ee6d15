"""Every reader refuses a FIFO (or a device) instead of blocking on it forever: spec files,
CSV and text data, images in a folder, .npy folders, transforms.json, checkpoints and
predict inputs. The cases run in one child process with a timeout, so that a regression
fails here instead of hanging the test run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")

CASES = r'''
import json, os, shutil, sys
from pathlib import Path
import tdsl
from tdsl.check.pipeline import validate
from tdsl.data import Fitted
from tdsl.errors import TdslError
from tdsl.runs.directories import evaluate_run, predict_run, run
from tdsl.runs.resuming import resume

work, root = Path(sys.argv[1]), Path(sys.argv[2])
said = {}

def attempt(name, job):
    try:
        result = job()
    except TdslError as exc:
        said[name] = str(exc)
    else:
        said[name] = getattr(result, "format", lambda: repr(result))()

def fifo(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path

def spec_text(data):
    return f"""
name: f
data: {data}
model: {{inputs: [{{shape: [2]}}], layers: [{{op: linear, out_features: 1}}]}}
loss: bce_with_logits
optimizer: {{kind: sgd, lr: 0.1}}
train: {{epochs: 1, batch_size: 20}}
"""

attempt("spec", lambda: validate(fifo(work / "spec.yaml")))
from tdsl.runs.scaffold import scaffold
attempt("init", lambda: scaffold(fifo(work / "lines.tsv"), work / "new.yaml"))
fifo(work / "table.csv")
attempt("csv", lambda: validate(spec_text(
    f"{{kind: csv, file: {work / 'table.csv'}, target: y, target_kind: binary, columns: [a, b]}}")))
images = work / "images"
shutil.copytree(root / "specs" / "data" / "images", images)
fifo(images / sorted(p.name for p in images.iterdir() if p.is_dir())[0] / "zz.png")
image_spec = (root / "specs" / "image_cnn.yaml").read_text().replace(
    "folder: data/images", f"folder: {images}")
attempt("images", lambda: validate(image_spec))
fifo(work / "arrays" / "x.npy")
attempt("npy", lambda: validate(spec_text(
    f"{{kind: tensors, file: {work / 'arrays'}, target_kind: binary}}")))

spec = tdsl.load(spec_text("{kind: rings, n_positive: 20, n_negative: 20, "
                           "split: {train: 0.5, val: 0.5}}"))
out = run(spec, work / "run", progress=False).directory
attempt("predict input", lambda: predict_run(out, fifo(work / "in.npy"), work / "o.csv"))
(out / "checkpoints" / "best.pt").unlink()
fifo(out / "checkpoints" / "best.pt")
attempt("best.pt", lambda: evaluate_run(out))
fifo(out / "transforms.json")
attempt("transforms.json", lambda: Fitted.load(out))
print(json.dumps(said))
'''


def test_fifos_are_refused_by_every_reader(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", CASES, str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,  # a reader that blocks on a FIFO never returns
    )
    assert done.returncode == 0, done.stderr[-3000:]
    said = json.loads(done.stdout.splitlines()[-1])
    fifo = "is a FIFO (named pipe), not a regular file"
    assert "spec.yaml:1:1: error: <root>: not a regular file" in said["spec"]
    assert said["init"].endswith(f"lines.tsv {fifo}")
    assert "data.file: " in said["csv"] and "table.csv is not a file" in said["csv"]
    assert f"zz.png {fifo}" in said["images"] and "data.folder" in said["images"]
    assert "x.npy: a FIFO (named pipe), not a regular file" in said["npy"]
    assert "data.file" in said["npy"]
    assert said["predict input"].endswith("in.npy: a FIFO (named pipe), not a regular file")
    assert said["best.pt"].startswith("cannot read checkpoint ") and fifo in said["best.pt"]
    assert said["transforms.json"].endswith(f"transforms.json: {fifo.removeprefix('is ')}")

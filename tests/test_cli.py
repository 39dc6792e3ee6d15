"""The command line: exit codes, output formats, overrides, and no tracebacks."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import tdsl
from tdsl.runs.cli import main
from tdsl.spec.overrides import apply_overrides, parse_path

ROOT = Path(__file__).resolve().parent.parent
RING = str(ROOT / "specs" / "ring_dnn.yaml")


def test_validate_prints_shape_and_parameters(capsys):
    assert main(["validate", RING]) == 0
    assert capsys.readouterr().out == (
        f"{RING}: valid; output linear3 [B, 1]; 61 parameters; rows: train 2,800, val 1,200\n"
    )


def test_validate_several_files_fails_if_any_fails(tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\n")
    assert main(["validate", RING, str(broken)]) == 1
    out = capsys.readouterr().out
    assert "61 parameters" in out
    assert f"{broken}:1:1: error: <root>: missing required key 'data' in the spec" in out


def test_json_format(tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text(Path(RING).read_text().replace("lr: 0.01", "lr: fast"))
    assert main(["validate", "--format", "json", str(broken)]) == 1
    (item,) = json.loads(capsys.readouterr().out)
    assert item["path"] == "optimizer.lr" and item["severity"] == "error"
    assert item["message"] == "expected a number, got 'fast' (str)"
    assert (item["file"], item["line"], item["column"]) == (str(broken), 26, 3)


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["validate"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize(
    "content",
    [b"", b"\x00\x01\x02binary", b"\xff\xfe not utf8", b"key: [unclosed", b"- a\n- b\n"],
    ids=["empty", "binary", "not-utf8", "syntax", "list"],
)
def test_bad_files_give_one_located_error_and_no_traceback(tmp_path, capsys, content):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    assert main(["validate", str(path)]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert captured.out.startswith(f"{path}:")


def test_missing_file(capsys):
    assert main(["validate", "no/such/spec.yaml"]) == 1
    assert capsys.readouterr().out == "no/such/spec.yaml:1:1: error: <root>: no such file\n"


def test_set_overrides_go_through_validation(capsys):
    args = ["validate", RING, "--set", "model.layers[4].out_features=3", "--set", "train.epochs=2"]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "loss 'bce_with_logits' on binary targets of shape [B, 1] needs an output of that" in out
    assert main(["validate", RING, "--set", "model.layers[9].out_features=3"]) == 1
    assert "--set model.layers[9].out_features=3: no list element [9]" in capsys.readouterr().out


def test_summary_and_schema_commands(capsys):
    assert main(["summary", RING]) == 0
    assert "Total params: 61" in capsys.readouterr().out
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out)["title"]


def test_module_entry_point():
    done = subprocess.run(
        [sys.executable, "-m", "tdsl", "validate", RING],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "61 parameters" in done.stdout


# Runs `python -m tdsl ARGS` for each ARGS with stdout a pipe whose reader has already left
# (`tdsl schema | head -0`), forked from one process so torch is imported once.
CLOSED_EARLY = """
import gc, json, os, runpy, sys
import tdsl.check.pipeline, tdsl.runs.cli, tdsl.runs.directories, tdsl.spec.json_schema
gc.freeze()  # the children's exits need not collect what they share
codes = []
for argv in json.loads(sys.argv[1]):
    read, write = os.pipe()
    os.close(read)
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        os.dup2(write, 1)
        sys.argv = ["tdsl", *argv]
        runpy.run_module("tdsl", run_name="__main__")  # exits like `python -m tdsl`
    os.close(write)
    codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
print(json.dumps(codes))
"""


def test_output_closed_early_exits_quietly(tmp_path):
    commands = [
        ["schema"],
        ["validate", RING],
        ["summary", RING],
        ["run", RING, "--out", str(tmp_path / "run"), "--set", "train.epochs=1"],
    ]
    commands[-1] += ["--set", "data.n_positive=100", "--set", "data.n_negative=100"]
    done = subprocess.run(
        [sys.executable, "-c", CLOSED_EARLY, json.dumps(commands)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
    assert json.loads(done.stdout) == [141] * len(commands)  # as if killed by SIGPIPE
    assert (tmp_path / "run" / "final.json").exists()  # the run itself finished


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("train.epochs", ("train", "epochs")),
        ("model.layers[2].out_features", ("model", "layers", 2, "out_features")),
        ("a[0][1].b", ("a", 0, 1, "b")),
        ("a..b", None),
        ("[0]", (0,)),
        ("a.b-c", None),
    ],
)
def test_parse_path(text, path):
    assert parse_path(text) == path


def test_overrides_create_missing_mappings_and_keep_the_input():
    data = {"train": {"epochs": 3}}
    changed, problems = apply_overrides(data, ["train.early_stopping.patience=2", "seed=5"])
    assert not problems
    assert changed == {"train": {"epochs": 3, "early_stopping": {"patience": 2}}, "seed": 5}
    assert data == {"train": {"epochs": 3}}
    _, problems = apply_overrides(data, ["epochs"])
    assert "expected PATH=VALUE" in problems[0].message


def test_public_api_is_curated():
    for name in tdsl.__all__:
        assert getattr(tdsl, name) is not None
    assert {"load", "dump", "validate", "summary", "Spec", "Layer", "SpecError"} <= set(
        tdsl.__all__
    )

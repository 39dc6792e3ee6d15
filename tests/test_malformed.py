"""Malformed spec files the corpus cannot hold (binary, unreadable, huge, special files) and
malformed text whose exact message is not the point: whatever the input, `tdsl` answers
with located `FILE:LINE:COL: error: ...` lines and exit status 1 — never a traceback, never a
hang.

Most cases run `tdsl.cli.main` in-process. The ones that could hang or take the interpreter
down (a 50 MB file, an alias bomb, nesting 100,000 deep, a FIFO, an LSTM or a transformer
100,000 layers deep, an LSTM over 100,000 steps) run in subprocesses, started with the
module so that they run alongside the in-process tests, each under a wall-clock limit.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest

from tdsl.runs.cli import main

# A small valid spec; one epoch, so that a run that wrongly starts is still short.
SPEC = """\
name: ring_dnn
data:
  kind: rings
  split: {train: 0.7, val: 0.3}
model:
  inputs:
    - {shape: [2]}
  layers:
    - {op: linear, out_features: 4}
    - relu
    - {op: linear, out_features: 1}
loss:
  kind: bce_with_logits
train:
  epochs: 1
"""

NAMED_NEWLINE = '{name: "linear\\n", op: linear, out_features: 4}'
LOCATED = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<column>\d+): error: (?P<rest>.+)$")
# Seconds each subprocess case may take, from the moment they are all started together.
TIME_LIMIT = 20


def _run(args: list[str], capsys) -> tuple[int, str, str]:
    """`tdsl ARGS` in-process: (exit code, stdout, stderr); a raised exception fails the test."""
    try:
        code = main(args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        out, err = capsys.readouterr()
        pytest.fail(f"tdsl {' '.join(args)[:200]} crashed:\n{traceback.format_exc()[-4000:]}")
    out, err = capsys.readouterr()
    return code, out, err


def _assert_located_error(code: int, output: str, path: Path | str) -> None:
    """Exit 1, no traceback, and at least one `PATH:LINE:COL: error: ...` line for `path`."""
    shown = output[:3000]
    assert "Traceback" not in output, f"a traceback was printed:\n{shown}"
    assert code == 1, f"exit code {code}, expected 1:\n{shown}"
    located = [m for m in map(LOCATED.match, output.splitlines()) if m]
    assert located, f"no located error line:\n{shown}"
    for match in located:
        assert match["file"] == str(path), match.group(0)
        assert int(match["line"]) >= 1 and int(match["column"]) >= 1, match.group(0)
        assert match["rest"].strip(), match.group(0)


def _validate_fails_cleanly(path: Path, capsys) -> str:
    code, out, err = _run(["validate", str(path)], capsys)
    _assert_located_error(code, out, path)
    assert "Traceback" not in err, err
    return out


# --- files that are not YAML text ------------------------------------------------------------


def _write(tmp_path: Path, content: bytes, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


BINARY_FILES = {
    "random_bytes": random.Random(0).randbytes(4096),
    "invalid_utf8": SPEC.encode()[:40] + b"\xff\xfe\xc3\x28" + SPEC.encode()[40:],
    "latin1_text": SPEC.replace("ring_dnn", "naïve").encode("latin-1"),
    "utf16_text": SPEC.encode("utf-16"),
    "nul_in_valid_yaml": SPEC.encode()[:60] + b"\x00" + SPEC.encode()[60:],
    "empty_file": b"",
    "only_whitespace": b"  \n\n\t\n   ",
    "only_a_bom": b"\xef\xbb\xbf",
}


@pytest.mark.parametrize("content", BINARY_FILES.values(), ids=list(BINARY_FILES))
def test_files_that_are_not_yaml_text(content, tmp_path, capsys):
    _validate_fails_cleanly(_write(tmp_path, content), capsys)


def test_nul_byte_is_located_where_it_is(tmp_path, capsys):
    # Pointing at 1:1 would be a located error, but not where the NUL is.
    text = SPEC.encode()
    at = text.index(b"kind: rings") + 4
    line = text[:at].count(b"\n") + 1
    out = _validate_fails_cleanly(_write(tmp_path, text[:at] + b"\x00" + text[at:]), capsys)
    assert f"{tmp_path / 'spec.yaml'}:{line}:" in out, out


def test_a_directory_as_the_spec_file(tmp_path, capsys):
    folder = tmp_path / "spec.yaml"
    folder.mkdir()
    code, out, err = _run(["summary", str(folder)], capsys)
    _assert_located_error(code, err, folder)
    # validate opens a folder: it holds no spec files, which is a failure, said plainly
    code, out, err = _run(["validate", str(folder)], capsys)
    assert (code, err) == (1, f"{folder}: no *.yaml or *.yml files in this folder\n")


def test_a_missing_spec_file(tmp_path, capsys):
    _validate_fails_cleanly(tmp_path / "nowhere.yaml", capsys)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads anyway")
def test_an_unreadable_spec_file(tmp_path, capsys):
    path = _write(tmp_path, SPEC.encode())
    path.chmod(0)
    try:
        _validate_fails_cleanly(path, capsys)
    finally:
        path.chmod(0o644)


def test_a_utf8_bom_is_fine(tmp_path, capsys):
    # Windows editors write one; the spec itself is valid.
    path = _write(tmp_path, b"\xef\xbb\xbf" + SPEC.encode())
    code, out, err = _run(["validate", str(path)], capsys)
    assert (code, err) == (0, ""), out + err
    assert out.startswith(f"{path}: valid; "), out


def test_a_utf8_bom_does_not_shift_locations(tmp_path, capsys):
    path = _write(tmp_path, b"\xef\xbb\xbf" + SPEC.replace("epochs: 1", "epochs: -1").encode())
    out = _validate_fails_cleanly(path, capsys)
    assert f"{path}:15:3: error: train.epochs:" in out, out


# --- YAML that must be refused with a located error -------------------------------------------

# Each of these crashed, or was silently accepted, when written; the exact message is the
# fixer's choice, so only the shape of the answer is checked.
MALFORMED_TEXT = {
    # Characters YAML forbids anywhere (the reader refuses them before parsing).
    "control_character": SPEC.replace("epochs: 1", "epochs: 1\x07"),
    "escape_character": SPEC.replace("ring_dnn", "ring\x1b[31mdnn"),
    # Whole documents that are not a mapping.
    "null_document": "~\n",
    "null_word_document": "null\n",
    "explicit_null_document": "--- ~\n",
    "integer_document": "42\n",
    "list_document": "- name: ring_dnn\n",
    # Core tags whose values do not parse: PyYAML raises ValueError/KeyError/AttributeError.
    "int_tag_not_a_number": SPEC.replace("epochs: 1", "epochs: !!int abc"),
    "int_tag_on_a_float": SPEC.replace("epochs: 1", "epochs: !!int 3.5"),
    "float_tag_not_a_number": SPEC.replace("epochs: 1", "epochs: !!float abc"),
    "bool_tag_not_a_bool": SPEC.replace("epochs: 1", "epochs: !!bool maybe"),
    "timestamp_tag_not_a_date": SPEC.replace("name: ring_dnn", "name: !!timestamp soon"),
    "bad_tag_on_a_key": SPEC + "!!int abc: 1\n",
    "python_tag_on_a_key": SPEC + "!!python/name:os.system : 1\n",
    # An integer longer than Python converts from text (4300 digits).
    "integer_of_5000_digits": SPEC.replace("out_features: 4", "out_features: " + "9" * 5000),
    "key_of_5000_digits": SPEC + "? " + "9" * 5000 + "\n: 1\n",
    # Collection tags on scalars: PyYAML builds an empty collection without complaint.
    "map_tag_on_a_scalar": SPEC.replace("train:\n  epochs: 1", "train: !!map abc"),
    "seq_tag_on_a_scalar": SPEC + "metrics: !!seq accuracy\n",
    # Merge keys whose values are not mappings are silently dropped.
    "merge_a_list_of_scalars": SPEC.replace("  epochs: 1", "  <<: [1, 2]\n  epochs: 1"),
    "merge_a_string": SPEC.replace("  epochs: 1", "  <<: hello\n  epochs: 1"),
    "merge_null": SPEC.replace("  epochs: 1", "  <<: ~\n  epochs: 1"),
    "merge_at_the_top": "<<: 5\n" + SPEC,
    # Values tdsl accepts but torch cannot take: found when the spec is used, not checked.
    "seed_beyond_64_bits": "seed: 99999999999999999999999\n" + SPEC,
    "input_size_beyond_64_bits": SPEC.replace("shape: [2]", "shape: [99999999999999999999999]"),
    "input_size_at_int64_max": SPEC.replace("shape: [2]", "shape: [9223372036854775807]"),
    "input_shape_overflowing_memory": SPEC.replace("shape: [2]", "shape: [100000, 100000, 100000]"),
    # `$` in the name pattern matches before a final newline.
    "layer_name_with_a_newline": SPEC.replace("{op: linear, out_features: 4}", NAMED_NEWLINE),
}


@pytest.mark.parametrize("text", MALFORMED_TEXT.values(), ids=list(MALFORMED_TEXT))
def test_malformed_yaml_gives_located_errors(text, tmp_path, capsys):
    path = _write(tmp_path, text.encode("utf-8"))
    _validate_fails_cleanly(path, capsys)


def _loss(extra: str) -> str:
    return SPEC.replace("  kind: bce_with_logits\n", f"  kind: bce_with_logits\n  {extra}\n")


# Arguments whose names validate checks but whose values only torch does, when `tdsl run`
# builds the optimizer, schedule or loss: validate must refuse them, located.
TORCH_REFUSES = {
    "adam_betas_a_word": SPEC + "optimizer: {kind: adam, betas: x}\n",
    "adam_betas_above_one": SPEC + "optimizer: {kind: adam, betas: [2, 3]}\n",
    "adam_negative_eps": SPEC + "optimizer: {kind: adam, eps: -1}\n",
    "sgd_negative_momentum": SPEC + "optimizer: {kind: sgd, lr: 0.1, momentum: -1}\n",
    "lbfgs_needs_a_closure": SPEC + "optimizer: {kind: lbfgs}\n",
    "sparse_adam_on_dense_gradients": SPEC + "optimizer: {kind: sparseadam}\n",
    "cosine_schedule_t_max_zero": (
        SPEC + "optimizer: {kind: sgd, lr: 0.1, schedule: {kind: cosine, T_max: 0}}\n"
    ),
    "loss_reduction_unknown": _loss("reduction: nope"),
    "loss_pos_weight_a_word": _loss("pos_weight: x"),
    "loss_needing_three_inputs": SPEC.replace("bce_with_logits", "nn.TripletMarginLoss"),
    "loss_weight_of_the_wrong_size": _loss("weight: [1, 2, 3]"),
    "param_group_lr_a_word": SPEC + "optimizer: {kind: adam, groups: [{params: ['*'], lr: x}]}\n",
    "device_name_with_a_newline": SPEC + 'device: "cpu\\n"\n',
}


@pytest.mark.parametrize("text", TORCH_REFUSES.values(), ids=list(TORCH_REFUSES))
def test_arguments_torch_refuses_are_located_errors(text, tmp_path, capsys):
    path = _write(tmp_path, text.encode("utf-8"))
    _validate_fails_cleanly(path, capsys)


def test_json_output_of_a_malformed_file(tmp_path, capsys):
    path = _write(tmp_path, random.Random(1).randbytes(512))
    code, out, err = _run(["validate", "--format", "json", str(path)], capsys)
    assert code == 1 and "Traceback" not in out + err
    items = json.loads(out)
    assert items and all(i["file"] == str(path) and i["line"] >= 1 for i in items), items


# --- --set values are YAML too ----------------------------------------------------------------

MALFORMED_OVERRIDES = {
    "nested_5000_deep": "name=" + "[" * 5000 + "]" * 5000,
    "unclosed_5000_deep": "name=" + "[" * 5000,
    "int_tag_not_a_number": "train.epochs=!!int abc",
    "timestamp_tag_not_a_date": "name=!!timestamp soon",
    "integer_of_5000_digits": "train.epochs=" + "9" * 5000,
    "input_shape_overflowing_memory": "model.inputs[0].shape=[100000, 100000, 100000]",
}


@pytest.mark.parametrize("assignment", MALFORMED_OVERRIDES.values(), ids=list(MALFORMED_OVERRIDES))
def test_malformed_overrides(assignment, tmp_path, capsys):
    path = _write(tmp_path, SPEC.encode())
    code, out, err = _run(["validate", str(path), "--set", assignment], capsys)
    assert "Traceback" not in out + err, (out + err)[-3000:]
    assert code == 1, out + err
    located = [m for m in map(LOCATED.match, out.splitlines()) if m]
    assert located, out
    assert {m["file"] for m in located} <= {str(path), "<command line>"}, out


# --- summary and run refuse malformed specs cleanly, and run writes nothing -------------------

FOR_OTHER_COMMANDS = {
    "random_bytes": random.Random(0).randbytes(1024),
    "alias_bomb": None,  # filled in below
    "null_document": b"~\n",
    "input_shape_overflowing_memory": SPEC.replace(
        "shape: [2]", "shape: [100000, 100000, 100000]"
    ).encode(),
    "seed_beyond_64_bits": ("seed: 99999999999999999999999\n" + SPEC).encode(),
    "data_size_beyond_64_bits": SPEC.replace(
        "kind: rings", "kind: rings\n  n_positive: 99999999999999999999999"
    ).encode(),
}


def _alias_bomb(levels: int = 9, width: int = 10) -> str:
    """The billion-laughs shape: each anchor lists the previous one `width` times."""
    lines = ["a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    for level in range(1, levels):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * width) + "]")
    return "\n".join(lines) + "\n" + SPEC


FOR_OTHER_COMMANDS["alias_bomb"] = _alias_bomb().encode()


# `summary` only loads the spec: a seed or data size torch cannot take is run's business.
NOT_LOADABLE = ["random_bytes", "alias_bomb", "null_document", "input_shape_overflowing_memory"]


@pytest.mark.parametrize("name", NOT_LOADABLE)
def test_summary_refuses_malformed_specs(name, tmp_path, capsys):
    path = _write(tmp_path, FOR_OTHER_COMMANDS[name])
    code, out, err = _run(["summary", str(path)], capsys)
    _assert_located_error(code, err, path)
    assert "Traceback" not in out, out


FOR_RUN = {**FOR_OTHER_COMMANDS, **{k: v.encode() for k, v in TORCH_REFUSES.items()}}


@pytest.mark.parametrize("content", FOR_RUN.values(), ids=list(FOR_RUN))
def test_run_refuses_malformed_specs_and_writes_nothing(content, tmp_path, capsys, monkeypatch):
    path = _write(tmp_path, content)
    monkeypatch.chdir(tmp_path)  # where a default run directory would go
    out_dir = tmp_path / "run"
    code, out, err = _run(["run", str(path), "--out", str(out_dir)], capsys)
    _assert_located_error(code, err, path)
    assert "Traceback" not in out, out
    assert not out_dir.exists(), sorted(p.name for p in out_dir.rglob("*"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]


# The spec's name names the default run directory, runs/NAME-TIME.
ODD_NAMES = {
    "nul": '"ring\\0dnn"',
    "lone_surrogate": '"ring\\ud800dnn"',
    "parent_directory": "../outside",
    "absolute_path": "{tmp_path}/elsewhere",  # inside this test's folder, whatever happens
}


@pytest.mark.parametrize("name", ODD_NAMES.values(), ids=list(ODD_NAMES))
def test_run_with_an_odd_name_stays_in_runs(name, tmp_path, capsys, monkeypatch):
    name = name.format(tmp_path=tmp_path)
    path = _write(tmp_path, SPEC.replace("name: ring_dnn", f"name: {name}").encode())
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(["run", str(path)], capsys)
    assert "Traceback" not in out + err, (out + err)[-3000:]
    if code == 0:  # the name was made safe: the run went where it belongs
        written = sorted(p.name for p in tmp_path.iterdir())
        assert written == ["runs", "spec.yaml"], written
        (directory,) = (tmp_path / "runs").iterdir()
        assert (directory / "final.json").exists()
    else:  # refused: say where, and write nothing
        _assert_located_error(code, err, path)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]


# --- inputs that could hang: subprocesses, started together, each under TIME_LIMIT ------------

MEGABYTE = 1 << 20


def _fifty_megabytes() -> bytes:
    # A plausible accident: a data dump pasted into the spec, 10 million numbers.
    head = (SPEC + "weights: [").encode()
    item = b"0.5, "
    return head + item * ((50 * MEGABYTE - len(head)) // len(item)) + b"0]\n"


HANG_PRONE = {
    "fifty_megabytes": _fifty_megabytes,
    "alias_bomb": lambda: _alias_bomb(levels=10).encode(),
    "nested_100000_lists": lambda: (SPEC + "x: " + "[" * 100_000 + "]" * 100_000 + "\n").encode(),
    "nested_100000_mappings": lambda: (
        SPEC + "x: " + "{a: " * 100_000 + "1" + "}" * 100_000 + "\n"
    ).encode(),
    "nested_100000_unclosed": lambda: (SPEC + "x: " + "[" * 100_000 + "\n").encode(),
    "fifo": None,  # a named pipe no one writes to: reading it blocks forever
    # Legitimate but huge recurrent nets: validation runs them on the meta device, step by
    # step and layer by layer, so they may take as long to check as to run.
    "lstm_with_100000_layers": lambda: _lstm(steps=8, layers=100_000),
    "lstm_over_100000_steps": lambda: _lstm(steps=100_000, layers=1),
    "transformer_with_100000_layers": lambda: _transformer(layers=100_000),
}
# Inputs that a right tdsl may also accept: then it must say `valid` in time.
MAY_BE_VALID = {
    "lstm_with_100000_layers",
    "lstm_over_100000_steps",
    "transformer_with_100000_layers",
}


def _transformer(layers: int) -> bytes:
    return f"""\
name: deep_transformer
data:
  kind: random
  target: {{kind: regression, shape: [4, 8]}}
model:
  inputs:
    - {{shape: [4, 8]}}
  layers:
    - {{op: transformer_encoder, nhead: 2, num_layers: {layers}}}
loss: mse
""".encode()


def _lstm(steps: int, layers: int) -> bytes:
    return f"""\
name: big_lstm
data:
  kind: random
  target: {{kind: regression, shape: [1]}}
model:
  inputs:
    - {{shape: [{steps}, 3]}}
  layers:
    - {{op: lstm, hidden_size: 3, num_layers: {layers}}}
    - {{op: item, index: 0}}
    - {{op: select, dim: 1, index: -1}}
    - {{op: linear, out_features: 1}}
loss: mse
""".encode()


# These share one `tdsl validate A B C D` process (each is quick when tdsl is right); the
# others get a process each, since each may hang on its own.
SHARED = ("alias_bomb", "nested_100000_lists", "nested_100000_mappings", "nested_100000_unclosed")


@pytest.fixture(scope="module", autouse=True)
def launched(tmp_path_factory):
    """Every hang-prone case, started when the module starts, so that they run alongside the
    in-process tests: name -> (path, the run it is part of)."""
    folder = tmp_path_factory.mktemp("hang_prone")
    paths = {}
    for name, make in HANG_PRONE.items():
        path = folder / f"{name}.yaml"
        if make is not None:
            path.write_bytes(make())
        elif hasattr(os, "mkfifo"):
            os.mkfifo(path)
        else:
            continue
        paths[name] = path
    groups = [[name] for name in paths if name not in SHARED] + [[n for n in SHARED]]
    started = {}
    for group in groups:
        command = [sys.executable, "-m", "tdsl", "validate", *(str(paths[n]) for n in group)]
        run = {
            "process": subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                errors="replace",
            ),
            "start": time.monotonic(),
            "result": None,
        }
        started.update({name: (paths[name], run) for name in group})
    yield started
    for _path, run in started.values():
        if run["process"].poll() is None:
            run["process"].kill()
            run["process"].wait()


def _finish(run: dict) -> tuple[int, str, str] | None:
    """The run's (exit code, stdout, stderr), or None if it ran past TIME_LIMIT."""
    if run["result"] is None:
        process = run["process"]
        remaining = max(1.0, TIME_LIMIT - (time.monotonic() - run["start"]))
        try:
            out, err = process.communicate(timeout=remaining)
            run["result"] = (process.returncode, out, err)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            run["result"] = "timeout"
    return None if run["result"] == "timeout" else run["result"]


@pytest.mark.parametrize("name", list(HANG_PRONE))
def test_hang_prone_inputs_finish_in_time(name, launched):
    if name not in launched:
        pytest.skip("no named pipes here")
    path, run = launched[name]
    result = _finish(run)
    assert result is not None, f"tdsl validate {name} did not finish within {TIME_LIMIT} s"
    code, out, err = result
    assert "Traceback" not in out + err, (out + err)[-3000:]
    if name in MAY_BE_VALID and code == 0:
        assert out.startswith(f"{path}: valid; "), out[-2000:]
        return
    assert code == 1, f"exit {code}\n{out[-2000:]}{err[-2000:]}"
    mine = "\n".join(line for line in out.splitlines() if line.startswith(f"{path}:"))
    _assert_located_error(code, mine, path)
    assert len(mine) < 10_000, f"{len(mine)} characters of output"

"""The corpus of broken specs: each `tests/corpus/invalid/NN_name.yaml` holds one deliberate
mistake (sometimes several) and `NN_name.expected` the exact text `tdsl validate` prints for it.

Every case asserts the location (line:column), path, message and hint of each diagnostic, that
validation never crashes, and the exit code: 1 when the expected text has an error, 0 for the
warning-only cases. Regenerate the goldens with `TDSL_UPDATE_GOLDENS=1 pytest tests/test_corpus.py`
(then read every changed `.expected` before committing it).
"""

from __future__ import annotations

import importlib.util
import json
import os
import traceback
from pathlib import Path

import pytest
import torch

from tdsl.runs.cli import main

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "corpus" / "invalid"
CASES = sorted(CORPUS.glob("*.yaml"))
UPDATE = bool(os.environ.get("TDSL_UPDATE_GOLDENS"))

# Cases whose expected output describes this (CPU-only) machine.
MACHINE_DEPENDENT = {
    "61_device_cuda_unavailable": (torch.cuda.is_available(), "a CUDA device is present"),
    "104_image_not_an_image": (importlib.util.find_spec("PIL") is None, "Pillow is missing"),
    **{
        name: (importlib.util.find_spec("PIL") is None, "Pillow is missing")
        for name in (
            "seg_mask_missing",
            "seg_mask_size_and_ids",
            "seg_ignore_index_not_skipped",
            "seg_ignore_index_is_a_class",
        )
    },
}
# A few cases for the JSON output: plain errors, a hint-less error, several errors, a warning.
JSON_CASES = [
    "09_unknown_top_level_key",
    "29_split_not_summing_to_one",
    "44_dangling_node",
    "71_many_semantic_errors",
]
JSON_KEYS = {"file", "line", "column", "path", "severity", "message", "hint"}


def _relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _validate(args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """`tdsl validate ARGS` in-process from the repository root: (exit code, stdout, stderr)."""
    monkeypatch.chdir(ROOT)
    try:
        code = main(["validate", *args])
    except SystemExit as exc:  # argparse usage errors
        code = exc.code if isinstance(exc.code, int) else 1
    except Exception:
        out, err = capsys.readouterr()
        pytest.fail(
            f"tdsl validate crashed:\n{traceback.format_exc()}\nstdout:\n{out}\nstderr:\n{err}"
        )
    out, err = capsys.readouterr()
    return code, out, err


def test_the_corpus_has_at_least_50_cases():
    assert len(CASES) >= 50
    for case in CASES:
        assert case.with_suffix(".expected").exists() or UPDATE, f"{case.name} has no .expected"
        first = case.read_text(encoding="utf-8").splitlines()[:1]
        assert first and first[0].startswith("# "), f"{case.name}: start with a '# ...' comment"


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_validate_output_matches_expected(case, monkeypatch, capsys):
    skip, reason = MACHINE_DEPENDENT.get(case.stem, (False, ""))
    if skip:
        pytest.skip(f"expected output assumes a CPU-only machine: {reason}")
    code, out, err = _validate([_relative(case)], monkeypatch, capsys)
    assert "Traceback" not in out + err, f"tdsl printed a traceback:\n{out}{err}"
    golden = case.with_suffix(".expected")
    if UPDATE:
        golden.write_text(out, encoding="utf-8")
    expected = golden.read_text(encoding="utf-8")
    assert out == expected
    assert err == ""
    assert code == (1 if ": error:" in expected else 0)


@pytest.mark.parametrize("stem", JSON_CASES)
def test_json_format_has_every_field(stem, monkeypatch, capsys):
    rel = _relative(CORPUS / f"{stem}.yaml")
    code, out, err = _validate(["--format", "json", rel], monkeypatch, capsys)
    assert "Traceback" not in out + err
    items = json.loads(out)
    assert isinstance(items, list) and items
    for item in items:
        assert set(item) == JSON_KEYS, item
        assert item["file"] == rel
        for key in ("line", "column"):
            assert isinstance(item[key], int) and not isinstance(item[key], bool), item
            assert item[key] >= 1, item
        assert item["severity"] in ("error", "warning")
        assert isinstance(item["path"], str) and item["path"]
        assert isinstance(item["message"], str) and item["message"]
        assert item["hint"] is None or isinstance(item["hint"], str)
    errors = [i for i in items if i["severity"] == "error"]
    assert code == (1 if errors else 0)
    # The JSON items are the text diagnostics, in the same order.
    _, text, _ = _validate([rel], monkeypatch, capsys)
    heads = [line for line in text.splitlines() if ": error: " in line or ": warning: " in line]
    as_text = [
        f"{i['file']}:{i['line']}:{i['column']}: {i['severity']}: {i['path']}: {i['message']}"
        for i in items
    ]
    assert as_text == heads

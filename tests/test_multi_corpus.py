"""Specs with several mistakes in different sections (`tests/corpus/multi/`): one run of
`tdsl validate` reports every one of them, each at its line, and nothing else.

Each line holding a planted mistake ends with `# MISTAKE`. A mistake in one section must
not hide one in another (a typo in `train` hid every model and data check once), and a
broken part must not make errors appear where nothing is wrong. Each case's output is also
kept as a golden (`.expected`); regenerate with `TDSL_UPDATE_GOLDENS=1`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tdsl.runs.cli import main

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "corpus" / "multi"
CASES = sorted(CORPUS.glob("*.yaml"))
UPDATE = bool(os.environ.get("TDSL_UPDATE_GOLDENS"))
HEAD = re.compile(r"^(?P<file>\S+?):(?P<line>\d+):\d+: (?P<severity>error|warning): (?P<path>\S+):")


def _planted(case: Path) -> set[int]:
    lines = case.read_text(encoding="utf-8").splitlines()
    return {number for number, text in enumerate(lines, 1) if text.rstrip().endswith("# MISTAKE")}


def test_the_corpus_has_at_least_20_cases_of_3_mistakes():
    assert len(CASES) >= 20
    for case in CASES:
        assert len(_planted(case)) >= 3, f"{case.name}: plant 3 or more mistakes"


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_every_mistake_is_reported_at_its_line(case, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    code = main(["validate", case.relative_to(ROOT).as_posix()])
    out, err = capsys.readouterr()
    assert err == "" and "Traceback" not in out
    heads = [m for m in map(HEAD.match, out.splitlines()) if m]
    errors = {int(m["line"]) for m in heads if m["severity"] == "error"}
    planted = _planted(case)
    assert planted - errors == set(), f"mistakes not reported:\n{out}"
    assert errors - planted == set(), f"errors where nothing was planted:\n{out}"
    sections = {m["path"].split(".")[0].split("[")[0] for m in heads if int(m["line"]) in planted}
    assert len(sections) >= 3, f"the mistakes are in fewer than 3 sections: {sections}"
    assert code == 1
    golden = case.with_suffix(".expected")
    if UPDATE:
        golden.write_text(out, encoding="utf-8")
    assert out == golden.read_text(encoding="utf-8")

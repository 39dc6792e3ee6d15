"""Spec files are limited while they are read, not after: the size before reading, the node
count while parsing (a 10 MB flow list of millions of nodes took minutes and gigabytes to
compose before its node count was checked)."""

import time
from pathlib import Path

from tdsl.spec.load_dump import read_spec
from tdsl.spec.located_yaml import MAX_NODES


def test_a_huge_flow_list_is_refused_while_parsing(tmp_path):
    path = tmp_path / "big.yaml"
    items = (int(9.8 * 2**20) - 40) // 3
    path.write_text("name: x\nmodel: {layers: [" + "1, " * items + "]}\n")
    started = time.perf_counter()
    spec, problems = read_spec(path)
    elapsed = time.perf_counter() - started
    assert spec is None and len(problems) == 1
    assert f"YAML has more than {MAX_NODES} nodes" in problems[0].message
    assert problems[0].location.line == 2  # where the count ran out, in the list
    assert elapsed < 10, elapsed  # ~0.5 s; composing it first took over a minute


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path, monkeypatch):
    path = tmp_path / "huge.yaml"
    with open(path, "wb") as file:
        file.truncate(100 * 2**20)  # sparse: 100 MB that take no disk space
    spec, problems = read_spec(path)
    assert spec is None
    assert problems[0].format() == (
        f"{path}:1:1: error: <root>: cannot read spec: the spec is 100 MB; "
        "specs are limited to 10 MB"
    )


def test_an_ordinary_spec_is_unaffected():
    spec, problems = read_spec(Path(__file__).parents[1] / "specs" / "ring_dnn.yaml")
    assert problems == [] and spec.name == "ring_dnn"

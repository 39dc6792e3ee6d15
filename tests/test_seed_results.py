"""tools/check_seeds.py, the threshold runner behind `make examples`: its checks judge made-up
outcomes right, every spec has a seed expectation and a comment header, and a short real
run passes or misses as it should. (The full runs take a minute; CI keeps to these.)"""

import importlib.util
import sys
from pathlib import Path

import pytest

import tdsl

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml"))


def _load_runner():
    spec = importlib.util.spec_from_file_location("check_seeds", ROOT / "tools" / "check_seeds.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_seeds"] = module  # attrs classes resolve their module by name
    spec.loader.exec_module(module)
    return module


seeds = _load_runner()


def outcome(**changes) -> "seeds.Outcome":
    values = dict(
        params=61,
        epochs=3,
        first_loss=0.7,
        last_loss=0.2,
        val={"loss": 0.21, "accuracy": 0.92},
        weights={"linear1.weight": [1.96, -3.01], "linear1.bias": [9.84]},
        selections={
            "optimizer.groups[0]": ("linear1.weight",),
            "optimizer.groups[1]": ("linear1.bias",),
        },
    )
    return seeds.Outcome(**{**values, **changes})


def test_parameter_counts_must_match_exactly():
    assert seeds.Params(61).judge(outcome()) == seeds.Verdict("61 parameters", True)
    assert not seeds.Params(62).judge(outcome()).ok


def test_training_means_the_loss_went_down():
    assert seeds.Trains().judge(outcome()) == seeds.Verdict("loss 0.7 → 0.2", True)
    assert not seeds.Trains().judge(outcome(last_loss=0.7)).ok


def test_validation_thresholds_are_inclusive_and_need_the_metric():
    assert seeds.ValAtLeast("accuracy", 0.92).judge(outcome()).ok
    missed = seeds.ValAtLeast("accuracy", 0.93).judge(outcome())
    assert missed == seeds.Verdict("val accuracy 0.9200", False)
    assert seeds.ValAtLeast("auroc", 0.5).judge(outcome()) == seeds.Verdict("no val auroc", False)


def test_linear_weights_are_checked_against_both_tolerances():
    check = seeds.LinearWeights("linear1", (2.0, -3.0), 10.0, 0.1, 0.5)
    assert check.judge(outcome()) == seeds.Verdict("w [1.960, -3.010], b 9.840", True)
    assert not check.judge(
        outcome(weights={"linear1.weight": [2.0, -3.2], "linear1.bias": [10.0]})
    ).ok
    assert not check.judge(
        outcome(weights={"linear1.weight": [2.0, -3.0], "linear1.bias": [9.37]})
    ).ok
    assert check.judge(outcome(weights={})) == seeds.Verdict(
        "no weights of a 'linear1' layer", False
    )


def test_param_groups_must_each_pick_parameters():
    assert seeds.ParamGroups(2).judge(outcome()) == seeds.Verdict(
        "2 param groups of 1 + 1 parameters", True
    )
    empty = outcome(selections={"optimizer.groups[0]": ("w",), "optimizer.groups[1]": ()})
    assert not seeds.ParamGroups(2).judge(empty).ok
    assert not seeds.ParamGroups(2).judge(outcome(selections={})).ok


def test_a_frozen_trunk_must_end_bitwise_as_its_checkpoint():
    import torch

    start = torch.load(ROOT / "specs" / "data" / "digits_cnn.pt", weights_only=True)
    weights = {name: value.flatten().tolist() for name, value in start.items()}
    check = seeds.Unchanged("data/digits_cnn.pt", ("conv1.",))
    assert check.judge(outcome(weights=weights)) == seeds.Verdict("2 of 2 tensors unchanged", True)
    weights["conv1.bias"] = [v + 1e-7 for v in weights["conv1.bias"]]
    assert not check.judge(outcome(weights=weights)).ok
    assert not seeds.Unchanged("data/digits_cnn.pt", ("fc.",)).judge(outcome()).ok


def test_the_table_marks_misses():
    ring = seeds.BY_NAME["ring_dnn"]
    rows = [(ring, outcome(), seeds.judge(ring, outcome()))]
    low = outcome(val={"accuracy": 0.9})
    rows.append((ring, low, seeds.judge(ring, low)))
    lines = seeds.table(rows).splitlines()
    assert lines[0].startswith("| spec | seed setup | must reach | reached |")
    assert lines[2].endswith("| yes |") and lines[3].endswith("| **NO** |")
    assert "val accuracy >= 0.91" in lines[2] and "val accuracy 0.9000" in lines[3]


def test_every_spec_has_a_seed_expectation_a_header_and_its_parameter_count():
    assert seeds.select([], ROOT / "specs") == [
        ROOT / "specs" / f"{seed.spec}.yaml" for seed in seeds.SEEDS
    ]
    for path in SPECS:
        assert path.read_text().startswith("# "), f"{path.name} needs a comment header"
        (count,) = [c.count for c in seeds.BY_NAME[path.stem].checks if isinstance(c, seeds.Params)]
        if "kind: sklearn" in path.read_text() and importlib.util.find_spec("sklearn") is None:
            continue
        if "kind: images" in path.read_text() and importlib.util.find_spec("PIL") is None:
            continue
        assert tdsl.validate(path).param_count == count, path.name


def test_unknown_names_and_specs_without_expectations_are_usage_errors(tmp_path, capsys):
    assert seeds.main(["ring_dn"]) == 2
    assert "no spec 'ring_dn'" in capsys.readouterr().err
    (tmp_path / "mystery.yaml").write_text((ROOT / "specs" / "ring_dnn.yaml").read_text())
    assert seeds.main(["--specs", str(tmp_path)]) == 2
    assert "no seed expectations for mystery" in capsys.readouterr().err


def _short_copy(tmp_path: Path, name: str, epochs: int) -> Path:
    spec = tdsl.load(ROOT / "specs" / f"{name}.yaml")
    text = tdsl.dump(spec).replace(f"epochs: {spec.train.epochs}", f"epochs: {epochs}", 1)
    folder = tmp_path / "specs"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.yaml").write_text(text)
    return folder


def test_a_short_run_passes_when_it_trains(tmp_path, capsys):
    folder = _short_copy(tmp_path, "weight_decay_groups", epochs=3)
    assert seeds.main(["--specs", str(folder), "--out", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "| `weight_decay_groups` |" in out and out.rstrip().endswith("| yes |")
    assert (tmp_path / "runs" / "weight_decay_groups" / "history.jsonl").exists()


def test_a_run_that_misses_its_threshold_fails(tmp_path, capsys):
    folder = _short_copy(tmp_path, "ring_dnn", epochs=1)
    assert seeds.main(["--specs", str(folder)]) == 1
    captured = capsys.readouterr()
    assert "**NO**" in captured.out and "missed: ring_dnn" in captured.err


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_spec_headers_say_what_they_reproduce(path):
    header = [line for line in path.read_text().splitlines() if line.startswith("#")]
    assert 2 <= len(header) <= 8 and "seed" in " ".join(header).lower()

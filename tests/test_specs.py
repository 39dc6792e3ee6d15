"""Every spec in specs/: valid, the seeds' parameter counts, golden summaries, and a short
end-to-end run."""

import importlib.util
import os
from pathlib import Path

import attrs
import pytest

import tdsl
from tdsl.runs.directories import run

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml"))

# The counts the seeds print for these models (torchkeras summaries).
SEED_PARAMETER_COUNTS = {
    "ring_dnn": 61,
    "ring_focal_l1l2": 61,
    "weight_decay_groups": 61,
    "tabular": 651,
    "image_cnn": 54_273,
    "text_cnn": 40_625,
    "timeseries_lstm": 492,
    "digits_cnn": 53_994,
    "finetune_digits": 53_730,
    "linear_regression": 3,
    "gpt_adder": 102_144,
    "char_lm": 110_336,
    "multitask": 290,
    "unet_shapes": 29_508,
}
# Language models and the U-Net train on fewer rows here (the full runs are `make examples`).
SHORT_DATA = {"gpt_adder": {"n": 2000}, "char_lm": {"stride": 16}, "unet_shapes": {"n": 200}}
GOLDEN = ROOT / "tests" / "golden"


def skip_without_pillow(path: Path) -> None:
    """Image specs read PNGs with Pillow, and `kind: sklearn` specs need scikit-learn:
    optional extras (in `dev`)."""
    if "kind: images" in path.read_text() and importlib.util.find_spec("PIL") is None:
        pytest.skip("reading images needs Pillow: pip install 'tdsl[images]'")
    if "kind: sklearn" in path.read_text() and importlib.util.find_spec("sklearn") is None:
        pytest.skip("the sklearn data sets need scikit-learn: pip install 'tdsl[sklearn]'")


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_spec_is_valid_with_the_seed_parameter_count(path):
    skip_without_pillow(path)
    report = tdsl.validate(path)
    assert report.ok, report.format()
    assert not report.warnings, report.format()
    assert report.param_count == SEED_PARAMETER_COUNTS[path.stem]


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_summary_matches_golden(path):
    golden = GOLDEN / f"summary_{path.stem}.txt"
    text = tdsl.summary(path) + "\n"
    if os.environ.get("TDSL_UPDATE_GOLDENS") or not golden.exists():
        golden.write_text(text)
    assert text == golden.read_text()
    assert f"Total params: {SEED_PARAMETER_COUNTS[path.stem]:,}" in text


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_spec_runs_end_to_end(path, tmp_path):
    skip_without_pillow(path)
    spec = tdsl.load(path)
    short = attrs.evolve(spec, train=attrs.evolve(spec.train, epochs=2))
    if path.stem in SHORT_DATA:
        short = attrs.evolve(short, data=attrs.evolve(spec.data, **SHORT_DATA[path.stem]))
    directory, result = run(short, tmp_path / path.stem)
    assert len(result.history) == 2
    first, last = result.history[0], result.history[-1]
    assert all(value == value for value in last.values()), last  # no NaN
    assert (directory / "checkpoints" / "best.pt").exists()
    assert last["loss"] <= first["loss"] * 1.5


def test_summary_has_a_row_per_layer_with_shapes():
    text = tdsl.summary(ROOT / "specs" / "text_cnn.yaml")
    assert "embedding   embedding" in text and "[B, 200, 3] float32" in text
    assert "[B, 6144] float32" in text and "30,000" in text

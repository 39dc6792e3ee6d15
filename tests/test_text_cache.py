"""A run directory's token cache (data_cache/): a cached load equals a fresh one, and a
changed file, changed settings or another vocabulary are tokenized again, never served
from the cache."""

from __future__ import annotations

import json
import os
import shutil
from shutil import ignore_patterns

import attrs
import pytest
import torch

import tdsl
from tdsl import spec as S
from tdsl.data import clear_cache, load_data, text, text_encoding, text_lm
from tdsl.runs.cli import main
from tdsl.runs.data_cache import keep_token_ids, run_data_cache
from tdsl.runs.directories import evaluate_run, run
from tdsl.runs.resuming import resume

LM_SPEC = """
name: lm
seed: 0
data: {{kind: text_lm, file: {file}, tokenizer: {tokenizer}, block_size: 4, vocab_size: 40}}
model:
  inputs: [{{shape: [4], dtype: int64}}]
  layers:
    - {{op: embedding, num_embeddings: 40, embedding_dim: 4}}
    - {{op: linear, out_features: 40}}
loss: {{kind: cross_entropy, class_dim: -1}}
optimizer: {{kind: sgd, lr: 0.1}}
train: {{epochs: 1, batch_size: 16}}
"""

TEXT_SPEC = """
name: tc
seed: 0
data: {{kind: text, file: {file}, val_file: {val}, length: 5, vocab_size: 30}}
model:
  inputs: [{{shape: [5], dtype: int64}}]
  layers:
    - {{op: embedding, num_embeddings: 30, embedding_dim: 2}}
    - {{op: flatten}}
    - {{op: linear, out_features: 1}}
loss: bce_with_logits
optimizer: {{kind: sgd, lr: 0.1}}
train: {{epochs: 1, batch_size: 8}}
"""

TALE = "The cat sat on the mat; a dog ran. Ünïcode 😀 too!\n" * 30


@pytest.fixture
def counted(monkeypatch):
    """How often each source tokenized a text."""
    calls = {"text_lm": 0, "text": 0}
    real_tokens, real_rows = text_lm._Tokens, text_encoding.tokenized_rows

    def tokens(*args):
        calls["text_lm"] += 1
        return real_tokens(*args)

    def rows(*args):
        calls["text"] += 1
        return real_rows(*args)

    monkeypatch.setattr(text_lm, "_Tokens", tokens)
    monkeypatch.setattr(text_encoding, "tokenized_rows", rows)
    clear_cache()
    yield calls
    clear_cache()


def lm_spec(tmp_path, tokenizer: str = "char") -> S.Spec:
    return tdsl.load(LM_SPEC.format(file=tmp_path / "tale.txt", tokenizer=tokenizer))


def same(a, b) -> None:
    for name in ("train", "val"):
        x, y = getattr(a, name), getattr(b, name)
        assert torch.equal(x.features[0], y.features[0]) and torch.equal(x.target, y.target)
    assert a.fitted == b.fitted


def load_in(directory, spec, fitted=None):
    clear_cache()  # a fresh process, as far as the in-memory cache goes
    with run_data_cache(directory):
        return load_data(spec, fitted)


@pytest.mark.parametrize("tokenizer", ["char", "regex"])
def test_a_cached_load_equals_a_fresh_one_without_tokenizing(tmp_path, counted, tokenizer):
    (tmp_path / "tale.txt").write_text(TALE)
    spec = lm_spec(tmp_path, tokenizer)
    fresh = load_data(spec)
    filled = load_in(tmp_path / "run", spec)
    assert sorted(p.name for p in (tmp_path / "run" / "data_cache").iterdir())[-1] == "text_lm.json"
    calls = counted["text_lm"]
    cached = load_in(tmp_path / "run", spec)
    again = load_in(tmp_path / "run", spec, fresh.fitted)  # resume, eval: the run's vocabulary
    assert counted["text_lm"] == calls  # neither tokenized
    same(cached, fresh), same(filled, fresh), same(again, fresh)


def test_a_changed_file_is_tokenized_again_even_with_its_size_and_time(tmp_path, counted):
    path = tmp_path / "tale.txt"
    path.write_text(TALE)
    spec = lm_spec(tmp_path)
    load_in(tmp_path / "run", spec)
    before = os.stat(path)
    path.write_text(TALE.replace("cat", "bat"))  # same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    calls = counted["text_lm"]
    cached = load_in(tmp_path / "run", spec)
    assert counted["text_lm"] == calls + 1
    clear_cache()
    same(cached, load_data(spec))
    assert "b" in cached.fitted.state["tokens"]


def test_changed_settings_or_another_vocabulary_miss(tmp_path, counted):
    (tmp_path / "tale.txt").write_text(TALE)
    spec = lm_spec(tmp_path)
    load_in(tmp_path / "run", spec)
    lower = attrs.evolve(spec, data=attrs.evolve(spec.data, lowercase=True))
    calls = counted["text_lm"]
    cached = load_in(tmp_path / "run", lower)
    assert counted["text_lm"] == calls + 1
    clear_cache()
    same(cached, load_data(lower))
    # block_size only cuts windows: the same ids serve it.
    wider = attrs.evolve(lower, data=attrs.evolve(lower.data, block_size=3))
    calls = counted["text_lm"]
    load_in(tmp_path / "run", wider)
    assert counted["text_lm"] == calls
    # Another vocabulary (transforms.json edited, or another run's) is not served.
    other = load_data(attrs.evolve(spec, data=attrs.evolve(spec.data, vocab_size=5))).fitted
    clear_cache()
    expected = load_data(lower, other)
    assert torch.equal(load_in(tmp_path / "run", lower, other).train.target, expected.train.target)


def test_a_damaged_or_linked_cache_is_not_used(tmp_path, counted):
    (tmp_path / "tale.txt").write_text(TALE)
    spec = lm_spec(tmp_path)
    fresh = load_data(spec)
    load_in(tmp_path / "run", spec)
    folder = tmp_path / "run" / "data_cache"
    (array,) = folder.glob("*.bin")
    array.write_bytes(array.read_bytes()[:-1])
    calls = counted["text_lm"]
    same(load_in(tmp_path / "run", spec), fresh)  # tokenized again, and stored again
    assert counted["text_lm"] == calls + 1
    # A link where the cache folder goes: neither read nor written through.
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / "data_cache").symlink_to(tmp_path / "elsewhere")
    same(load_in(tmp_path / "linked", spec), fresh)
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_text_rows_are_cached_per_file_with_the_vocabulary(tmp_path, counted):
    lines = [f"{i % 2}\tthe cat number {i} sat {'on the mat' * (i % 3)}" for i in range(40)]
    (tmp_path / "t.txt").write_text("\n".join(lines[:30]))
    (tmp_path / "v.txt").write_text("\n".join(lines[30:]))
    spec = tdsl.load(TEXT_SPEC.format(file=tmp_path / "t.txt", val=tmp_path / "v.txt"))
    fresh = load_data(spec)
    load_in(tmp_path / "run", spec)
    calls = counted["text"]
    same(load_in(tmp_path / "run", spec), fresh)
    same(load_in(tmp_path / "run", spec, fresh.fitted), fresh)
    assert counted["text"] == calls
    (tmp_path / "v.txt").write_text("\n".join(lines[31:]))  # the validation file changed
    changed = load_in(tmp_path / "run", spec)
    assert counted["text"] > calls and len(changed.val) == 9


def test_a_run_keeps_its_token_ids_and_eval_reuses_them(tmp_path, counted):
    (tmp_path / "tale.txt").write_text(TALE)
    spec = lm_spec(tmp_path)
    directory, _ = run(spec, tmp_path / "run", progress=False)
    assert (directory / "data_cache" / "text_lm.json").is_file()
    calls = counted["text_lm"]
    assert calls == 1  # validating and loading tokenized once
    clear_cache()
    scores = evaluate_run(directory)
    assert counted["text_lm"] == calls and "val" in scores
    keep_token_ids(directory)  # nothing left to write: no error, no change


def test_tdsl_run_tokenizes_once_and_resume_reuses_the_ids(tmp_path, counted, capsys):
    (tmp_path / "tale.txt").write_text(TALE)
    spec = tmp_path / "lm.yaml"
    # A relative data path: the run's spec.yaml holds it absolute, the same ids.
    spec.write_text(LM_SPEC.format(file="tale.txt", tokenizer="whitespace"))
    out = tmp_path / "lm"
    assert main(["run", str(spec), "--out", str(out)]) == 0
    assert counted["text_lm"] == 1  # validate, compile and load: one tokenization
    assert (out / "data_cache" / "text_lm.json").is_file()
    clear_cache()  # as a new process: resume validates and loads from data_cache/
    result = resume(out, progress=False)
    assert counted["text_lm"] == 1 and len(result.history) == 1


def test_export_reuses_the_runs_token_ids(tmp_path, counted):
    from tdsl.runs.export import export_run

    (tmp_path / "tale.txt").write_text(TALE)
    directory, _ = run(lm_spec(tmp_path), tmp_path / "run", progress=False)
    calls = counted["text_lm"]
    clear_cache()  # as `tdsl export` in a new process
    exported = export_run(directory, "torchscript")
    assert exported.source == "seeded rows and val rows"  # and the run's own rows
    assert counted["text_lm"] == calls


def test_eval_data_reuses_the_ids_of_the_runs_own_files_only(tmp_path, counted):
    from tdsl.runs.eval_data import evaluate_file

    lines = [f"{i % 2}\tthe cat number {i} sat {'on the mat' * (i % 3)}" for i in range(40)]
    (tmp_path / "t.txt").write_text("\n".join(lines[:30]))
    (tmp_path / "v.txt").write_text("\n".join(lines[30:]))
    (tmp_path / "new.txt").write_text("\n".join(lines[5:25]))
    spec = tdsl.load(TEXT_SPEC.format(file=tmp_path / "t.txt", val=tmp_path / "v.txt"))
    directory, _ = run(spec, tmp_path / "run", progress=False)
    entry = (directory / "data_cache" / "text.json").read_bytes()
    calls = counted["text"]
    scores = {}
    for name in ("v.txt", "t.txt", "new.txt"):
        clear_cache()  # each as `tdsl eval RUN --data FILE` in a new process
        scores[name] = evaluate_file(directory, tmp_path / name)
    assert counted["text"] == calls + 1  # only the file the run never tokenized
    keep_token_ids(directory)  # a later writing use: the run's entry stays the run's
    assert (directory / "data_cache" / "text.json").read_bytes() == entry
    uncached = shutil.copytree(directory, tmp_path / "copy", ignore=ignore_patterns("data_cache"))
    for name in ("v.txt", "t.txt"):  # the cached ids score as freshly made ones
        clear_cache()
        calls = counted["text"]
        fresh = evaluate_file(uncached, tmp_path / name)
        assert counted["text"] > calls
        assert fresh.metrics == scores[name].metrics and fresh.rows == scores[name].rows


@pytest.mark.parametrize("kind", ["binary", "class", "regression"])
def test_a_cache_hit_parses_no_label_line(tmp_path, counted, monkeypatch, kind):
    label = {"binary": lambda i: i % 2, "class": lambda i: "ab"[i % 2], "regression": float}[kind]
    lines = [f"{label(i)}\tthe cat number {i} sat {'on the mat' * (i % 3)}" for i in range(40)]
    (tmp_path / "t.txt").write_text("\n".join(lines[:30]))
    (tmp_path / "v.txt").write_text("\n".join(lines[30:]))
    spec = tdsl.load(TEXT_SPEC.format(file=tmp_path / "t.txt", val=tmp_path / "v.txt"))
    spec = attrs.evolve(spec, data=attrs.evolve(spec.data, target_kind=kind))
    fresh = load_data(spec)
    load_in(tmp_path / "run", spec)

    def parsed(*args):
        raise AssertionError("a label line was parsed on a cache hit")

    with monkeypatch.context() as patch:
        patch.setattr(text, "_read", parsed)
        patch.setattr(text, "read_targets", parsed)
        for fitted in (None, fresh.fitted):  # a new load, and resume or eval
            hit = load_in(tmp_path / "run", spec, fitted)
            same(hit, fresh)
            assert hit.train.target.dtype == fresh.train.target.dtype
            assert hit.val.target.shape == fresh.val.target.shape
    # An entry written before labels were kept: its ids serve, the labels are parsed.
    meta_file = tmp_path / "run" / "data_cache" / "text.json"
    meta = json.loads(meta_file.read_text())
    del meta["labels"]
    meta_file.write_text(json.dumps(meta))
    same(load_in(tmp_path / "run", spec), fresh)
    # The key is as strict as before: a file with one label changed is read again.
    text_30 = lines[30].partition("\t")[2]
    (tmp_path / "v.txt").write_text("\n".join([f"{label(31)}\t{text_30}", *lines[31:]]))
    changed = load_in(tmp_path / "run", spec, fresh.fitted)
    clear_cache()
    expected = load_data(spec, fresh.fitted)
    assert torch.equal(changed.val.target, expected.val.target)
    assert not torch.equal(changed.val.target, fresh.val.target)


def _as_before_labels(folder) -> None:
    """Rewrite `folder`'s text entry as it was written before entries kept the targets."""
    meta = json.loads((folder / "text.json").read_text())
    for array in [a for a in meta["arrays"] if a.endswith(":target")]:
        (folder / meta["arrays"].pop(array)[0]).unlink()
        del meta["bounds"][array]
    del meta["labels"]
    (folder / "text.json").write_text(json.dumps(meta))


def test_a_hit_on_an_entry_without_labels_adds_them(tmp_path, counted, monkeypatch):
    lines = [f"{'ab'[i % 2]}\tthe cat number {i} sat {'on the mat' * (i % 3)}" for i in range(40)]
    (tmp_path / "t.txt").write_text("\n".join(lines[:30]))
    (tmp_path / "v.txt").write_text("\n".join(lines[30:]))
    spec = tdsl.load(TEXT_SPEC.format(file=tmp_path / "t.txt", val=tmp_path / "v.txt"))
    spec = attrs.evolve(spec, data=attrs.evolve(spec.data, target_kind="class"))
    fresh = load_data(spec)
    folder = tmp_path / "run" / "data_cache"
    load_in(tmp_path / "run", spec)
    parsed, real_read = [], text._read
    monkeypatch.setattr(text, "_read", lambda *args: parsed.append(1) or real_read(*args))
    calls = counted["text"]
    for fitted in (None, fresh.fitted):
        _as_before_labels(folder)
        before = len(parsed)
        same(load_in(tmp_path / "run", spec, fitted), fresh)  # parses, and adds the labels
        assert len(parsed) == before + 2  # both files
        assert "labels" in json.loads((folder / "text.json").read_text())
        same(load_in(tmp_path / "run", spec, fitted), fresh)
        assert len(parsed) == before + 2  # the next hit parses no line
    assert counted["text"] == calls  # the ids were the entry's throughout
    # Read only (a run's validation, `eval`): kept until a writing use, and used meanwhile.
    _as_before_labels(folder)
    clear_cache()
    with run_data_cache(tmp_path / "run", write=False):
        same(load_data(spec), fresh)
        same(load_data(spec, fresh.fitted), fresh)  # not the same load: prepared again
    assert len(parsed) == 6
    assert "labels" not in json.loads((folder / "text.json").read_text())
    keep_token_ids(tmp_path / "run")
    assert "labels" in json.loads((folder / "text.json").read_text())


CLASS_SPEC = TEXT_SPEC.replace("out_features: 1", "out_features: 4").replace(
    "loss: bce_with_logits", "loss: cross_entropy"
)


@pytest.mark.parametrize("kind", ["binary", "class"])
def test_eval_data_on_the_runs_own_file_parses_no_label_line(tmp_path, counted, kind):
    from tdsl.runs.eval_data import evaluate_file

    # Class labels 0..3 in the training file, 0..1 in the validation file: eval of the
    # latter alone has two classes, as when its lines are parsed.
    label = (lambda i: i % 2) if kind == "binary" else (lambda i: i % 4 if i < 30 else i % 2)
    lines = [f"{label(i)}\tthe cat number {i} sat {'on the mat' * (i % 3)}" for i in range(40)]
    (tmp_path / "t.txt").write_text("\n".join(lines[:30]))
    (tmp_path / "v.txt").write_text("\n".join(lines[30:]))
    written = TEXT_SPEC if kind == "binary" else CLASS_SPEC
    spec = tdsl.load(written.format(file=tmp_path / "t.txt", val=tmp_path / "v.txt"))
    spec = attrs.evolve(spec, data=attrs.evolve(spec.data, target_kind=kind))
    directory, _ = run(spec, tmp_path / "run", progress=False)
    uncached = shutil.copytree(directory, tmp_path / "copy", ignore=ignore_patterns("data_cache"))
    parsed, real_read = [], text._read

    def read(*args):
        parsed.append(args[1])
        return real_read(*args)

    for name in ("v.txt", "t.txt"):
        clear_cache()  # as `tdsl eval RUN --data FILE` in a new process
        expected = evaluate_file(uncached, tmp_path / name)  # parses the file's lines
        clear_cache()
        parsed.clear()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(text, "_read", read)
            scores = evaluate_file(directory, tmp_path / name)
        assert parsed == []  # the run's entry held the file's targets too
        assert scores.metrics == expected.metrics and scores.rows == expected.rows
        assert scores.confusion is None or (scores.confusion == expected.confusion).all()
        assert _eval_signature(directory, tmp_path / name) == _eval_signature(
            uncached, tmp_path / name
        )


def _eval_signature(directory, path):
    """The data signature `eval --data` gets for `path`, with the run's cache."""
    from tdsl.data import context, prepare
    from tdsl.runs.eval_data import _spec_for
    from tdsl.runs.inference import load_model

    clear_cache()
    model = load_model(directory)
    spec = _spec_for(model.spec, path)
    with run_data_cache(directory, write=False, keep_new=False):
        return prepare(spec.data, context(spec), model.fitted)[1]

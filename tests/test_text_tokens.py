"""The vectorized tokenization (tdsl/data/token_ids.py) gives exactly the ids of the plain
per-token loops it replaced: the references below are those loops, kept verbatim, run over
a corpus with the awkward parts of real text."""

from __future__ import annotations

import itertools
import re
from collections import Counter

import pytest
import torch

from tdsl import spec as S
from tdsl.data import text, text_lm, token_ids
from tdsl.data.base import Context
from tdsl.data.tensors import split_index
from tdsl.data.vocabulary import Vocabulary, split_tokens

# Unicode beyond the BMP, a final sigma and a dotted capital I (lowercasing depends on the
# context or makes two characters), tabs and no-break spaces in the text, CRLF and a lone CR
# (universal newlines), blank lines, a line of no tokens, unit separators (whitespace to
# str.split, not line ends), apostrophes, and a long line to cut.
LINES = [
    "1\tThe cat sat on the mat",
    "0\tΣΟΦΟΣ ΟΔΟΣ İstanbul İİ straße",
    "1\tdon't\tstop 😀😀 the cat\u00a0sat",
    "",
    "0\t   ",
    "1\tword\x1fword\u3000word\u2000word",
    "0\t" + " ".join(f"w{i % 7}" for i in range(40)),
    "1\tcat CAT Cat cAt, the; THE!",
    "0\t\tleading tab and trailing space ",
    "1\t日本語 の テキスト",
    "0\tmixed\r\n1\tafter a CRLF\r0\tafter a lone CR",
]
CORPUS = "\n".join(LINES) + "\n"


def old_tokenize(source: S.Text, value: str) -> list[str]:
    if source.lowercase:
        value = value.lower()
    if source.tokenizer == "whitespace":
        return value.split()
    return re.findall(source.pattern, value)


def old_fit_vocab(source: S.Text, texts: list[str]) -> dict[str, int]:
    counts = Counter(token for t in texts for token in old_tokenize(source, t))
    ranked = sorted(
        (t for t, c in counts.items() if c >= source.min_freq), key=lambda t: (-counts[t], t)
    )
    reserved = {source.pad_id, source.unknown_id}
    ranked = ranked[: max(0, source.vocab_size - len(reserved))]
    free = (i for i in itertools.count() if i not in reserved)
    return dict(zip(ranked, free, strict=False))


def old_encode(source: S.Text, vocab: dict[str, int], texts: list[str]) -> torch.Tensor:
    out = torch.full((len(texts), source.length), source.pad_id, dtype=torch.long)
    for row, value in enumerate(texts):
        ids = [vocab.get(token, source.unknown_id) for token in old_tokenize(source, value)]
        if len(ids) > source.length:
            ids = ids[-source.length :] if source.truncation == "pre" else ids[: source.length]
        if ids:
            if source.padding == "pre":
                out[row, source.length - len(ids) :] = torch.tensor(ids)
            else:
                out[row, : len(ids)] = torch.tensor(ids)
    return out


def labelled_texts(path) -> list[str]:
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    return [line.partition("\t")[2] for line in lines if line.strip()]


TEXT_SETTINGS = [
    {"tokenizer": "regex", "lowercase": True},
    {"tokenizer": "regex", "lowercase": False, "padding": "post", "truncation": "post"},
    {"tokenizer": "whitespace", "lowercase": True, "padding": "post"},
    {"tokenizer": "whitespace", "lowercase": False, "truncation": "post", "min_freq": 2},
    {"tokenizer": "regex", "pattern": r"\S+|\s", "vocab_size": 6, "pad_id": 0, "unknown_id": 3},
]


@pytest.mark.parametrize("settings", TEXT_SETTINGS)
def test_text_ids_and_vocabulary_are_the_per_token_loops(tmp_path, settings):
    (tmp_path / "t.txt").write_bytes(("\ufeff" + CORPUS).encode("utf-8"))
    source = S.Text(file="t.txt", length=7, split=S.Split(train=0.6, val=0.4), **settings)
    splits, _ = text.prepare(source, Context(tmp_path, seed=3))
    texts = labelled_texts(tmp_path / "t.txt")
    index = split_index(len(texts), source.split, torch.Generator().manual_seed(3))
    vocab = old_fit_vocab(source, [texts[i] for i in index.train.tolist()])
    assert splits.fitted.state["vocab"] == vocab
    assert list(splits.fitted.state["vocab"]) == list(vocab)  # the same order too
    rows = old_encode(source, vocab, texts)
    assert torch.equal(splits.train.features[0], rows[index.train])
    assert torch.equal(splits.val.features[0], rows[index.val])
    # A file of the texts alone (prediction): the fitted vocabulary, unknowns and all.
    assert torch.equal(text.encode(source, vocab, texts[::-1], torch.long), rows.flip(0))


def old_lm_ids(source: S.TextLM, corpus: str) -> tuple[Vocabulary, torch.Tensor]:
    tokens = split_tokens(corpus, source.tokenizer, source.pattern, source.lowercase)
    start, end = text_lm._bounds(len(tokens), source.split)["train"]
    counts = Counter(tokens[start:end])
    kept = [t for t, c in counts.items() if c >= source.min_freq]
    if source.tokenizer == "char":
        kept.sort()
    else:
        kept.sort(key=lambda t: (-counts[t], t))
    if source.vocab_size is not None:
        if source.tokenizer == "char":
            frequent = set(sorted(kept, key=lambda t: (-counts[t], t))[: source.vocab_size - 1])
            kept = [t for t in kept if t in frequent]
        kept = kept[: source.vocab_size - 1]
    vocabulary = Vocabulary((None, *kept), 0, source.tokenizer, source.pattern, source.lowercase)
    lookup = vocabulary.ids
    return vocabulary, torch.tensor([lookup.get(t, 0) for t in tokens], dtype=torch.long)


LM_SETTINGS = [
    {"tokenizer": "char"},
    {"tokenizer": "char", "lowercase": True, "vocab_size": 12},
    {"tokenizer": "char", "min_freq": 2},
    {"tokenizer": "whitespace", "lowercase": True},
    {"tokenizer": "regex", "vocab_size": 9},
    {"tokenizer": "regex", "pattern": r"\w+|\s+", "min_freq": 2},
]


@pytest.mark.parametrize("settings", LM_SETTINGS)
def test_language_model_ids_are_the_per_token_loops(tmp_path, settings):
    (tmp_path / "lm.txt").write_text(CORPUS * 3, encoding="utf-8", newline="")
    source = S.TextLM(file="lm.txt", block_size=4, split=S.Split(train=0.7, val=0.3), **settings)
    splits, _ = text_lm.prepare(source, Context(tmp_path))
    corpus = (tmp_path / "lm.txt").read_text(encoding="utf-8")  # CR and CRLF as newlines
    vocabulary, ids = old_lm_ids(source, corpus)
    assert splits.fitted.state == vocabulary.state()
    bounds = text_lm._bounds(len(ids), source.split)
    for name, (start, end) in bounds.items():
        expected = text_lm._windows(ids[start:end], source)
        got = getattr(splits, name)
        assert torch.equal(got.features[0], expected.features[0])
        assert torch.equal(got.target, expected.target)
    # Re-applied from the run's transforms (resume, eval): the same ids.
    again, _ = text_lm.prepare(source, Context(tmp_path), splits.fitted)
    assert torch.equal(again.val.target, splits.val.target)


def test_rows_made_a_block_at_a_time_are_the_same(monkeypatch):
    texts = labelled_texts_of(CORPUS)
    source = S.Text(file="t.txt", length=4, tokenizer="whitespace", padding="post")
    vocab = old_fit_vocab(source, texts)
    expected = old_encode(source, vocab, texts)
    monkeypatch.setattr(token_ids, "ROWS", 3)  # blocks that end inside the corpus
    assert torch.equal(text.encode(source, vocab, texts, torch.long), expected)


def labelled_texts_of(corpus: str) -> list[str]:
    return [line.partition("\t")[2] for line in corpus.splitlines() if line.strip()]


def test_words_split_a_piece_at_a_time_are_the_same(tmp_path, monkeypatch):
    monkeypatch.setattr(token_ids, "CHUNK", 2)  # pieces of 8 characters: cuts everywhere
    test_language_model_ids_are_the_per_token_loops(tmp_path, {"tokenizer": "whitespace"})

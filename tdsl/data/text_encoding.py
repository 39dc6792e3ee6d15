"""A text source's token ids: the tokenizer, the vocabulary fitted on the training rows,
each text as a row of fixed length, and the run's token cache entry that keeps them with
the targets read from the same lines (`token_cache`; a hit parses no line).

Tokens are the matches of a regex (or whitespace-separated words), optionally lowercased.
The vocabulary is fitted on the training texts only: the most frequent tokens (ties in
alphabetical order) with at least `min_freq` occurrences get the ids left free by the
reserved padding and unknown ids, up to `vocab_size` ids in all.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping

import attrs
import numpy as np
import torch

from tdsl import spec as S
from tdsl.data import token_cache
from tdsl.data.base import Context
from tdsl.data.fitted import Fitted
from tdsl.data.token_ids import counts as token_counts
from tdsl.data.token_ids import fixed_length, lookup, tokenized_rows

FILES = ("file", "val_file", "test_file")  # the source's fields that name a file


def tokenize(source: S.Text, text: str) -> list[str]:
    return tokenizer(source)(text)


def tokenizer(source: S.Text) -> Callable[[str], list[str]]:
    """The source's tokenizer as one function of a text (looked up once, called per line)."""
    split = str.split if source.tokenizer == "whitespace" else re.compile(source.pattern).findall
    if source.lowercase:  # per text, as a whole: lowercasing a final sigma depends on context
        return lambda text: split(text.lower())
    return split


def fit_vocab(source: S.Text, texts: list[str]) -> dict[str, int]:
    codes, uniques, _ = tokenized_rows(texts, tokenizer(source))
    return ranked_vocab(source, token_counts(codes, uniques))


def ranked_vocab(source: S.Text, counted: Mapping[str, int]) -> dict[str, int]:
    """The most frequent tokens (ties in alphabetical order) with ids, around the reserved."""
    ranked = sorted(
        (t for t, c in counted.items() if c >= source.min_freq), key=lambda t: (-counted[t], t)
    )
    reserved = {source.pad_id, source.unknown_id}
    ranked = ranked[: max(0, source.vocab_size - len(reserved))]
    free = (i for i in itertools.count() if i not in reserved)
    return dict(zip(ranked, free, strict=False))


def encode(
    source: S.Text, vocab: dict[str, int], texts: list[str], dtype: torch.dtype
) -> torch.Tensor:
    rows = encoded(source, vocab, *tokenized_rows(texts, tokenizer(source)))
    return torch.from_numpy(rows).to(dtype)


def encoded(
    source: S.Text,
    vocab: Mapping[str, int],
    codes: np.ndarray,
    uniques: list[str],
    lengths: np.ndarray,
) -> np.ndarray:
    """Rows of `source.length` ids (int64) from tokenized texts (`token_ids.tokenized_rows`)."""
    table = lookup(uniques, vocab, source.unknown_id)
    return fixed_length(
        codes, table, lengths, source.length, source.pad_id, source.padding, source.truncation
    )


def ids(
    source: S.Text, texts: dict[str, list[str]], index, fitted: Fitted | None
) -> tuple[dict[str, int], dict[str, np.ndarray]]:
    """The vocabulary (fitted's, or fitted on the `index.train` rows of the training file)
    and each file's rows of ids (int64)."""
    split = tokenizer(source)
    tokens = tokenized_rows(texts["file"], split)  # once: for the vocabulary and the ids
    if fitted is None:
        codes, uniques, lengths = tokens
        # Each token counted as often as its text is drawn for training.
        drawn = np.bincount(index.train.numpy(), minlength=len(lengths))
        counted = token_counts(codes, uniques, np.repeat(drawn.astype(np.float64), lengths))
        vocab = ranked_vocab(source, counted)
    else:
        vocab = fitted.state["vocab"]
    ids = {"file": encoded(source, vocab, *tokens)}
    for other in ("val_file", "test_file"):
        if other in texts:
            ids[other] = encoded(source, vocab, *tokenized_rows(texts[other], split))
    return vocab, ids


def cache_key(source: S.Text, ctx: Context, digests: dict[str, str | None]) -> dict | None:
    """The token cache's key for these files (their bytes' SHA-256) and settings; None
    where no cache is in use."""
    if token_cache.active() is None or not all(digests.values()):
        return None
    settings = attrs.asdict(source, filter=lambda a, _: a.name not in FILES)
    return token_cache.key("text", {**settings, "seed": ctx.seed}, digests)


def cached(key: dict | None, fitted: Fitted | None) -> tuple[token_cache.Entry | None, bool]:
    """The cache's entry for `key`, made with the fitted vocabulary where one is given, and
    whether it is `key`'s own entry (not the run's, serving its files read another way)."""
    if key is None:
        return None, False
    given = None if fitted is None else fitted.state["vocab"]
    cached = token_cache.find("text", key, given)
    if cached is None and given is not None:
        # With the vocabulary known, a file's ids do not depend on the split or seed:
        # the run's entry serves its files read another way (`eval --data`), with their
        # targets (`kept_labels`).
        return token_cache.find_files("text", key, given, ("split", "seed")), False
    return cached, cached is not None


def kept_labels(source: S.Text, entry: token_cache.Entry, fitted: Fitted | None, whole: bool):
    """The targets, their spec and class names an entry kept, where it kept them and (given
    `fitted`) with the fitted class names; None otherwise. Not `whole`: the entry of other
    files too (`eval --data`), so integer classes are counted over these files alone."""
    labels = entry.labels
    if not isinstance(labels, dict) or not isinstance(labels.get("target"), dict):
        return None
    if fitted is not None and fitted.state.get("classes") != labels.get("classes"):
        return None
    targets = {
        key[: -len(":target")]: v for key, v in entry.arrays.items() if key.endswith(":target")
    }
    if set(targets) != {key for key in entry.arrays if ":" not in key}:
        return None
    target = labels["target"]
    num_classes = target["num_classes"]
    if not whole and target["kind"] == "class" and labels.get("classes") is None:
        # As `read_targets` counts integer labels: the largest read, plus one.
        found = max((int(v.max()) for v in targets.values() if v.size), default=-1) + 1
        num_classes = source.num_classes or found
    spec = S.Target(kind=target["kind"], num_classes=num_classes, shape=target["shape"])
    return {k: torch.from_numpy(v) for k, v in targets.items()}, spec, labels.get("classes")


def keep(
    key: dict,
    vocab: dict[str, int],
    ids: dict[str, np.ndarray],
    labels: tuple[dict[str, torch.Tensor], S.Target, list[str] | None],
) -> None:
    """Keep the ids in the cache with the targets, their spec and the class names."""
    targets, target, classes = labels
    kept = {**ids, **{f"{k}:target": v.numpy() for k, v in targets.items()}}
    target_json = {"kind": target.kind, "num_classes": target.num_classes}
    target_json["shape"] = list(target.shape)
    entry = token_cache.Entry(vocab, kept, {"target": target_json, "classes": classes})
    token_cache.keep("text", key, entry)

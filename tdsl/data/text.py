"""Text: lines of `label<delimiter>text` -> token ids of a fixed length.

Tokens are the matches of a regex (or whitespace-separated words), optionally lowercased.
The vocabulary is fitted on the training texts only: the most frequent tokens (ties in
alphabetical order) with at least `min_freq` occurrences get the ids left free by the
reserved padding and unknown ids, up to `vocab_size` ids in all.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import attrs
import numpy as np
import torch

from tdsl import spec as S
from tdsl.data import token_cache
from tdsl.data.base import (
    Context,
    DataError,
    DataSignature,
    FeatureInfo,
    Problems,
    check_exists,
)
from tdsl.data.fitted import Fitted
from tdsl.data.labels import read_targets
from tdsl.data.tensors import Splits, TensorData, split_index
from tdsl.data.token_ids import counts as token_counts
from tdsl.data.token_ids import fixed_length, lookup, tokenized_rows
from tdsl.registry.ops import DTYPES
from tdsl.special_files import require_regular_file

FILES = ("file", "val_file", "test_file")
MAX_IDS = 2**31  # token ids held in memory


def static_problems(source: S.Text, problems: Problems) -> None:
    if source.tokenizer == "regex":
        try:
            re.compile(source.pattern)
        except re.error as exc:
            problems.add(("pattern",), f"not a regular expression: {exc}")
    if source.pad_id == source.unknown_id:
        problems.add(("pad_id",), f"pad_id and unknown_id are both {source.pad_id}")
    for key in ("pad_id", "unknown_id"):
        if getattr(source, key) >= source.vocab_size:
            problems.add((key,), f"must be below vocab_size ({source.vocab_size})")
    if source.vocab_size < 3:
        problems.add(("vocab_size",), "must leave room for tokens besides the reserved ids")
    if source.num_classes is not None and source.target_kind != "class":
        problems.add(("num_classes",), "num_classes applies to class targets")
    if not source.delimiter:
        problems.add(("delimiter",), "must not be empty")


def tokenize(source: S.Text, text: str) -> list[str]:
    return tokenizer(source)(text)


def tokenizer(source: S.Text) -> Callable[[str], list[str]]:
    """The source's tokenizer as one function of a text (looked up once, called per line)."""
    split = str.split if source.tokenizer == "whitespace" else re.compile(source.pattern).findall
    if source.lowercase:  # per text, as a whole: lowercasing a final sigma depends on context
        return lambda text: split(text.lower())
    return split


def _read_bytes(path: Path, key: str) -> tuple[bytes, str | None]:
    """The file's bytes, and their SHA-256 where a token cache is in use."""
    try:
        require_regular_file(path)  # a FIFO would block the read forever
        return token_cache.read_bytes(path)
    except OSError as exc:
        raise DataError.at((key,), f"cannot read {path}: {exc.strerror or exc}") from None


def _lines(data: bytes, path: Path, key: str) -> list[tuple[int, str]]:
    """The numbered lines that hold more than spaces."""
    try:
        text = token_cache.decode(data)
    except UnicodeDecodeError:
        raise DataError.at((key,), f"{path} is not UTF-8 text") from None
    return [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _read(source: S.Text, path: Path, key: str, problems: Problems, data: bytes):
    labels, texts, lines = [], [], []
    for number, line in _lines(data, path, key):
        label, found, text = line.partition(source.delimiter)
        if not found:
            problems.add(
                (key,),
                f"line {number} of {path} has no {source.delimiter!r} between label and text",
                "each line is: label, delimiter, text",
            )
            break
        labels.append(label)
        texts.append(text)
        lines.append(number)
    if not labels and not problems.items:
        problems.add((key,), f"{path} holds no labelled lines")
    return labels, texts, lambda row: f"line {lines[row]} of {path}"


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


def _id_dtype(ctx: Context) -> torch.dtype:
    if len(ctx.inputs) == 1 and ctx.inputs[0].dtype in ("int32", "int64"):
        return DTYPES[ctx.inputs[0].dtype]
    return torch.int64


def prepare(source: S.Text, ctx: Context, fitted: Fitted | None = None):
    problems = Problems()
    static_problems(source, problems)
    paths = {k: ctx.path(getattr(source, k)) for k in FILES if getattr(source, k) is not None}
    for key, path in paths.items():
        found = check_exists(path, (key,))
        if found:
            problems.items.append(found)
    problems.check()
    raw = {}
    for key, path in paths.items():
        try:
            raw[key] = _read_bytes(path, key)
        except DataError as exc:
            problems.extend(exc)
    problems.check()
    if fitted is not None:
        fitted.expect("text", "vocab")
    cache_key = _cache_key(source, ctx, {k: digest for k, (_, digest) in raw.items()})
    cached, whole = _cached(cache_key, fitted)
    kept = None if cached is None else _labels(source, cached, fitted, whole)
    if kept is not None:
        # The very bytes these labels came from, read with the same settings: no line is
        # parsed again (the ids are the entry's too).
        targets, target_spec, classes = kept
        texts, vocab, ids = None, dict(cached.vocabulary), cached.arrays
        counted = {key: len(targets[key]) for key in raw}
    else:
        read = {}
        for key, path in paths.items():
            try:
                read[key] = _read(source, path, key, problems, raw[key][0])
            except DataError as exc:
                problems.extend(exc)
        problems.check()
        targets, target_spec, classes = read_targets(
            source.target_kind,
            source.num_classes,
            {key: (labels, where) for key, (labels, _, where) in read.items()},
            frozenset(),
            None if fitted is None else fitted.state.get("classes"),
            problems,
            where=("target_kind",),
            fitted=fitted is not None,
        )
        problems.check()
        texts = {key: texts for key, (_, texts, _) in read.items()}
        counted = {key: len(rows) for key, rows in texts.items()}
    rows = sum(counted.values())
    if rows * source.length > MAX_IDS:
        problems.add(
            ("length",), f"{rows} texts of {source.length} ids are more than fit in memory"
        )
    problems.check()
    count = counted["file"]
    strata = targets["file"].reshape(count, -1)[:, 0].long() if source.split.stratify else None
    own = ("val_file" in raw, "test_file" in raw)
    generator = torch.Generator().manual_seed(ctx.seed)
    index = split_index(count, source.split, generator, strata, own)
    if texts is not None:
        if cached is None:
            vocab, ids = _ids(source, texts, index, fitted)
        else:
            vocab = dict(cached.vocabulary)
            ids = {k: v for k, v in cached.arrays.items() if ":" not in k}
        # Kept with the labels, so that a later load of the same bytes parses no line; an
        # entry written before entries kept them gets them now.
        if cache_key is not None and (cached is None or whole and cached.labels is None):
            _keep(cache_key, vocab, ids, (targets, target_spec, classes))
    if fitted is None:
        fitted = Fitted("text", {"vocab": vocab, "classes": classes})
    dtype = _id_dtype(ctx)
    rows = TensorData((torch.from_numpy(ids["file"]).to(dtype),), targets["file"])
    splits = [rows.subset(index.train)]
    for which, key in ((index.val, "val_file"), (index.test, "test_file")):
        if key in raw:
            splits.append(TensorData((torch.from_numpy(ids[key]).to(dtype),), targets[key]))
        else:
            splits.append(None if which is None else rows.subset(which))
    counts = {
        n: len(s) for n, s in zip(("train", "val", "test"), splits, strict=True) if s is not None
    }
    feature = FeatureInfo((source.length,), str(dtype).removeprefix("torch."))
    signature = DataSignature((feature,), target_spec, counts, id_limit=source.vocab_size)
    return Splits(*splits, fitted=fitted), signature


def _cache_key(source: S.Text, ctx: Context, digests: dict[str, str | None]) -> dict | None:
    """The token cache's key for these files (their bytes' SHA-256) and settings; None
    where no cache is in use."""
    if token_cache.active() is None or not all(digests.values()):
        return None
    settings = attrs.asdict(source, filter=lambda a, _: a.name not in FILES)
    return token_cache.key("text", {**settings, "seed": ctx.seed}, digests)


def _cached(key: dict | None, fitted: Fitted | None) -> tuple[token_cache.Entry | None, bool]:
    """The cache's entry for `key`, made with the fitted vocabulary where one is given, and
    whether it is `key`'s own entry (not the run's, serving its files read another way)."""
    if key is None:
        return None, False
    given = None if fitted is None else fitted.state["vocab"]
    cached = token_cache.find("text", key, given)
    if cached is None and given is not None:
        # With the vocabulary known, a file's ids do not depend on the split or seed:
        # the run's entry serves its files read another way (`eval --data`), labels apart.
        return token_cache.find_files("text", key, given, ("split", "seed")), False
    return cached, cached is not None


def _labels(source: S.Text, entry: token_cache.Entry, fitted: Fitted | None, whole: bool):
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
        found = max(int(v.max()) for v in targets.values() if v.size) + 1
        num_classes = source.num_classes or found
    spec = S.Target(kind=target["kind"], num_classes=num_classes, shape=target["shape"])
    return {k: torch.from_numpy(v) for k, v in targets.items()}, spec, labels.get("classes")


def _ids(
    source: S.Text, texts: dict[str, list[str]], index, fitted: Fitted | None
) -> tuple[dict[str, int], dict[str, np.ndarray]]:
    """The vocabulary (fitted's, or fitted on the training rows) and each file's rows of ids
    (int64)."""
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


def _keep(
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


def read_input(source: S.Text, ctx: Context, fitted: Fitted, path: Path):
    """Prediction texts, one per line; on a line with the delimiter, the text after it (so
    a labelled file works too)."""
    vocab = fitted.expect("text", "vocab")
    texts = []
    for _, line in _lines(_read_bytes(path, "file")[0], path, "file"):
        _, found, text = line.partition(source.delimiter)
        texts.append(text if found else line)
    return (encode(source, vocab, texts, _id_dtype(ctx)),)

"""Hypothesis strategies for random but structurally well-formed `tdsl.Spec` values.

Everything is built through the public constructors, so the attrs validators hold: sizes
are positive, probabilities lie in [0, 1], learning rates and weights are > 0. Optional
fields are sometimes left out (so defaults get exercised and must be omitted on dump) and
sometimes given, possibly equal to their default.

The free keyword arguments of the "call" classes (`Layer`, `Loss`, `ParamGroup`,
`Schedule`, `Optimizer`, `Metric`) get identifier keys that never collide with the class's
own field names (derived from `attrs.fields`), and values that are scalars, lists or small
nested mappings. They are passed either as keywords (`Layer("linear", out_features=4)`) or
through `args=`, or both.

Strings deliberately include text YAML likes to reinterpret ("yes", "null", "1e3", "- x",
": ", "#", leading spaces, the empty string) and non-ASCII text.
"""

from __future__ import annotations

from typing import Any

import attrs
from hypothesis import strategies as st

import tdsl
from tdsl.spec.values import MAX_GENERATED_ROWS

# --- text --------------------------------------------------------------------------------

YAML_TRICKY = (
    "",
    " ",
    "  leading",
    "trailing ",
    "yes",
    "no",
    "on",
    "off",
    "y",
    "n",
    "true",
    "False",
    "null",
    "Null",
    "~",
    "1",
    "-1",
    "0.5",
    "1e3",
    "1.0e+3",
    # Floats in YAML 1.2 (and so in a spec), strings in YAML 1.1: they must be dumped quoted.
    "1e-3",
    "1E5",
    "1.0e5",
    "-2e+3",
    "3e+20",
    "1e-05",
    ".5",
    "+1.0",
    "1.",
    ".inf",
    "-.inf",
    ".nan",
    "0x1F",
    "0o17",
    "017",
    "1_000",
    "12:30:00",
    "2024-01-01",
    "- x",
    "-",
    ": ",
    "a: b",
    "a:b",
    "key:",
    "#",
    "# comment",
    "a #b",
    "'",
    '"',
    "'quoted'",
    "[x]",
    "{a: 1}",
    "a, b",
    "*alias",
    "&anchor",
    "!tag",
    "!!python/object:os.system",
    "%YAML",
    "@",
    "`",
    "|",
    ">",
    "?",
    "<<",
    "---",
    "...",
    "a\nb",
    "\n",
    "\r",
    "a\r\nb",
    # YAML's other line breaks: NEL, LINE SEPARATOR, PARAGRAPH SEPARATOR.
    "\x85",
    "a\x85b",
    "\u2028",
    "\u2029",
    "\t",
    "tab\there",
    "back\\slash",
    "é",
    "naïve",
    "日本語",
    "Ωmega",
    "😀",
    "\u00a0",
    "\u200b",
    "\ufeff",
    "\x00",
    "\x1b",
    "x" * 130,
)

# Any text (the default alphabet excludes only lone surrogates), kept short.
_any_text = st.text(max_size=8)
_ascii_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=10)

text = st.one_of(st.sampled_from(YAML_TRICKY), _ascii_text, _any_text)

# Plausible names (ops, kinds, layer names) mixed with tricky text.
_words = st.sampled_from(["linear", "relu", "conv2d", "adam", "sgd", "mse", "accuracy", "x"])
names = st.one_of(_words, text)

_identifier_words = (
    "out_features",
    "in_features",
    "bias",
    "momentum",
    "weight_decay",
    "betas",
    "eps",
    "reduction",
    "p",
    "x",
    "_",
    "_private",
    "yes",
    "no",
    "null",
    "true",
    "True",
    "False",
    "None",
    "on",
    "off",
    "y",
    "n",
    "lambda",
    "self",
    # Field names of *other* classes: legal here unless the class itself has them.
    "op",
    "kind",
    "name",
    "inputs",
    "lr",
    "groups",
    "schedule",
    "params",
    "interval",
    "regularizers",
    "naïve",
    "变量",
)

identifiers = st.one_of(
    st.sampled_from(_identifier_words),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,7}", fullmatch=True),
    st.text(max_size=6).filter(str.isidentifier),
)

# --- free keyword arguments ----------------------------------------------------------------

# Floats whose repr has an exponent (1e-05, 3e+20, -2.5e-300), which PyYAML dumps as
# 1.0e-05: they must come back as the same floats, not as strings.
exponent_floats = st.builds(
    lambda digits, exponent, sign: sign * float(f"{digits}e{exponent}"),
    st.integers(min_value=1, max_value=999),
    st.one_of(st.integers(min_value=-320, max_value=-7), st.integers(min_value=16, max_value=300)),
    st.sampled_from([1, -1]),
).filter(lambda x: "e" in repr(x))
_finite_floats = st.one_of(st.floats(allow_nan=False, allow_infinity=False), exponent_floats)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    _finite_floats,
    text,
)

arg_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(st.integers(min_value=-1000, max_value=1000), max_size=4),
        st.lists(children, max_size=3),
        st.dictionaries(st.one_of(identifiers, text), children, max_size=3),
    ),
    max_leaves=6,
)


def forbidden_arg_names(cls: type) -> frozenset[str]:
    """A call class's own field names: they are fields, never free arguments."""
    return frozenset(f.name for f in attrs.fields(cls))


def arg_maps(cls: type, max_size: int = 3) -> st.SearchStrategy[dict[str, Any]]:
    forbidden = forbidden_arg_names(cls)
    keys = identifiers.filter(lambda k: k not in forbidden)
    return st.dictionaries(keys, arg_values, max_size=max_size)


# The fields each class's strategy can set (positional tags and `args` included), so a test
# can notice a field added to a spec class that these strategies never exercise.
COVERED_FIELDS: dict[type, set[str]] = {}


def _cover(cls: type, *names: str) -> None:
    COVERED_FIELDS.setdefault(cls, set()).update(names)


def _build(cls: type, optional: dict[str, st.SearchStrategy], required: dict | None = None):
    """`cls(**kw)` where each optional field is sometimes absent (left at its default)."""
    _cover(cls, *optional, *(required or {}))
    return st.fixed_dictionaries(required or {}, optional=optional).map(lambda kw: cls(**kw))


def _call(
    cls: type,
    tag: st.SearchStrategy | None,
    optional: dict[str, st.SearchStrategy],
    tag_optional: bool = False,
) -> st.SearchStrategy:
    """A call class built as `cls(tag, **fields, **args)`, the args split between keywords
    and `args=`; `tag` is the positional op/kind (absent for `ParamGroup`, optional when
    `tag_optional`)."""
    tag_name = attrs.fields(cls)[0].name if tag is not None else None
    _cover(cls, "args", *optional, *([tag_name] if tag_name else []))
    fields_strategy = st.fixed_dictionaries({}, optional=optional)
    args_strategy = arg_maps(cls)

    @st.composite
    def build(draw: st.DrawFn) -> Any:
        positional: tuple = ()
        if tag is not None and not (tag_optional and draw(st.booleans())):
            positional = (draw(tag),)
        fields = draw(fields_strategy)
        args = draw(args_strategy)
        style = draw(st.sampled_from(["keywords", "args", "both"]))
        if "self" in args and style != "args":
            # `self` cannot be passed as a keyword to a method; `args=` still takes it.
            style = "args"
        if style == "keywords":
            return cls(*positional, **fields, **args)
        if style == "args":
            return cls(*positional, **fields, args=args)
        keys = list(args)
        cut = draw(st.integers(min_value=0, max_value=len(keys)))
        as_mapping = {k: args[k] for k in keys[:cut]}
        as_keywords = {k: args[k] for k in keys[cut:]}
        return cls(*positional, **fields, args=as_mapping, **as_keywords)

    return build()


# --- common value strategies --------------------------------------------------------------

sizes = st.integers(min_value=1, max_value=2**31)
small_sizes = st.integers(min_value=1, max_value=64)
# Rows a synthetic source generates: capped, since they are held in memory.
row_counts = st.integers(min_value=1, max_value=MAX_GENERATED_ROWS)
positive_floats = st.one_of(
    st.floats(min_value=0.0, exclude_min=True, allow_infinity=False),
    exponent_floats.map(abs).filter(lambda x: x > 0),
)
non_negative_floats = st.one_of(
    st.floats(min_value=0.0, allow_infinity=False), exponent_floats.map(abs)
)
probabilities = st.floats(min_value=0.0, max_value=1.0)
name_lists = st.lists(names, max_size=3)
# The tuple-of-names fields also take a single string (`params: "*.weight"`).
name_tuples = st.one_of(name_lists, names)
modes = st.sampled_from(["min", "max", "auto"])

# --- model ----------------------------------------------------------------------------------

inputs = _build(
    tdsl.Input,
    optional={
        "dtype": st.sampled_from(
            ["float32", "float64", "float16", "bfloat16", "int64", "int32", "bool"]
        ),
        "name": names,
    },
    required={"shape": st.lists(small_sizes, min_size=0, max_size=4)},
)


references = names.map(lambda n: f"${n}")
layers = _call(
    tdsl.Layer,
    names,
    {
        "name": st.one_of(st.none(), names),
        "inputs": name_tuples,
        "repeat": st.one_of(st.integers(min_value=1, max_value=12), references),
        "first": st.dictionaries(identifiers, arg_values, max_size=2),
        "vary": st.dictionaries(identifiers, st.lists(arg_values, max_size=3), max_size=2),
        "share": names,
        "tie": st.dictionaries(identifiers, names.map(lambda n: f"{n}.weight"), max_size=2),
        "when": st.one_of(st.booleans(), references),
        "trainable": st.booleans(),
    },
    tag_optional=True,
)

_selector_fields = {
    "params": name_tuples,
    "modules": name_tuples,
    "exclude": name_tuples,
    "include_bias_and_norm": st.booleans(),
}
param_selectors = _build(tdsl.ParamSelector, optional=_selector_fields)
initializers = _call(tdsl.Initializer, names, _selector_fields)
init_froms = _build(
    tdsl.InitFrom,
    optional={
        "which": st.sampled_from([None, "best", "last"]),
        "params": st.one_of(st.lists(names, min_size=1, max_size=3), names),
        "map": st.dictionaries(names, names, max_size=2),
        "strict": st.booleans(),
    },
    required={"from_": names},
)

blocks = _build(
    tdsl.Block,
    optional={
        "inputs": st.lists(names, min_size=1, max_size=3),
        "outputs": name_tuples,
        "params": st.dictionaries(identifiers, st.one_of(st.none(), arg_values), max_size=3),
    },
    required={"layers": st.lists(layers, min_size=1, max_size=3)},
)

models = _build(
    tdsl.Model,
    optional={
        "outputs": name_tuples,
        "blocks": st.dictionaries(names, blocks, max_size=2),
        "freeze": st.lists(param_selectors, max_size=2),
        "freeze_norm_stats": st.booleans(),
        "init_weights": st.lists(initializers, max_size=2),
        "init": st.one_of(st.none(), init_froms),
    },
    required={
        "inputs": st.lists(inputs, min_size=1, max_size=2),
        "layers": st.lists(layers, min_size=1, max_size=4),
    },
)

# --- data -----------------------------------------------------------------------------------

splits = _build(
    tdsl.Split,
    optional={
        "train": probabilities,
        "val": probabilities,
        "test": probabilities,
        "stratify": st.booleans(),
    },
)

targets = _build(
    tdsl.Target,
    optional={
        "num_classes": st.one_of(st.none(), sizes),
        "shape": st.lists(small_sizes, max_size=3),
    },
    required={"kind": st.sampled_from(["binary", "class", "regression"])},
)

linear_regressions = _build(
    tdsl.LinearRegression,
    optional={
        "n": row_counts,
        "weights": st.lists(_finite_floats, min_size=1, max_size=4),
        "bias": _finite_floats,
        "noise": non_negative_floats,
        "low": _finite_floats,
        "high": _finite_floats,
        "split": splits,
    },
)

rings = _build(
    tdsl.Rings,
    optional={
        "n_positive": row_counts,
        "n_negative": row_counts,
        "r_positive": positive_floats,
        "r_negative": positive_floats,
        "noise": non_negative_floats,
        "split": splits,
    },
)

random_data = _build(
    tdsl.RandomData,
    optional={"n": row_counts, "int_high": sizes, "split": splits},
    required={"target": targets},
)

target_kinds = st.sampled_from(["binary", "class", "regression"])
optional_paths = st.one_of(st.none(), names)
optional_sizes = st.one_of(st.none(), sizes)

teachers = _build(
    tdsl.Teacher,
    optional={
        "n": row_counts,
        "features": sizes,
        "num_classes": sizes,
        "hidden": sizes,
        "label_noise": probabilities,
        "split": splits,
    },
)

tensor_files = _build(
    tdsl.Tensors,
    optional={
        "features": name_tuples.filter(bool),
        "target": names,
        "num_classes": optional_sizes,
        "val_file": optional_paths,
        "test_file": optional_paths,
        "workers": st.integers(min_value=0, max_value=16),
        "split": splits,
    },
    required={"file": names, "target_kind": target_kinds},
)

columns = _build(
    tdsl.Column,
    optional={
        "transform": st.sampled_from(["passthrough", "standardize", "minmax", "onehot", "missing"]),
        "fill": st.sampled_from([None, "value", "mean", "median"]),
        "fill_value": _finite_floats,
        "indicator": st.booleans(),
        "unknown": st.booleans(),
    },
    required={"name": names},
)

target_columns = _build(
    tdsl.TargetColumn,
    optional={"num_classes": optional_sizes},
    required={"column": names, "kind": target_kinds},
)

tables = _build(
    tdsl.Table,
    optional={
        "num_classes": optional_sizes,
        "targets": st.dictionaries(names, target_columns, max_size=2),
        "delimiter": text,
        "missing": name_tuples,
        "val_file": optional_paths,
        "test_file": optional_paths,
        "split": splits,
        "exclude": name_tuples,
        "default_transform": st.sampled_from(["passthrough", "standardize", "minmax"]),
        "skip_rows": st.integers(min_value=0, max_value=5),
        "header": st.booleans(),
        "names": name_tuples,
    },
    required={
        "file": names,
        "columns": st.one_of(st.lists(columns, min_size=1, max_size=3), st.just("all")),
        "target": names,
        "target_kind": target_kinds,
    },
)

# CSV layout keys included: every field is covered (validation says they do not apply).
parquet_tables = _build(
    tdsl.ParquetTable,
    optional={
        "num_classes": optional_sizes,
        "targets": st.dictionaries(names, target_columns, max_size=2),
        "delimiter": text,
        "missing": name_tuples,
        "val_file": optional_paths,
        "test_file": optional_paths,
        "split": splits,
        "exclude": name_tuples,
        "default_transform": st.sampled_from(["passthrough", "standardize", "minmax"]),
        "skip_rows": st.integers(min_value=0, max_value=5),
        "header": st.booleans(),
        "names": name_tuples,
        "stream": st.sampled_from(["auto", "always", "never"]),
        "workers": st.integers(min_value=0, max_value=4),
    },
    required={
        "file": names,
        "columns": st.one_of(st.lists(columns, min_size=1, max_size=3), st.just("all")),
        "target": names,
        "target_kind": target_kinds,
    },
)

image_folders = _build(
    tdsl.ImageFolder,
    optional={
        "mode": st.sampled_from(["rgb", "gray"]),
        "target_kind": st.sampled_from(["binary", "class"]),
        "mean": st.lists(_finite_floats, max_size=3),
        "std": st.lists(positive_floats, max_size=3),
        "random_flip": st.booleans(),
        "random_crop": st.integers(min_value=0, max_value=8),
        "val_folder": optional_paths,
        "test_folder": optional_paths,
        "workers": st.integers(min_value=0, max_value=16),
        "split": splits,
    },
    required={"folder": names, "size": st.lists(small_sizes, min_size=2, max_size=2)},
)

texts = _build(
    tdsl.Text,
    optional={
        "target_kind": st.sampled_from(["binary", "class"]),
        "num_classes": optional_sizes,
        "delimiter": text,
        "tokenizer": st.sampled_from(["regex", "whitespace"]),
        "pattern": text,
        "lowercase": st.booleans(),
        "vocab_size": sizes,
        "min_freq": sizes,
        "length": sizes,
        "pad_id": st.integers(min_value=0, max_value=2**31),
        "unknown_id": st.integers(min_value=0, max_value=2**31),
        "padding": st.sampled_from(["pre", "post"]),
        "truncation": st.sampled_from(["pre", "post"]),
        "val_file": optional_paths,
        "test_file": optional_paths,
        "split": splits,
    },
    required={"file": names},
)

time_series = _build(
    tdsl.TimeSeries,
    optional={
        "targets": name_tuples,
        "window": sizes,
        "horizon": sizes,
        "stride": sizes,
        "difference": st.booleans(),
        "delimiter": text,
        "split": splits,
    },
    required={"file": names, "columns": name_tuples.filter(bool)},
)

# User code by import path; its `args` is a plain mapping with any keys.
python_data = _build(
    tdsl.PythonData,
    optional={
        "args": st.dictionaries(st.one_of(identifiers, text), arg_values, max_size=3),
        "features": name_tuples.filter(bool),
        "target": names,
        "num_classes": optional_sizes,
        "split": splits,
    },
    required={"factory": names, "target_kind": target_kinds},
)

bundled_sets = _build(
    tdsl.spec.Bundled,
    optional={
        "shape": st.lists(small_sizes, max_size=4),
        "split": splits,
        "relabel": st.lists(st.integers(min_value=0, max_value=9), max_size=10),
    },
    required={"dataset": st.sampled_from(["digits", "iris", "wine", "breast_cancer"])},
)

text_lms = _build(
    tdsl.TextLM,
    optional={
        "tokenizer": st.sampled_from(["char", "regex", "whitespace"]),
        "pattern": text,
        "lowercase": st.booleans(),
        "vocab_size": optional_sizes,
        "min_freq": sizes,
        "block_size": sizes,
        "stride": sizes,
        "split": splits,
    },
    required={"file": names},
)

additions = _build(
    tdsl.Addition,
    optional={"digits": sizes, "n": row_counts, "reverse": st.booleans(), "split": splits},
)

shapes_sets = _build(
    tdsl.Shapes,
    optional={
        "n": row_counts,
        "size": st.lists(small_sizes, min_size=2, max_size=2),
        "mode": st.sampled_from(["rgb", "gray"]),
        "shapes_per_image": sizes,
        "noise": non_negative_floats,
        "split": splits,
    },
)

mask_folders = _build(
    tdsl.Segmentation,
    optional={
        "mode": st.sampled_from(["rgb", "gray"]),
        "ignore_index": st.one_of(st.none(), st.integers(min_value=0, max_value=255)),
        "mean": st.lists(_finite_floats, max_size=3),
        "std": st.lists(positive_floats, max_size=3),
        "random_flip": st.booleans(),
        "random_crop": st.integers(min_value=0, max_value=8),
        "workers": st.integers(min_value=0, max_value=16),
        "split": splits,
    },
    required={
        "folder": names,
        "masks": names,
        "num_classes": sizes,
        "size": st.lists(small_sizes, min_size=2, max_size=2),
    },
)

data_sources = st.one_of(
    rings,
    linear_regressions,
    random_data,
    teachers,
    tensor_files,
    tables,
    parquet_tables,
    image_folders,
    texts,
    time_series,
    python_data,
    bundled_sets,
    text_lms,
    additions,
    shapes_sets,
    mask_folders,
)

# --- loss, optimizer, metrics ---------------------------------------------------------------

regularizers = _build(
    tdsl.Regularizer,
    optional={
        "params": name_tuples,
        "modules": name_tuples,
        "exclude": name_tuples,
        "include_bias_and_norm": st.booleans(),
        "l1_ratio": probabilities,
    },
    required={"kind": st.sampled_from(["l1", "l2", "elastic_net"]), "weight": positive_floats},
)


loss_terms = _call(
    tdsl.LossTerm,
    names,
    {"weight": positive_floats, "output": optional_paths, "target": optional_paths},
)

losses = _call(
    tdsl.Loss,
    names,
    {
        "terms": st.lists(loss_terms, max_size=2),
        "regularizers": st.lists(regularizers, max_size=2),
        "class_dim": st.one_of(st.none(), st.integers(min_value=-3, max_value=3)),
    },
)

param_groups = _call(
    tdsl.ParamGroup,
    None,
    {
        "params": name_tuples,
        "modules": name_tuples,
        "exclude": name_tuples,
        "include_bias_and_norm": st.booleans(),
    },
)

schedules = _call(
    tdsl.Schedule, names, {"interval": st.sampled_from(["epoch", "step"]), "monitor": names}
)

optimizers = _call(
    tdsl.Optimizer,
    names,
    {
        "lr": positive_floats,
        "groups": st.lists(param_groups, max_size=2),
        "schedule": st.one_of(st.none(), schedules),
    },
    tag_optional=True,
)

metrics = _call(tdsl.Metric, names, {"output": optional_paths})


# --- training and placement -----------------------------------------------------------------

early_stoppings = _build(
    tdsl.EarlyStopping,
    optional={
        "monitor": names,
        "mode": modes,
        "patience": st.integers(min_value=0, max_value=1000),
        "min_delta": non_negative_floats,
    },
)

checkpoints = _build(
    tdsl.Checkpoint,
    optional={
        "monitor": st.one_of(st.none(), names),
        "mode": modes,
        "save_best": st.booleans(),
        "save_last": st.booleans(),
    },
)

trackings = _build(
    tdsl.Tracking,
    optional={
        "mlflow": st.one_of(
            st.none(),
            _build(tdsl.MlflowTracking, optional={"uri": names, "experiment": names}),
        )
    },
)

compiles = _build(
    tdsl.Compile,
    optional={
        "mode": st.sampled_from(
            ["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
        )
    },
)

trains = _build(
    tdsl.Train,
    optional={
        "epochs": sizes,
        "batch_size": sizes,
        "accumulate": sizes,
        "eval_batch_size": st.one_of(st.none(), sizes),
        "compile": st.one_of(st.booleans(), compiles),
        "channels_last": st.booleans(),
        "clip_norm": st.one_of(st.none(), positive_floats),
        "clip_value": st.one_of(st.none(), positive_floats),
        "on_nan": st.sampled_from(["stop", "skip_batch"]),
        "tensorboard": st.booleans(),
        "early_stopping": st.one_of(st.none(), early_stoppings),
        "checkpoint": checkpoints,
        "track": st.one_of(st.none(), trackings),
    },
)

devices = _build(
    tdsl.Device,
    optional={
        "name": st.one_of(st.sampled_from(["auto", "cpu", "cuda", "cuda:1", "mps"]), names),
        "precision": st.sampled_from(["fp32", "bf16", "fp16"]),
        "strategy": st.sampled_from(["single", "ddp"]),
        "backend": st.sampled_from(["auto", "gloo", "nccl"]),
        "uneven_batches": st.booleans(),
        "timeout": st.floats(min_value=0.0, max_value=1e7, exclude_min=True),
    },
)

# --- whole specs ----------------------------------------------------------------------------


def specs() -> st.SearchStrategy[tdsl.Spec]:
    """Random whole specs."""
    return _build(
        tdsl.Spec,
        optional={
            "seed": st.integers(min_value=-(2**63), max_value=2**63 - 1),
            "optimizer": optimizers,
            "metrics": st.lists(metrics, max_size=3),
            "train": trains,
            "device": devices,
        },
        required={"name": names, "data": data_sources, "model": models, "loss": losses},
    )

"""The op registry: one `OpDef` per op name, each built next to its definition.

An op turns keyword arguments plus the (meta) tensors flowing into it into an
`nn.Module`. `lookup` also reaches every `torch.nn` layer that has no alias, by its
class name (`nn.GELU`, `torch.nn.PixelShuffle`) or its lower-cased name (`gelu`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import torch
from torch import nn

from tdsl.errors import TdslError
from tdsl.registry.user_code import ImportRefused, import_object, is_import_path
from tdsl.wording import did_you_mean, show

Builder = Callable[[Mapping[str, Any], Sequence[Any]], nn.Module]


DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
    "bool": torch.bool,
}


class OpError(TdslError):
    """A problem with one op's arguments; `key` names the argument to point at."""

    def __init__(self, message: str, key: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message, self.key, self.hint = message, key, hint


@attrs.frozen
class OpDef:
    name: str
    build: Builder
    # Argument name -> True when the user must give it.
    arguments: Mapping[str, bool]
    # Arguments read off the incoming tensor when omitted (and checked when given).
    inferred: tuple[str, ...] = ()
    min_inputs: int = 1
    max_inputs: int | None = 1
    doc: str = ""
    # "int" for ops that take ids (embedding); floating-point inputs are required by any op
    # with floating-point parameters, checked generically. "masked": the last of several
    # inputs is a padding mask (bool or 0/1 integers) that the op checks itself.
    input_kind: str = "any"
    # How the output relates to the batch (checked by tdsl.model.batch_rule):
    # "keep": dimension 0 of every output tensor is the batch, as for every layer (a value
    #   handed through unchanged, like `item`'s, keeps its own layout; the hidden states of
    #   torch's recurrent layers are [layers, B, H], which is where later ops find them);
    # "broadcast": no output tensor carries the batch: a parameter, constant or position
    #   table whose leading dimension is 1 or absent, broadcasting against batched values;
    # "own": the op places the batch itself; it is tracked wherever it ends up but may not
    #   be merged, resized or spread. An op that moves, merges or drops the batch otherwise
    #   is refused. A spec cannot change an op's setting: only its registration can.
    batch: str = attrs.field(
        default="keep", validator=attrs.validators.in_(("keep", "broadcast", "own"))
    )


_REGISTRY: dict[str, OpDef] = {}

# Meta tensors cost nothing, so shape inference runs at a batch size no layer width is likely
# to equal; any dimension of that size is then shown as the batch dimension B.
BATCH = 7919


def shape_text(shape: Sequence[int]) -> str:
    """`[B, 3]`: dimensions equal to the inference batch size print as B."""
    return "[" + ", ".join("B" if d == BATCH else str(d) for d in shape) + "]"


def register(op: OpDef, *aliases: str) -> OpDef:
    for name in (op.name, *aliases):
        if name in _REGISTRY:
            raise ValueError(f"op {name!r} is already registered")
        _REGISTRY[name] = op
    return op


def takes_no_inputs(name: str) -> bool:
    """Whether the registered op `name` is a source (parameter, constant): no inputs at all."""
    op = _REGISTRY.get(name)
    return op is not None and op.max_inputs == 0


def registered_names() -> list[str]:
    return sorted(_REGISTRY)


def all_op_names() -> list[str]:
    """Every name `lookup` accepts without a prefix: aliases plus lower-cased torch.nn layers."""
    return sorted(set(_REGISTRY) | set(_torch_layers()))


_EXCLUDED = {
    "Module",
    "Sequential",
    "ModuleList",
    "ModuleDict",
    "ParameterList",
    "ParameterDict",
    "Container",
    "LazyModuleMixin",
    "UninitializedParameter",
    "DataParallel",
    "RNNBase",
    "RNNCellBase",
}


@functools.cache  # scanning torch.nn takes about 2 ms; a spec looks layers up many times
def _torch_layers() -> dict[str, type[nn.Module]]:
    layers = {}
    for attr in dir(nn):
        cls = getattr(nn, attr)
        if (
            inspect.isclass(cls)
            and issubclass(cls, nn.Module)
            and attr not in _EXCLUDED
            and not attr.startswith("_")
            and not attr.endswith("Loss")
        ):
            layers[attr.lower()] = cls
    return layers


def lookup(name: str, allow_imports: Sequence[str] = ()) -> OpDef | None:
    """The op called `name`, or None. A user's layer class by import path is imported only
    when its prefix is in `allow_imports`; otherwise `ImportRefused` is raised."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if is_import_path(name):
        cls = import_object(name, allow_imports)
        if not (inspect.isclass(cls) and issubclass(cls, nn.Module)):
            raise ImportRefused(f"{name!r} is not a torch.nn.Module class")
        return torch_op(name, cls, doc=f"{cls.__module__}.{cls.__qualname__}")
    class_name = name.removeprefix("torch.").removeprefix("nn.")
    if class_name != name and inspect.isclass(getattr(nn, class_name, None)):
        return torch_op(name, getattr(nn, class_name))
    cls = _torch_layers().get(name)
    return torch_op(name, cls) if cls is not None else None


# --- building torch.nn layers ------------------------------------------------------------

# torch.nn.RNNBase takes *args/**kwargs; these are the documented keywords.
_RNN_ARGUMENTS = {
    "input_size": True,
    "hidden_size": True,
    "num_layers": False,
    "bias": False,
    "batch_first": False,
    "dropout": False,
    "bidirectional": False,
}
_SIGNATURE_OVERRIDES = {
    nn.LSTM: {**_RNN_ARGUMENTS, "proj_size": False},
    nn.GRU: _RNN_ARGUMENTS,
    nn.RNN: {**_RNN_ARGUMENTS, "nonlinearity": False},
}


# String arguments torch checks late (GELU's on the first forward) or words tersely.
_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
_CHOICES: dict[type, dict[str, tuple[str, ...]]] = {
    nn.GELU: {"approximate": ("none", "tanh")},
    nn.RNN: {"nonlinearity": ("tanh", "relu")},
    nn.TransformerEncoderLayer: {"activation": ("relu", "gelu")},
    **{getattr(nn, f"Conv{r}d"): {"padding_mode": _PADDING_MODES} for r in (1, 2, 3)},
}


def check_choices(cls: type, args: Mapping[str, Any]) -> None:
    """Raise a located OpError for a string argument of `cls` outside its choices."""
    for klass in cls.__mro__:
        for key, choices in _CHOICES.get(klass, {}).items():
            value = args.get(key, choices[0])
            if value not in choices and not callable(value):  # torch also takes a function
                hint = did_you_mean(value, choices) if isinstance(value, str) else None
                wanted = " or ".join(show(c) for c in choices)
                raise OpError(f"takes {key} {wanted}, got {show(value)}", key=key, hint=hint)


# (width, parts): torch splits `width` into `parts` equal pieces and words a mismatch without
# either number (or divides by zero inside), so tdsl checks it first.
_DIVIDES = (
    ("embed_dim", "num_heads"),
    ("d_model", "nhead"),
    ("in_channels", "groups"),
    ("out_channels", "groups"),
    ("num_channels", "num_groups"),
)


def check_divisible(kwargs: Mapping[str, Any], written: Mapping[str, Any]) -> None:
    """Raise a located OpError where a width is not a multiple of what splits it."""
    for width, parts in _DIVIDES:
        total, count = kwargs.get(width), kwargs.get(parts)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (total, count)):
            continue
        if count > 0 and total % count:
            source = "" if width in written else " (read off its input)"
            raise OpError(
                f"has {parts} {count}, which does not divide {width} {total}{source}",
                key=parts if parts in written else width,
                hint=f"{width} must be a multiple of {parts}; {_divisors(total)}",
            )


def _divisors(total: int) -> str:
    """`use 1, 2, 5 or 10`: the choices that do divide, when few; else the plain rule."""
    found = [d for d in range(1, 4097) if total % d == 0] if total <= 4096 else []
    if not found or len(found) > 12:
        return f"pick a divisor of {total}"
    return "use " + ", ".join(map(str, found[:-1])) + " or " * (len(found) > 1) + str(found[-1])


def signature_arguments(fn: Callable) -> dict[str, bool]:
    """Keyword arguments of a constructor: name -> required. Skips device/dtype."""
    if fn in _SIGNATURE_OVERRIDES:
        return dict(_SIGNATURE_OVERRIDES[fn])
    try:
        return dict(_signature_arguments(fn))
    except TypeError:  # not hashable: read it each time
        return dict(_signature_arguments.__wrapped__(fn))


@functools.lru_cache(maxsize=512)  # inspect.signature takes about a millisecond a class
def _signature_arguments(fn: Callable) -> tuple[tuple[str, bool], ...]:
    target = fn.__init__ if inspect.isclass(fn) else fn
    params = list(inspect.signature(target).parameters.values())
    return tuple(
        (p.name, p.default is inspect.Parameter.empty)
        for p in params
        if p.name not in ("self", "device", "dtype", "factory_kwargs")
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    )


def _feature_dim(index: int) -> Callable[[torch.Tensor], int]:
    def read(x: torch.Tensor) -> int:
        if x.dim() <= max(index, -index - 1):
            raise OpError(
                f"needs an input with at least {max(index + 1, -index)} dimensions, got {x.dim()}"
            )
        return int(x.shape[index])

    return read


LAST_DIM = _feature_dim(-1)
CHANNEL_DIM = _feature_dim(1)


def torch_op(
    name: str,
    cls: type[nn.Module],
    infer: Mapping[str, Callable[[torch.Tensor], Any]] | None = None,
    defaults: Mapping[str, Any] | None = None,
    doc: str = "",
    input_kind: str = "any",
) -> OpDef:
    """An op that constructs `cls(**defaults, **inferred, **args)`."""
    infer = dict(infer or {})
    defaults = dict(defaults or {})
    arguments = signature_arguments(cls)
    for key in (*infer, *defaults):
        arguments[key] = False

    def build(args: Mapping[str, Any], inputs: Sequence[Any]) -> nn.Module:
        check_choices(cls, args)
        kwargs = {**defaults, **args}
        for key, read in infer.items():
            value = read(_first_tensor(inputs))
            if key in args and args[key] != value:
                shape = shape_text(_first_tensor(inputs).shape)
                raise OpError(
                    f"declares {key}={args[key]} but its input {shape} gives {value}", key=key
                )
            kwargs[key] = value
        check_divisible(kwargs, args)
        return cls(**kwargs)

    return OpDef(
        name,
        build,
        arguments,
        tuple(infer),
        doc=doc or f"torch.nn.{cls.__name__}",
        input_kind=input_kind,
    )


def _first_tensor(inputs: Sequence[Any]) -> torch.Tensor:
    value = inputs[0]
    if not isinstance(value, torch.Tensor):
        raise OpError("expects a tensor input, got a tuple; pick an element with op 'item'")
    return value

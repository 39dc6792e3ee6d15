"""The `model` section: inputs, blocks, layers and outputs.

A block is a sub-graph defined once under `model.blocks` and used like an op
(`{op: basic, channels: 64}`): `$name` in its layers' arguments stands for the use's
argument. `repeat`, `share`, `tie` and `when` on a layer say how often, with whose
parameters and whether it is built at all.
"""

from typing import Any, Literal

from attrs import field, frozen

from tdsl.spec.frozen import FrozenMap, freeze
from tdsl.spec.origins import Recorded
from tdsl.spec.values import as_tuple, call_args, each_positive, non_empty

# --- model ---------------------------------------------------------------------------------

DType = Literal["float32", "float64", "float16", "bfloat16", "int64", "int32", "bool"]


@frozen(kw_only=True)
class Input(Recorded):
    """A named model input; `shape` excludes the batch dimension."""

    shape: tuple[int, ...] = field(converter=tuple, validator=each_positive)
    dtype: DType = "float32"
    name: str = "x"


@frozen(init=False)
class Layer(Recorded):
    """One graph node. With no `inputs` it consumes the previous node (sequential form)."""

    # An op, a block of `model.blocks`, or (with `share`) nothing.
    op: str | None = None
    name: str | None = None
    inputs: tuple[str, ...] = ()
    args: FrozenMap = FrozenMap()
    # N copies in sequence, each with its own parameters (a positive integer or `$param`).
    repeat: Any = None
    # Arguments that replace the layer's own for the first copy (the stage's striding block).
    first: FrozenMap = FrozenMap()
    # Per-copy arguments: a list of N values per argument (`{dilation: [1, 2, 4, 8]}`).
    vary: FrozenMap = FrozenMap()
    # Apply the layer or block named here again, with its parameters, to this layer's inputs.
    share: str | None = None
    # Own parameter -> another layer's parameter it is (`{weight: wte.weight}`).
    tie: FrozenMap = FrozenMap()
    # Built only when true (`$param` in a block); when false the layer passes its input on.
    when: Any = None
    # false: its parameters (a block use's: all of them) are frozen, left out of training.
    trainable: bool = True

    def __init__(
        self,
        op: str | None = None,
        *,
        name: str | None = None,
        inputs: Any = (),
        args=None,
        repeat: Any = None,
        first: Any = None,
        vary: Any = None,
        share: str | None = None,
        tie: Any = None,
        when: Any = None,
        trainable: bool = True,
        **kw,
    ):
        self.__attrs_init__(
            op=op,
            name=name,
            inputs=as_tuple(inputs),
            args=call_args(args, kw),
            repeat=repeat,
            first=call_args(first, {}),
            vary=call_args(vary, {}),
            share=share,
            tie=call_args(tie, {}),
            when=when,
            trainable=trainable,
        )


@frozen(kw_only=True)
class Block(Recorded):
    """A sub-graph defined once and used like an op; each use has its own parameters."""

    # Argument name -> default; null makes the argument required.
    params: FrozenMap = field(factory=FrozenMap, converter=freeze)
    # The names its layers read; a use passes its inputs in this order.
    inputs: tuple[str, ...] = field(default=("x",), converter=as_tuple, validator=non_empty)
    layers: tuple[Layer, ...] = field(converter=tuple, validator=non_empty)
    # Default: the last layer.
    outputs: tuple[str, ...] = field(default=(), converter=as_tuple)


@frozen(kw_only=True)
class ParamSelector(Recorded):
    """Parameters picked by name globs (`conv1.*`) and/or the op or torch class of the layer
    that holds them (`conv2d`), minus `exclude` globs; a bare string is one `params` glob."""

    params: tuple[str, ...] = field(default=("*",), converter=as_tuple)
    modules: tuple[str, ...] = field(default=(), converter=as_tuple)
    exclude: tuple[str, ...] = field(default=(), converter=as_tuple)
    include_bias_and_norm: bool = True


@frozen(init=False)
class Initializer(Recorded):
    """`init_weights` entry: the initializer `kind` (with its arguments) applied to the
    parameters the selector picks, after the model is built, from the run's seed."""

    kind: str
    params: tuple[str, ...] = ("*",)
    modules: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    include_bias_and_norm: bool = True
    args: FrozenMap = FrozenMap()

    def __init__(
        self,
        kind: str,
        *,
        params: Any = ("*",),
        modules: Any = (),
        exclude: Any = (),
        include_bias_and_norm: bool = True,
        args=None,
        **kw,
    ):
        self.__attrs_init__(
            kind=kind,
            params=as_tuple(params),
            modules=as_tuple(modules),
            exclude=as_tuple(exclude),
            include_bias_and_norm=include_bias_and_norm,
            args=call_args(args, kw),
        )


@frozen(kw_only=True)
class InitFrom(Recorded):
    """`init`: start from another run's weights (fine-tuning) instead of fresh ones."""

    # A run directory or a checkpoint file (.pt), relative to the spec file. YAML key `from`.
    from_: str = field(metadata={"key": "from"})
    # A run directory's checkpoint: best or last (default best).
    which: Literal["best", "last"] | None = None
    # Name globs of the model's parameters and buffers to load; the rest stay fresh.
    params: tuple[str, ...] = field(default=("*",), converter=as_tuple, validator=non_empty)
    # Checkpoint name prefix -> the model's (`{backbone.: trunk.}`), longest prefix first.
    map: dict[str, str] = field(factory=FrozenMap, converter=freeze)
    # false: names only one side has are skipped instead of refused (shapes must still fit).
    strict: bool = True


@frozen(kw_only=True)
class Model(Recorded):
    inputs: tuple[Input, ...] = field(converter=tuple, validator=non_empty)
    # Named sub-graphs the layers can use like ops.
    blocks: dict[str, Block] = field(factory=FrozenMap, converter=freeze)
    layers: tuple[Layer, ...] = field(converter=tuple, validator=non_empty)
    # Names of the nodes whose values the model returns; default: the last layer.
    outputs: tuple[str, ...] = field(default=(), converter=as_tuple)
    # Parameters left out of training (no gradients, not in the optimizer).
    freeze: tuple[ParamSelector, ...] = field(default=(), converter=tuple)
    # Batch-norm running statistics of the frozen part stay as they are (eval mode).
    freeze_norm_stats: bool = False
    # Initializers applied in order after building, from the run's seed.
    init_weights: tuple[Initializer, ...] = field(default=(), converter=tuple)
    # Weights to start from: a run directory or checkpoint file (after init_weights).
    init: InitFrom | None = None

"""The `model` section: inputs, layers and outputs."""

from typing import Any, Literal

from attrs import field, frozen

from tdsl.spec.frozen import FrozenMap
from tdsl.spec.values import as_tuple, call_args, each_positive, non_empty

# --- model ---------------------------------------------------------------------------------

DType = Literal["float32", "float64", "float16", "bfloat16", "int64", "int32", "bool"]


@frozen(kw_only=True)
class Input:
    """A named model input; `shape` excludes the batch dimension."""

    shape: tuple[int, ...] = field(converter=tuple, validator=each_positive)
    dtype: DType = "float32"
    name: str = "x"


@frozen(init=False)
class Layer:
    """One graph node. With no `inputs` it consumes the previous node (sequential form)."""

    op: str
    name: str | None = None
    inputs: tuple[str, ...] = ()
    args: FrozenMap = FrozenMap()

    def __init__(self, op: str, *, name: str | None = None, inputs: Any = (), args=None, **kw):
        self.__attrs_init__(op=op, name=name, inputs=as_tuple(inputs), args=call_args(args, kw))


@frozen(kw_only=True)
class Model:
    inputs: tuple[Input, ...] = field(converter=tuple, validator=non_empty)
    layers: tuple[Layer, ...] = field(converter=tuple, validator=non_empty)
    # Names of the nodes whose values the model returns; default: the last layer.
    outputs: tuple[str, ...] = field(default=(), converter=as_tuple)

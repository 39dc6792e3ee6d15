"""The `loss`, `optimizer` and `metrics` sections: what is minimized, how, and what is reported."""

from typing import Any, Literal

from attrs import field, frozen

from tdsl.spec.frozen import FrozenMap
from tdsl.spec.origins import Recorded
from tdsl.spec.values import as_float, as_tuple, at_most_one, call_args, non_negative, positive

# --- loss, optimizer, metrics ---------------------------------------------------------------


@frozen(kw_only=True)
class Regularizer(Recorded):
    """A penalty on the parameters a selector picks: globs on names and/or op types."""

    kind: Literal["l1", "l2", "elastic_net"]
    weight: float = field(converter=as_float, validator=positive)
    params: tuple[str, ...] = field(default=("*",), converter=as_tuple)
    modules: tuple[str, ...] = field(default=(), converter=as_tuple)
    exclude: tuple[str, ...] = field(default=(), converter=as_tuple)
    # As in the seeds: biases and normalization parameters are not penalized by default.
    include_bias_and_norm: bool = False
    l1_ratio: float = field(converter=as_float, default=0.5, validator=[non_negative, at_most_one])


@frozen(init=False)
class LossTerm(Recorded):
    """One weighted part of a `kind: sum` loss, or of a `kind: outputs` loss: there each
    term reads the model output named `output` and the data's target of the same name (or
    the one `target` names)."""

    kind: str
    weight: float = field(default=1.0, converter=as_float, validator=positive)
    output: str | None = None
    target: str | None = None
    args: FrozenMap = FrozenMap()

    def __init__(
        self, kind: str, *, weight: float = 1.0, output=None, target=None, args=None, **kw
    ):
        self.__attrs_init__(
            kind=kind, weight=weight, output=output, target=target, args=call_args(args, kw)
        )

    @property
    def target_name(self) -> str | None:
        return self.target if self.target is not None else self.output


@frozen(init=False)
class Loss(Recorded):
    """A loss by name with its arguments, `kind: sum` of weighted `terms` on the one output,
    or `kind: outputs`: a term per model output (its `output:`, and `target:` where the
    target's name differs), summed with their weights; plus
    regularizers on the parameters. `class_dim` says which output axis holds the classes
    when class targets have positions (tokens, pixels): -1 (last, [B, T, C]) or 1 ([B, C,
    T]); None infers it from the shapes."""

    kind: str
    terms: tuple[LossTerm, ...] = ()
    regularizers: tuple[Regularizer, ...] = ()
    class_dim: int | None = None
    args: FrozenMap = FrozenMap()

    def __init__(
        self,
        kind: str,
        *,
        terms: Any = (),
        regularizers: Any = (),
        class_dim: int | None = None,
        args=None,
        **kw,
    ):
        self.__attrs_init__(
            kind=kind,
            terms=tuple(terms),
            regularizers=tuple(regularizers),
            class_dim=class_dim,
            args=call_args(args, kw),
        )


@frozen(init=False)
class ParamGroup(Recorded):
    """Parameters picked like a regularizer's, with their own optimizer arguments."""

    params: tuple[str, ...] = ("*",)
    modules: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    include_bias_and_norm: bool = True
    args: FrozenMap = FrozenMap()

    def __init__(
        self,
        *,
        params: Any = ("*",),
        modules: Any = (),
        exclude: Any = (),
        include_bias_and_norm: bool = True,
        args=None,
        **kw,
    ):
        self.__attrs_init__(
            params=as_tuple(params),
            modules=as_tuple(modules),
            exclude=as_tuple(exclude),
            include_bias_and_norm=include_bias_and_norm,
            args=call_args(args, kw),
        )


@frozen(init=False)
class Schedule(Recorded):
    kind: str
    interval: Literal["epoch", "step"] = "epoch"
    # What reduce_on_plateau watches; other schedules ignore it.
    monitor: str = "val_loss"
    args: FrozenMap = FrozenMap()

    def __init__(self, kind: str, *, interval="epoch", monitor="val_loss", args=None, **kw):
        self.__attrs_init__(kind=kind, interval=interval, monitor=monitor, args=call_args(args, kw))


@frozen(init=False)
class Optimizer(Recorded):
    kind: str = "adam"
    lr: float = field(converter=as_float, default=1e-3, validator=positive)
    groups: tuple[ParamGroup, ...] = ()
    schedule: Schedule | None = None
    args: FrozenMap = FrozenMap()

    def __init__(self, kind="adam", *, lr=1e-3, groups=(), schedule=None, args=None, **kw):
        self.__attrs_init__(
            kind=kind, lr=lr, groups=tuple(groups), schedule=schedule, args=call_args(args, kw)
        )


@frozen(init=False)
class Metric(Recorded):
    """A metric by name; with several outputs, `output` names the one it measures (against
    the target of that name) and the history calls it `<output>_<kind>`."""

    kind: str
    output: str | None = None
    args: FrozenMap = FrozenMap()

    def __init__(self, kind: str, *, output=None, args=None, **kw):
        self.__attrs_init__(kind=kind, output=output, args=call_args(args, kw))

    @property
    def name(self) -> str:
        return self.kind if self.output is None else f"{self.output}_{self.kind}"

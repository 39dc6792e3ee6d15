"""`Spec`, a whole experiment: the sections together."""

from typing import Any

from attrs import field, frozen

from tdsl.spec.data_sources import DataSource
from tdsl.spec.model_section import Initializer, Layer, Model
from tdsl.spec.objective_section import Loss, LossTerm, Metric, Optimizer, ParamGroup, Schedule
from tdsl.spec.origins import Recorded
from tdsl.spec.training_section import Device, Train
from tdsl.spec.values import finite


@frozen(kw_only=True)
class Spec(Recorded):
    """A whole experiment."""

    name: str
    data: DataSource
    model: Model
    loss: Loss
    seed: int = field(default=0, validator=finite)
    optimizer: Optimizer = Optimizer()
    metrics: tuple[Metric, ...] = field(default=(), converter=tuple)
    train: Train = Train()
    device: Device = Device()
    # Where each key of the YAML this spec came from sits; not part of the spec's value.
    source: Any = field(default=None, eq=False, repr=False, metadata={"internal": True})

    def __str__(self) -> str:
        """The spec as the YAML a user would write."""
        from tdsl.spec.load_dump import dump  # loading builds on these classes

        return dump(self)


# Classes whose unknown keys are keyword arguments for the thing they name.
CALL_CLASSES = (Layer, Initializer, Loss, LossTerm, ParamGroup, Schedule, Optimizer, Metric)
DATA_SOURCES = {cls.__attrs_attrs__.kind.default: cls for cls in DataSource.__args__}

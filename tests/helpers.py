"""Small pieces several test modules share."""

import tdsl
from tdsl.data import Batch, load_data


class Interrupt:
    """A callback that simulates Ctrl-C right after the checkpoint of epoch `after` is
    written, so a test can resume the run from it."""

    def __init__(self, after: int = 1):
        self.after = after

    def on_epoch_end(self, run, state, logs):
        if logs["epoch"] == self.after:
            raise KeyboardInterrupt


def ring_spec(optimizer: tdsl.Optimizer, regularizers=(), layers=None) -> tdsl.Spec:
    return tdsl.Spec(
        name="ring",
        seed=3,
        data=tdsl.Rings(n_positive=100, n_negative=100),
        model=tdsl.Model(
            inputs=[tdsl.Input(shape=[2])],
            layers=layers
            or [
                tdsl.Layer("linear", out_features=4),
                tdsl.Layer("relu"),
                tdsl.Layer("linear", out_features=8),
                tdsl.Layer("relu"),
                tdsl.Layer("linear", out_features=1),
            ],
        ),
        loss=tdsl.Loss("bce_with_logits", regularizers=regularizers),
        optimizer=optimizer,
        metrics=[tdsl.Metric("accuracy")],
    )


def first_batches(spec: tdsl.Spec, count: int, size: int = 32) -> list[Batch]:
    batches = load_data(spec).train.batches(size, order_seed=0)
    return [next(batches) for _ in range(count)]

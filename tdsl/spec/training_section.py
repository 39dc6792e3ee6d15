"""The `train` and `device` sections: the loop's settings and where it runs."""

from typing import Literal

from attrs import field, frozen

from tdsl.spec.origins import Recorded
from tdsl.spec.values import MAX_TIMEOUT, as_float, bound, non_negative, positive

# --- training and placement -----------------------------------------------------------------

Mode = Literal["min", "max", "auto"]


@frozen(kw_only=True)
class EarlyStopping(Recorded):
    monitor: str = "val_loss"
    mode: Mode = "auto"
    patience: int = field(default=5, validator=non_negative)
    min_delta: float = field(converter=as_float, default=0.0, validator=non_negative)


@frozen(kw_only=True)
class Checkpoint(Recorded):
    # None: val_loss when the data has a validation split, else loss.
    monitor: str | None = None
    mode: Mode = "auto"
    save_best: bool = True
    save_last: bool = True


@frozen(kw_only=True)
class MlflowTracking(Recorded):
    # Where MLflow stores runs: a folder (`file:./mlruns`) or a tracking server's URL.
    uri: str = "file:./mlruns"
    experiment: str = "tdsl"


@frozen(kw_only=True)
class Tracking(Recorded):
    mlflow: MlflowTracking | None = None


@frozen(kw_only=True)
class Compile(Recorded):
    """`train.compile: {mode: ...}`: a compiled step with one of torch.compile's modes."""

    # reduce-overhead also replays each step as a CUDA graph (on a GPU; the same as default
    # on the CPU); max-autotune also tries kernel variants (slower to compile).
    mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = (
        "default"
    )


@frozen(kw_only=True)
class Train(Recorded):
    epochs: int = field(default=10, validator=positive)
    # The effective batch: with accumulate: k, each batch runs as k micro-batches whose
    # gradients add up before one optimizer step (same update, less memory).
    batch_size: int = field(default=32, validator=positive)
    accumulate: int = field(default=1, validator=positive)
    # Rows per batch when evaluating and predicting; by default 4 * batch_size or 2**20
    # input values, whichever is more.
    eval_batch_size: int | None = field(default=None, validator=positive)
    # Run each training step as one torch.compile graph: faster steps after a compile of
    # seconds to a minute at the start of each run. `{mode: reduce-overhead}` (or the bare
    # mode name) picks torch.compile's mode.
    compile: Compile | bool = False
    # Convolution inputs and weights in channels-last memory layout (NHWC), which GPU
    # convolution kernels (tensor cores, bf16) run faster on; other tensors are unchanged.
    channels_last: bool = False
    # Gradient clipping before each optimizer step: by total norm and/or by value.
    clip_norm: float | None = field(default=None, converter=as_float, validator=positive)
    clip_value: float | None = field(default=None, converter=as_float, validator=positive)
    # A non-finite loss stops the run (keeping the last good checkpoint), or with
    # skip_batch that batch's update is dropped and counted.
    on_nan: Literal["stop", "skip_batch"] = "stop"
    early_stopping: EarlyStopping | None = None
    checkpoint: Checkpoint = Checkpoint()
    # Also log each epoch's metrics, learning rate and parameter histograms for TensorBoard
    # in RUN_DIR/tensorboard (needs `pip install tensorboard`).
    tensorboard: bool = False
    # Experiment tracking (needs `pip install mlflow`): the spec as params, each
    # epoch's metrics, the summary and the best checkpoint. A tracking failure warns and
    # training goes on.
    track: Tracking | None = None


# Every device name `device.name` may be (a regular expression, matched in full).
DEVICE_NAME = r"auto|cpu|mps|cuda(:\d+)?"


@frozen
class Device(Recorded):
    """Where and how a run computes; `Device("cpu")` names the device positionally."""

    # auto | cpu | cuda | cuda:N | mps
    name: str = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = field(default="fp32", kw_only=True)
    # ddp: one process per device, launched by `tdsl run --nproc N` or torchrun; each takes
    # its share of every (global) batch and gradients are averaged across processes.
    strategy: Literal["single", "ddp"] = field(default="single", kw_only=True)
    # auto: nccl on CUDA, gloo on the CPU.
    backend: Literal["auto", "gloo", "nccl"] = field(default="auto", kw_only=True)
    # Allow a batch_size that the number of processes does not divide.
    uneven_batches: bool = field(default=False, kw_only=True)
    # Seconds a process waits for the others before the run fails instead of hanging.
    timeout: float = field(
        default=300.0,
        converter=as_float,
        validator=[positive, bound("<=", MAX_TIMEOUT)],
        kw_only=True,
    )

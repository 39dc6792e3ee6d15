"""The GPU paths of training, exercised on the CPU with the device mocked: where rows live
and how batches reach the device, no host sync per step, channels-last layout, compile
modes. The last test runs the real thing where a GPU is present."""

import collections
import traceback

import attrs
import pytest
import torch
from torch.overrides import TorchFunctionMode

import tdsl
from tdsl.data import TensorData, load_data
from tdsl.spec.load_dump import read_spec
from tdsl.train import compile_options, placement
from tdsl.train.loops import fit

_SYNCS = {"item", "tolist", "__bool__", "__float__", "__int__", "__index__", "cpu", "numpy"}


class HostReads(TorchFunctionMode):
    """Counts the tensor methods that wait for a GPU (reading a value on the host) when
    tdsl's own code calls them (torch's CPU-side optimizer bookkeeping is not counted)."""

    def __init__(self):
        super().__init__()
        self.calls = collections.Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in _SYNCS:
            caller = traceback.extract_stack(limit=3)[0]
            if "/tdsl/" in caller.filename.replace("\\", "/"):
                self.calls[f"{caller.name}:{name}"] += 1
        return func(*args, **(kwargs or {}))


def rings(n: int, batch_size: int = 10, **train) -> tdsl.Spec:
    return tdsl.Spec(
        name="rings",
        data=tdsl.Rings(n_positive=n, n_negative=n),
        model=tdsl.Model(
            inputs=[tdsl.Input(shape=[2])],
            layers=[tdsl.Layer("linear", out_features=4), tdsl.Layer("linear", out_features=1)],
        ),
        loss=tdsl.Loss("bce_with_logits"),
        optimizer=tdsl.Optimizer("adam", lr=0.01),
        metrics=[tdsl.Metric("accuracy")],
        train=tdsl.Train(epochs=2, batch_size=batch_size, **train),
    )


def test_an_epoch_reads_from_the_device_the_same_few_times_however_many_steps():
    reads = []
    for n in (25, 100):  # 4 and 14 steps an epoch
        spec = rings(n)
        program = tdsl.compile(spec)
        data = load_data(spec)
        with HostReads() as counted:
            fit(program, program.init(), data)
        reads.append(counted.calls)
    assert reads[0] == reads[1]
    # A few an epoch (the loss means, the metric values) and the first, eager step's
    # Adam step count on the CPU.
    assert sum(reads[0].values()) <= 8 * 2


def _fake_cuda(monkeypatch, free: int):
    """A 'cuda' device with `free` bytes free, whose copies only record what they were asked."""
    calls = collections.Counter()

    def to(self, *args, **kwargs):
        device = kwargs.get("device", args[0] if args else None)
        if str(device).startswith("cuda"):
            calls["to non_blocking" if kwargs.get("non_blocking") else "to"] += 1
            return self
        return original_to(self, *args, **kwargs)

    def pin_memory(self, *args):
        calls["pin_memory"] += 1
        return self

    original_to = torch.Tensor.to
    monkeypatch.setattr(torch.Tensor, "to", to)
    monkeypatch.setattr(torch.Tensor, "pin_memory", pin_memory)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free, 2 * free))
    return calls


def _rows(n: int) -> TensorData:
    return TensorData((torch.randn(n, 3),), torch.randn(n, 1))


def test_rows_that_fit_go_to_the_gpu_once(monkeypatch):
    calls = _fake_cuda(monkeypatch, free=10**9)
    placed = placement.place(_rows(100), torch.device("cuda"))
    assert isinstance(placed, TensorData) and calls == {"to": 2}  # features and target
    list(placed.batches(10, order_seed=1))
    assert calls == {"to": 2}  # batches are gathered on the device: no copy per step


def test_rows_too_large_for_the_gpu_are_sent_per_batch_pinned_and_non_blocking(monkeypatch):
    calls = _fake_cuda(monkeypatch, free=1000)  # 100 rows of 4 floats take 1600 bytes
    placed = placement.place(_rows(100), torch.device("cuda"))
    assert isinstance(placed, placement.HostRows) and not calls
    batches = list(placed.batches(10, order_seed=1))
    assert len(batches) == 10 and placed.num_batches(10) == 10
    assert calls == {"pin_memory": 20, "to non_blocking": 20}
    assert placed.to(torch.device("cuda")) is placed


def test_placement_on_the_cpu_is_a_plain_move(monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", pytest.fail)
    rows = _rows(4)
    assert placement.place(rows, torch.device("cpu")).target is rows.target


def cnn(batchnorm: bool = False, **train) -> tdsl.Spec:
    layers = [tdsl.Layer("conv2d", out_channels=4, kernel_size=3, padding=1)]
    layers += [tdsl.Layer("batchnorm2d")] if batchnorm else []
    layers += [tdsl.Layer("relu"), tdsl.Layer("flatten"), tdsl.Layer("linear", out_features=3)]
    return tdsl.Spec(
        name="cnn",
        data=tdsl.RandomData(n=48, target=tdsl.Target(kind="class", num_classes=3)),
        model=tdsl.Model(inputs=[tdsl.Input(shape=[2, 5, 5])], layers=layers),
        loss=tdsl.Loss("cross_entropy"),
        optimizer=tdsl.Optimizer("adam", lr=0.01),
        train=tdsl.Train(epochs=2, batch_size=16, **train),
    )


def _nhwc(tensor: torch.Tensor) -> bool:
    return tensor.is_contiguous(memory_format=torch.channels_last) and not tensor.is_contiguous()


def test_channels_last_lays_out_images_and_conv_weights_and_trains_the_same():
    results = {}
    for channels_last in (False, True):
        spec = cnn(channels_last=channels_last)
        program = tdsl.compile(spec)
        seen = []
        program.module.register_forward_pre_hook(
            lambda m, args, seen=seen: seen.append(_nhwc(args[0]))
        )
        state = program.init()
        assert _nhwc(state.params["conv2d1.weight"]) is channels_last
        results[channels_last] = fit(program, state, load_data(spec))
        assert set(seen) == {channels_last}  # training and validation batches
        assert _nhwc(results[channels_last].state.params["conv2d1.weight"]) is channels_last
    for name, value in results[False].state.params.items():
        torch.testing.assert_close(results[True].state.params[name], value)
    assert results[True].history[-1]["val_loss"] == pytest.approx(
        results[False].history[-1]["val_loss"], rel=1e-5
    )


SPEC = """
name: m
data: {kind: rings}
model: {inputs: [{shape: [2]}], layers: [{op: linear, out_features: 1}]}
loss: bce_with_logits
train: {compile: %s}
"""


@pytest.mark.parametrize(
    ("written", "mode"),
    [
        ("true", "default"),
        ("reduce-overhead", "reduce-overhead"),
        ("{mode: max-autotune}", "max-autotune"),
    ],
)
def test_compile_takes_a_torch_compile_mode(written, mode):
    spec, problems = read_spec(SPEC % written)
    assert not problems
    assert tdsl.load(tdsl.dump(spec)) == spec
    given = spec.train.compile
    assert (given.mode if isinstance(given, tdsl.Compile) else "default") == mode
    options = compile_options.inductor_options(mode)
    assert "post_grad_custom_pre_pass" in options  # the alpha fix is kept in every mode
    assert options.get("triton.cudagraphs", False) is (mode != "default")


def test_an_unknown_compile_mode_is_a_located_error():
    spec, problems = read_spec(SPEC % "{mode: fastest}")
    assert spec is None and problems[0].path == ("train", "compile", "mode")
    assert "reduce-overhead" in problems[0].message and problems[0].location.line == 6


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_rows_sent_per_batch_train_as_rows_kept_on_the_gpu(monkeypatch):
    spec = attrs.evolve(cnn(channels_last=True), device=tdsl.Device("cuda"))
    data = load_data(spec)
    results = []
    for share in (0.5, 0.0):  # on the device; on the host, pinned, sent per batch
        monkeypatch.setattr(placement, "DEVICE_SHARE", share)
        program = tdsl.compile(spec)
        results.append(fit(program, program.init(), data))
    for name, value in results[0].state.params.items():
        torch.testing.assert_close(results[1].state.params[name], value)


def test_compiling_for_the_cpu_leaves_the_accelerators_random_state_alone(monkeypatch):
    """`torch.manual_seed` also seeds (or, before CUDA starts, queues a seed for) every
    accelerator, recording the caller's stack: milliseconds per compile, and a seed that
    outlives `compile`'s fork_rng. On the CPU only the CPU generator is seeded."""
    program = tdsl.compile(rings(10))
    first = program.init().params["linear1.weight"]
    seeded = []
    monkeypatch.setattr(torch, "manual_seed", seeded.append)
    program = tdsl.compile(rings(10))
    torch.testing.assert_close(program.init().params["linear1.weight"], first)
    assert seeded == []


def test_rows_placed_on_the_host_are_not_shared_out_again(monkeypatch):
    """Validation rows are placed once per fit and handed to `evaluate` each epoch; in a
    data-parallel run sharing them out again must not fail on rows kept on the host."""
    from tdsl.train import loops

    calls = _fake_cuda(monkeypatch, free=1000)

    class Program:  # what `_on_device` reads of a program
        device = torch.device("cuda")

        class world:  # noqa: N801 (stands for a World instance)
            @staticmethod
            def shard(rows, training):
                return attrs.evolve(rows, part=tdsl.data.tensors.Part(0, 2, training))

    placed = loops._on_device(_rows(100), Program)
    assert isinstance(placed, placement.HostRows) and placed.rows.part.world == 2
    assert loops._on_device(placed, Program) is placed
    assert len(list(placed.batches(10))) == 10 and calls["to non_blocking"] == 20

"""Data-parallel training in several processes (`device: {strategy: ddp}`), on torch.distributed.

Each process is launched by torch's own launcher (`tdsl run --nproc N` calls
`torch.distributed.run`; several machines use `torchrun ... -m tdsl run`), builds the same
program from the same seed and draws the same permutation each epoch; it then takes its
contiguous share of every global batch (`tdsl.data.tensors.Part`). After the backward pass one
coalesced `all_reduce` per dtype gives every process the gradient of the whole global batch
(each process's mean gradient weighted by its rows), the global batch's mean loss, and rank 0's
floating buffers (batch-norm statistics, as DDP's `broadcast_buffers` does), so every process
applies the same update a single process would. Epoch totals (row-weighted sums, rows, metric
states) are gathered and merged in rank order, so every process computes the same logs and
takes the same early-stopping decisions.

Gradients are reduced here rather than by wrapping the module in `DistributedDataParallel`:
its reducer wants a forward and backward pass on every process each step, but the last
batch of an epoch can hold fewer rows than processes, uneven shares need weights other than
its plain average, `accumulate` would reduce once per micro-batch, and `on_nan: skip_batch`
needs every process to agree on the loss — one all_reduce after the backward pass does all
of that. (It does not overlap communication with the backward pass as DDP does.)
"""

from __future__ import annotations

import contextlib
import random
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import timedelta
from typing import Any

import attrs
import torch
import torch.distributed as dist

from tdsl import spec as S
from tdsl.check.devices import launched
from tdsl.data.tensors import Part
from tdsl.errors import DistributedError
from tdsl.registry.metrics import Metric
from tdsl.train.state import TrainState


def is_lead() -> bool:
    """Whether this process prints and writes: the only one, or rank 0 of launched ones."""
    launch = launched()
    return launch is None or launch.rank == 0


def place(name: str, local_rank: int) -> torch.device:
    """Process `local_rank`'s device: its own GPU on CUDA, else the CPU (there is no
    distributed backend for mps, so `auto` skips it)."""
    if name.startswith("cuda") or (name == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def backend_for(device: S.Device, where: torch.device) -> str:
    if device.backend != "auto":
        return device.backend
    return "nccl" if where.type == "cuda" and dist.is_nccl_available() else "gloo"


@attrs.define
class World:
    """This process's view of the others: its rank, how many there are, its device."""

    rank: int
    size: int
    device: torch.device

    @property
    def lead(self) -> bool:
        return self.rank == 0

    def shard(self, rows: Any, training: bool) -> Any:
        """`rows` (TensorData or FileData) yielding only this process's share of each batch."""
        if not attrs.has(type(rows)) or "part" not in attrs.fields_dict(type(rows)):
            raise DistributedError(f"cannot share {type(rows).__name__} rows among processes")
        return attrs.evolve(rows, part=Part(self.rank, self.size, training))

    @torch.no_grad()
    def sync_gradients(
        self,
        params: Iterable[torch.nn.Parameter],
        buffers: Iterable[torch.Tensor],
        loss: torch.Tensor,
        rows: int,
    ) -> torch.Tensor:
        """Replace each gradient by the global batch's mean gradient and each floating
        buffer by rank 0's; return the global batch's mean loss (the same on every process,
        so decisions about non-finite losses agree). `loss` is this process's mean over
        its `rows` rows. Every process reaches the same parameters with the same graph, so a
        gradient that is None here is None everywhere and stays None."""
        # Per dtype one flat tensor, summed over processes by one all_reduce: each gradient
        # times this process's rows; each floating buffer (rank 0's, zeros elsewhere); and,
        # last in float32, [loss * rows, rows].
        groups: dict[torch.dtype, list[tuple[torch.Tensor, torch.Tensor | None, str]]]
        groups = defaultdict(list)
        for param in params:
            grad = param.grad
            source = torch.zeros_like(param) if grad is None else grad
            groups[param.dtype].append((source, grad, "grad"))
        for buffer in buffers:
            if buffer.is_floating_point():
                groups[buffer.dtype].append((buffer, buffer, "buffer"))
        row_count = torch.tensor(float(rows), device=loss.device)
        stats = torch.stack([loss.detach().float() * rows, row_count])
        groups[torch.float32].append((stats, stats, "stats"))
        pending = []
        for items in groups.values():
            flat = torch.cat([source.reshape(-1) for source, _, _ in items])
            offset = 0
            for source, _, kind in items:
                piece = flat[offset : offset + source.numel()]
                if kind == "grad":
                    piece.mul_(rows)  # weighted by rows, the sum over processes is exact
                elif kind == "buffer" and not self.lead:
                    piece.zero_()  # rank 0's value plus zeros is rank 0's value, bit for bit
                offset += source.numel()
            pending.append((flat, items, dist.all_reduce(flat, async_op=True)))
        for _, _, work in pending:
            work.wait()
        total = pending[list(groups).index(torch.float32)][0][-1]  # the global batch's rows
        for flat, items, _ in pending:
            offset = 0
            for source, target, kind in items:
                piece = flat[offset : offset + source.numel()].view_as(source)
                offset += source.numel()
                if target is None:  # no gradient here, so none anywhere
                    continue
                target.copy_(piece)
                if kind == "grad":
                    target.div_(total)
        return (stats[0] / stats[1]).to(loss.dtype)

    def merge_totals(
        self,
        sums: dict[str, float],
        rows: int,
        states: dict[str, Any],
        metrics: Sequence[Metric],
    ) -> tuple[dict[str, float], int, dict[str, Any]]:
        """Every process's epoch totals added up: row-weighted sums, rows, and metric states
        merged with each metric's own `merge`, in rank order, so all get identical results."""
        mine = (sums, rows, {name: _to_cpu(state) for name, state in states.items()})
        gathered: list[Any] = [None] * self.size
        dist.all_gather_object(gathered, mine)
        all_sums: dict[str, float] = {}
        all_rows, merged = 0, {}
        for part_sums, part_rows, part_states in gathered:
            for key, value in part_sums.items():
                all_sums[key] = all_sums.get(key, 0.0) + value
            all_rows += part_rows
            for metric in metrics:
                state, previous = part_states.get(metric.name), merged.get(metric.name)
                if state is not None:
                    merged[metric.name] = (
                        state if previous is None else metric.merge(previous, state)
                    )
        return all_sums, all_rows, merged

    def merge_accumulated(self, totals: Any) -> None:
        """Turn `totals` (the loops' epoch accumulator: per-batch `values` and `counts`,
        metric `stats`) into the totals of every process's rows."""
        totals._flush()
        counts = torch.tensor(totals.counts, dtype=torch.float64)
        sums = {
            key: float((torch.stack(values).double().reshape(-1).cpu() * counts).sum())
            for key, values in totals.values.items()
        }
        rows = sum(totals.counts)
        sums, rows, stats = self.merge_totals(sums, rows, totals.stats, totals.program.metrics)
        totals.values = {
            key: [torch.tensor(s / rows, dtype=torch.float64)] for key, s in sums.items()
        }
        totals.counts = [rows] if rows else []
        totals.stats = stats

    def rank_rng(self, state: TrainState, seed: int) -> TrainState:
        """The state this process starts an epoch from. Rank 0 keeps the state's random
        stream (the one checkpoints hold); every other rank draws from its own, derived from
        (seed, epoch, rank), so dropout differs between processes and a resumed run replays it."""
        if self.lead:
            return state
        derived = random.Random(f"tdsl/{seed}/{state.epoch}/{self.rank}").getrandbits(63)
        rng = (torch.Generator().manual_seed(derived).get_state(),)
        if len(state.rng) > 1 and self.device.type == "cuda":
            with torch.random.fork_rng(devices=[self.device]):
                torch.cuda.manual_seed(derived)
                rng += (torch.cuda.get_rng_state(self.device),)
        return attrs.evolve(state, rng=rng, lease=type(state.lease)())


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, tuple | list):
        return type(value)(_to_cpu(v) for v in value)
    return value


_STARTED_HERE = False  # whether connect() made the process group (and shutdown() ends it)


def connect(device: S.Device) -> World | None:
    """Join the other launched processes (once per process); None when this process trains
    alone: a `single` strategy, or `ddp` without a launcher or with one process."""
    global _STARTED_HERE
    if device.strategy != "ddp" or not dist.is_available():
        return None
    if dist.is_initialized():  # made by us earlier, or by the caller's own code
        rank, size = dist.get_rank(), dist.get_world_size()
        local = launched()
        where = place(device.name, local.local_rank if local else 0)
        return World(rank, size, where) if size > 1 else None
    launch = launched()
    if launch is None or launch.world_size == 1:
        return None
    where = place(device.name, launch.local_rank)
    if where.type == "cuda":
        torch.cuda.set_device(where)
    try:
        dist.init_process_group(
            backend_for(device, where),
            timeout=timedelta(seconds=device.timeout),
            rank=launch.rank,
            world_size=launch.world_size,
        )
    except (RuntimeError, ValueError) as exc:
        raise DistributedError(
            f"process {launch.rank} of {launch.world_size} could not join the others: "
            f"{_first_line(exc)}"
        ) from None
    _STARTED_HERE = True
    return World(launch.rank, launch.world_size, where)


def shutdown() -> None:
    """End the process group `connect` made, if any."""
    global _STARTED_HERE
    if _STARTED_HERE and dist.is_initialized():
        dist.destroy_process_group()
    _STARTED_HERE = False


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


@contextlib.contextmanager
def session() -> Iterator[None]:
    """Around a command: a failed collective operation (another process died or stopped
    answering within device.timeout) becomes one clear error, and the group is ended.

    An error of this process's own leaves the group to end with the process: ending it here
    would tell the others at once, before the error is recorded for the launcher
    (tdsl/__main__.py) and printed, so that they could fail and exit first, and the launcher,
    which stops every process as soon as one has failed, could stop this one before its
    error is out or name one that merely lost it as the first failure."""
    own_error = False
    try:
        yield
    except dist.DistError as exc:
        raise _lost(exc) from None
    except RuntimeError as exc:
        if not dist.is_initialized() or "gloo" not in str(exc).lower():
            own_error = True
            raise
        raise _lost(exc) from None
    except Exception:
        own_error = True
        raise
    finally:
        if not own_error:
            shutdown()


def _lost(exc: BaseException) -> DistributedError:
    launch = launched()
    who = f"process {launch.rank} of {launch.world_size}" if launch else "this process"
    return DistributedError(
        f"{who} lost the others during a collective operation ({_first_line(exc)}); another "
        "process failed or did not answer within device.timeout seconds — see its error"
    )

"""Image decoding throughput: tdsl's `images` source against torchvision's `ImageFolder` +
`DataLoader` on the same folder, in images per second for one epoch.

Writes a folder of class sub-folders (`--classes` x `--per-class` RGB images of `--size`
pixels, alternately JPEG and PNG: smooth gradients plus noise from a fixed seed, so they
compress like photographs rather than like noise) into a temporary folder. Then, for each
`--workers` count, times whole epochs of float batches of `--batch` images, interleaved
(the variants' order rotates each repetition) and repeated `--repeats` times:

- tdsl: `load_data` on a spec with `kind: images` (once, as `ImageFolder` is built once),
  then each epoch iterates the training split's batches as `tdsl.fit` does
  (`batches(batch_size, order_seed)`: a new permutation, the split's workers kept from one
  epoch to the next);
- the baseline: torchvision's `datasets.ImageFolder` with `transforms.ToTensor()` when
  torchvision imports, else a hand-written `Dataset` doing what ImageFolder's default
  loader and ToTensor do (Pillow open, convert to RGB, to a float tensor / 255), in one
  `DataLoader(batch_size, shuffle=True, num_workers, persistent_workers=True)` for every
  epoch. The output names which one ran.

Both are first checked to give the same pixels for the same file. Prints medians and ranges
of images/s (wall clock) and of CPU milliseconds per 100 images (this process and its
worker processes, running or ended: steadier than wall time on a shared machine), the
median of the per-repetition ratios tdsl/baseline, and the load average. The untimed first
repetition starts the workers.

Run: python bench/images.py [--quick] [--size 64] [--workers 0 2] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

import tdsl
from tdsl.data import load_data

# --- the folder ----------------------------------------------------------------------------


def image_pixels(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth colour gradient in a random direction plus mild noise, as uint8 [H, W, 3]."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    angle = rng.uniform(0, 2 * np.pi, 3)
    ramps = [np.cos(a) * x + np.sin(a) * y for a in angle]
    base = np.stack(ramps, axis=-1) * rng.uniform(60, 160, 3) + rng.uniform(30, 100, 3)
    noise = rng.normal(0, 8, (size, size, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def make_folder(root: Path, classes: int, per_class: int, size: int, seed: int = 0) -> Path:
    """`root/images/class_K/NNNN.{jpg,png}`: alternately JPEG (quality 90) and PNG."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder = root / "images"
    for k in range(classes):
        sub = folder / f"class_{k}"
        sub.mkdir(parents=True)
        for i in range(per_class):
            image = Image.fromarray(image_pixels(rng, size), "RGB")
            if i % 2:
                image.save(sub / f"{i:04d}.png")
            else:
                image.save(sub / f"{i:04d}.jpg", quality=90)
    return folder


# --- the two readers -----------------------------------------------------------------------


def tdsl_spec(folder: Path, size: int, workers: int, classes: int) -> tdsl.Spec:
    data = tdsl.ImageFolder(
        folder=str(folder),
        size=[size, size],
        target_kind="class",
        workers=workers,
        split=tdsl.Split(train=1.0, val=0.0),  # every image in the epoch, as ImageFolder
    )
    model = tdsl.Model(
        inputs=[tdsl.Input(shape=[3, size, size])],
        layers=[tdsl.Layer("flatten"), tdsl.Layer("linear", out_features=classes)],
    )
    return tdsl.Spec(name="images_bench", data=data, model=model, loss=tdsl.Loss("cross_entropy"))


class PilImageFolder(Dataset):
    """What torchvision's ImageFolder + ToTensor do per item: Pillow open, convert to RGB,
    a float tensor [C, H, W] / 255, and the class index."""

    def __init__(self, folder: Path):
        classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
        self.samples = [
            (path, k)
            for k, name in enumerate(classes)
            for path in sorted((folder / name).iterdir())
            if path.suffix.lower() in (".jpg", ".jpeg", ".png")
        ]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[item]
        return self.pixels(path), label

    @staticmethod
    def pixels(path: Path) -> torch.Tensor:
        from PIL import Image

        with open(path, "rb") as f:
            image = Image.open(f).convert("RGB")
        pixels = torch.from_numpy(np.array(image, np.uint8, copy=True))
        return pixels.permute(2, 0, 1).contiguous().float().div(255)


def baseline_dataset(folder: Path) -> tuple[str, Dataset, Callable[[Path], torch.Tensor]]:
    """(what ran, the dataset, its pixels of one file): torchvision's ImageFolder when it
    imports (a build for another torch fails at import, not always with ImportError), else
    the hand-written equivalent."""
    try:
        from torchvision import datasets, transforms
    except Exception as exc:  # whatever stops torchvision, fall back
        why = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
        name = f"hand-written ImageFolder equivalent (torchvision unusable: {why})"
        return name, PilImageFolder(folder), PilImageFolder.pixels
    dataset = datasets.ImageFolder(str(folder), transform=transforms.ToTensor())
    name = f"torchvision {torchvision_version()} datasets.ImageFolder + ToTensor"
    return name, dataset, lambda path: dataset.transform(dataset.loader(str(path)))


def torchvision_version() -> str:
    import torchvision

    return torchvision.__version__


def tdsl_epoch(train, batch: int, epoch: int) -> int:
    seen = 0
    for b in train.batches(batch, epoch):
        seen += len(b.target)
    return seen


def baseline_loader(dataset: Dataset, batch: int, workers: int) -> DataLoader:
    """One loader for every epoch: its workers kept, a new order each epoch."""
    return DataLoader(
        dataset,
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(0),
    )


def baseline_epoch(loader: DataLoader, epoch: int) -> int:
    seen = 0
    for _, target in loader:
        seen += len(target)
    return seen


def same_pixels(train, pixels: Callable[[Path], torch.Tensor]) -> float:
    """The largest difference between tdsl's and the baseline's pixels over a few files
    (JPEG and PNG: every other file is each)."""
    reader = train.reader
    worst = 0.0
    for row in [*range(0, len(reader), max(1, len(reader) // 8)), 1]:
        mine = reader.read(np.array([row])).features[0][0]
        theirs = pixels(reader.files[row])
        if mine.shape != theirs.shape:
            raise SystemExit(f"shapes differ for {reader.files[row]}: {mine.shape} {theirs.shape}")
        worst = max(worst, float((mine - theirs).abs().max()))
    return worst


# --- timing --------------------------------------------------------------------------------


def cpu_seconds() -> float:
    """CPU time of this process and of its children, ended (and waited for) or running:
    workers kept across epochs are never waited for while they serve."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime + _running_children()


def _running_children() -> float:
    """CPU seconds of this process's children still running (Linux /proc; 0 elsewhere)."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # ended while listed: its time is in RUSAGE_CHILDREN once waited for
        if int(fields[1]) == os.getpid():  # ppid; then utime and stime, fields 14 and 15
            total += int(fields[11]) + int(fields[12])
    return total / tick


def timed(run: Callable[[], int]) -> tuple[float, float, int]:
    cpu, wall = cpu_seconds(), time.perf_counter()
    images = run()
    return time.perf_counter() - wall, cpu_seconds() - cpu, images


def spread(values: Iterable[float], digits: int = 0) -> str:
    values = sorted(values)
    mid = statistics.median(values)
    if len(values) == 1:
        return f"{mid:,.{digits}f}"
    return f"{mid:,.{digits}f} ({values[0]:,.{digits}f}–{values[-1]:,.{digits}f})"


def measure(args: argparse.Namespace, folder: Path) -> list[str]:
    started = time.perf_counter()
    name, dataset, pixels = baseline_dataset(folder)
    setup = {"baseline": time.perf_counter() - started}
    rows = []
    for workers in args.workers:
        started = time.perf_counter()
        # Once per process: listing the folder and checking each file's first bytes.
        train = load_data(tdsl_spec(folder, args.size, workers, args.classes)).train
        setup.setdefault("tdsl", time.perf_counter() - started)
        diff = same_pixels(train, pixels)
        if diff > 1e-6:
            raise SystemExit(f"tdsl's pixels differ from the baseline's by up to {diff}")
        variants = {
            "tdsl": functools.partial(tdsl_epoch, train, args.batch),
            "baseline": functools.partial(
                baseline_epoch, baseline_loader(dataset, args.batch, workers)
            ),
        }
        results: dict[str, list[tuple[float, float, int]]] = {k: [] for k in variants}
        for rep in range(args.warmup + args.repeats):
            order = list(variants) if rep % 2 == 0 else list(variants)[::-1]
            for key in order:
                measured = timed(functools.partial(variants[key], rep))
                if rep >= args.warmup:
                    results[key].append(measured)
        rate = {k: [n / w for w, _, n in v] for k, v in results.items()}
        cpu = {k: [100_000 * c / n for _, c, n in v] for k, v in results.items()}
        ratio = [a / b for a, b in zip(rate["tdsl"], rate["baseline"], strict=True)]
        del variants, train  # their kept workers end here, not beside the next count's
        rows.append(
            f"| {args.size}x{args.size} | {workers} | {spread(rate['tdsl'])} | "
            f"{spread(rate['baseline'])} | {spread(ratio, 2)} | {spread(cpu['tdsl'], 1)} | "
            f"{spread(cpu['baseline'], 1)} |"
        )
    return [
        f"baseline: {name}; pixels identical (max abs difference {diff:g}); set-up, once: "
        f"tdsl load_data {setup['tdsl']:.2f} s, baseline dataset {setup['baseline']:.2f} s",
        *rows,
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny folder, one repetition")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (224 too)")
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1, help="untimed first repetitions")
    parser.add_argument("--dir", default=None, help="where the temporary folder goes")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads in this process (DataLoader workers run 1); more threads on a "
        "busy machine make ToTensor's small permute-and-copy wait for descheduled threads",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.classes, args.per_class, args.repeats, args.warmup = 32, 2, 48, 1, 0
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        report(args)
    finally:  # as it was, for a caller in the same process (the test suite)
        torch.set_num_threads(threads)
    return 0


def report(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="tdsl_images_") as tmp:
        started = time.perf_counter()
        folder = make_folder(Path(tmp), args.classes, args.per_class, args.size)
        made = time.perf_counter() - started
        images = args.classes * args.per_class
        load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
        print(
            f"{datetime.date.today()}  {platform.machine()}, {os.cpu_count()} CPUs, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"load average {load}"
        )
        print(
            f"{images:,} images ({args.classes} classes, half JPEG, half PNG) of "
            f"{args.size}x{args.size} written in {made:.1f} s; batches of {args.batch}, "
            f"{args.repeats} interleaved repetitions after {args.warmup} untimed"
        )
        lines = measure(args, folder)
        print(lines[0])
        print()
        print(
            "| image | workers | tdsl images/s | baseline images/s | tdsl/baseline | "
            "tdsl CPU ms/100 images | baseline CPU ms/100 images |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for line in lines[1:]:
            print(line)
        print(f"load average after: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    sys.exit(main())

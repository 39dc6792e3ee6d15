"""Image folders: one sub-folder of PNG/JPEG images per class, classes in sorted order (as
torchvision's ImageFolder numbers them).

Listing the folders and checking each file's signature bytes is cheap and happens at
validation; decoding (Pillow, an optional extra) happens batch by batch in DataLoader
workers. Each image is converted to RGB or grayscale, resized to `size`, scaled to [0, 1],
augmented when it is a training row (random horizontal flip, random crop after padding),
and normalized per channel.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from tdsl import spec as S
from tdsl.data.base import Context, DataError, DataSignature, FeatureInfo, Problems, check_exists
from tdsl.data.fitted import Fitted, mismatch
from tdsl.data.labels import float_dtype
from tdsl.data.streaming import FileData, batch_tensor
from tdsl.data.tensors import Batch, Splits, split_index
from tdsl.special_files import open_regular, special_file
from tdsl.wording import file_reason, install_hint

SIGNATURES = {".png": b"\x89PNG\r\n\x1a\n", ".jpg": b"\xff\xd8\xff", ".jpeg": b"\xff\xd8\xff"}
FOLDERS = ("folder", "val_folder", "test_folder")


def pillow_available() -> bool:
    return importlib.util.find_spec("PIL") is not None


def channels(source: S.ImageFolder) -> int:
    return 3 if source.mode == "rgb" else 1


def static_problems(source: S.ImageFolder, problems: Problems) -> None:
    if len(source.size) != 2:
        problems.add(("size",), f"must be [height, width] (got {list(source.size)})")
    for key in ("mean", "std"):
        values = getattr(source, key)
        if values and len(values) != channels(source):
            problems.add(
                (key,), f"needs {channels(source)} values for mode {source.mode}, got {len(values)}"
            )
    if len(source.size) == 2 and source.random_crop >= min(source.size):
        problems.add(("random_crop",), f"must be smaller than the image (size {list(source.size)})")
    if any(v <= 0 for v in source.std):
        problems.add(("std",), "must be > 0")
    if bool(source.mean) != bool(source.std):
        problems.add(("std" if source.mean else "mean",), "mean and std go together")
    if not pillow_available():
        problems.add(
            ("kind",),
            "reading images needs Pillow, which is not installed",
            install_hint("pillow", "images"),
        )


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in SIGNATURES and not path.name.startswith(".")


def list_folder(folder: Path, key: str, problems: Problems, classes: list[str] | None = None):
    """(class names, image files, class index per file); every file's first bytes checked."""
    try:
        found = sorted(
            p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
        )
    except OSError as exc:
        problems.add((key,), f"cannot list {folder}: {exc.strerror or exc}")
        return [], [], []
    if not found:
        problems.add(
            (key,), f"{folder} has no class sub-folders", "put each class's images in a sub-folder"
        )
        return [], [], []
    if classes is not None:
        extra = [c for c in found if c not in classes]
        if extra:
            problems.add(
                (key,), f"{folder} has classes the training folder lacks: {', '.join(extra)}"
            )
    classes = classes if classes is not None else found
    files, labels, bad = [], [], []
    for name in found:
        try:
            images = sorted(p for p in (folder / name).iterdir() if _is_image(p))
        except OSError as exc:
            problems.add((key,), f"cannot list {folder / name}: {exc.strerror or exc}")
            continue
        if not images:
            problems.add((key,), f"class folder {folder / name} has no PNG or JPEG images")
        for image in images:
            kind = special_file(image)
            if kind is not None:  # a FIFO named *.png would block the read forever
                problems.add((key,), f"{image} is {kind}, not a regular file")
                continue
            try:
                with open_regular(image) as handle:
                    head = handle.read(8)
            except OSError:
                head = b""
            if not head.startswith(SIGNATURES[image.suffix.lower()]):
                bad.append(image)
        files += images
        labels += [classes.index(name) if name in classes else -1] * len(images)
    if bad:
        more = f" ({len(bad) - 1} more files like it)" if len(bad) > 1 else ""
        problems.add((key,), f"{bad[0]} is not a {bad[0].suffix.lower()[1:].upper()} image{more}")
    return classes, files, labels


class ImageReader:
    """Decodes, resizes, augments and normalizes images by row index (in worker processes)."""

    def __init__(
        self, source: S.ImageFolder, files: list[Path], target: torch.Tensor, dtype: torch.dtype
    ):
        self.source, self.files, self.target, self.dtype = source, files, target, dtype

    def __len__(self) -> int:
        return len(self.files)

    def _decode(self, path: Path) -> np.ndarray:
        """The image as uint8 [height, width, channels], converted and resized."""
        from PIL import Image

        height, width = self.source.size
        try:
            with Image.open(path) as image:
                # convert and resize copy an image already in the mode and at the size
                mode = "RGB" if self.source.mode == "rgb" else "L"
                if image.mode != mode:
                    image = image.convert(mode)
                if image.size != (width, height):
                    image = image.resize((width, height), Image.Resampling.BILINEAR)
                pixels = np.asarray(image)
        except Exception as exc:  # Pillow raises many kinds for a broken file
            raise DataError.at(
                ("folder",),
                f"cannot read image {path}: {file_reason(exc)}",
            ) from None
        return pixels.reshape(height, width, -1)

    def _load(self, path: Path) -> np.ndarray:
        """float32 [channels, height, width] in [0, 1]."""
        return (self._decode(path) / np.float32(255)).transpose(2, 0, 1)

    def _augment(self, pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Flip and crop [height, width, channels] pixels; on the uint8 pixels, as the
        float ones give the same values (padding 0 is 0.0) for a quarter of the bytes."""
        if self.source.random_flip and rng.random() < 0.5:
            pixels = pixels[:, ::-1]
        pad = self.source.random_crop
        if pad:
            height, width, _ = pixels.shape
            padded = np.pad(pixels, ((pad, pad), (pad, pad), (0, 0)))
            top, left = rng.integers(0, 2 * pad + 1, size=2)
            pixels = padded[top : top + height, left : left + width]
        return pixels

    def read(self, index: np.ndarray, augment_seed: int | None = None) -> Batch:
        rows = index.tolist()
        shape = (len(rows), channels(self.source), *self.source.size)
        # Each image is scaled straight into its slot of the batch, which in a worker
        # process lies in shared memory: no per-image float copies, no stacking, and no
        # copy when the batch is sent to the training process.
        batch = batch_tensor(shape, torch.float32)
        slots = batch.numpy()
        for position, row in enumerate(rows):
            pixels = self._decode(self.files[row])
            if augment_seed is not None:
                pixels = self._augment(pixels, np.random.default_rng([augment_seed, position]))
            # Channels first while still bytes: dividing contiguous bytes is the fast loop.
            planes = np.ascontiguousarray(pixels.transpose(2, 0, 1))
            np.divide(planes, np.float32(255), out=slots[position])
        if self.source.mean:
            batch.sub_(torch.tensor(self.source.mean).reshape(1, -1, 1, 1))
            batch.div_(torch.tensor(self.source.std).reshape(1, -1, 1, 1))
        if self.dtype != torch.float32:
            batch = batch_tensor(shape, self.dtype).copy_(batch)
        return Batch(
            (batch,),
            self.target[torch.from_numpy(np.asarray(index, dtype=np.int64))],
        )


def _target(source: S.ImageFolder, labels: list[int]) -> torch.Tensor:
    values = torch.tensor(labels, dtype=torch.long)
    return values.float().reshape(-1, 1) if source.target_kind == "binary" else values


def prepare(source: S.ImageFolder, ctx: Context, fitted: Fitted | None = None):
    problems = Problems()
    static_problems(source, problems)
    paths = {k: ctx.path(getattr(source, k)) for k in FOLDERS if getattr(source, k) is not None}
    for key, path in paths.items():
        found = check_exists(path, (key,), folder=True)
        if found:
            problems.items.append(found)
    problems.check()
    classes, files, labels = list_folder(paths["folder"], "folder", problems)
    others = {
        k: list_folder(p, k, problems, classes)[1:] for k, p in paths.items() if k != "folder"
    }
    if source.target_kind == "binary" and classes and len(classes) != 2:
        problems.add(
            ("target_kind",),
            f"binary targets need 2 class folders, {paths['folder']} has {len(classes)}",
        )
    problems.check()
    if fitted is not None and fitted.expect("images", "classes") != classes:
        raise mismatch(f"classes {fitted.state['classes']} were fitted, the folder has {classes}")
    fitted = Fitted("images", {"classes": classes})
    dtype = float_dtype(ctx)
    target = _target(source, labels)
    strata = torch.tensor(labels) if source.split.stratify else None
    own = ("val_folder" in others, "test_folder" in others)
    index = split_index(
        len(files), source.split, torch.Generator().manual_seed(ctx.seed), strata, own
    )
    reader = ImageReader(source, files, target, dtype)
    splits = [FileData(reader, index.train.numpy(), source.workers, augment=True)]
    for which, key in ((index.val, "val_folder"), (index.test, "test_folder")):
        if key in others:
            other_files, other_labels = others[key]
            other = ImageReader(source, other_files, _target(source, other_labels), dtype)
            splits.append(FileData(other, np.arange(len(other_files)), source.workers))
        else:
            splits.append(
                None if which is None else FileData(reader, which.numpy(), source.workers)
            )
    feature = FeatureInfo((channels(source), *source.size), str(dtype).removeprefix("torch."))
    num_classes = len(classes) if source.target_kind == "class" else None
    counts = {
        n: len(s) for n, s in zip(("train", "val", "test"), splits, strict=True) if s is not None
    }
    signature = DataSignature(
        (feature,), S.Target(kind=source.target_kind, num_classes=num_classes), counts
    )
    return Splits(*splits, fitted=fitted), signature


def read_input(source: S.ImageFolder, ctx: Context, _fitted: object, path: Path):
    """Prediction images: one image file, or every image under a folder, in sorted order."""
    files = sorted(p for p in path.rglob("*") if _is_image(p)) if path.is_dir() else [path]
    if not files:
        raise DataError.at((), f"{path} holds no PNG or JPEG images")
    reader = ImageReader(source, files, torch.zeros(len(files)), float_dtype(ctx))
    return reader.read(np.arange(len(files))).features

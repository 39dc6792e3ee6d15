"""Image folders with a parallel folder of masks (`kind: segmentation`): an image `a.jpg`
pairs with the mask `a.png`, whose pixels are class ids.

Preparing reads every mask once (masks are small and single-channel) to check what
training would otherwise trip over late: an image without a mask or a mask without an
image, a mask whose size differs from its image's, an id that is no class. Decoding the
images happens batch by batch in DataLoader workers, as for `kind: images`; masks are
resized with nearest-neighbour sampling so ids stay ids, and a training row's flip and
crop are drawn once and applied to both.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tdsl import spec as S
from tdsl.data import images
from tdsl.data.base import Context, DataError, DataSignature, FeatureInfo, Problems, check_exists
from tdsl.data.fitted import Fitted
from tdsl.data.images import ImageReader, _is_image, channels
from tdsl.data.images import static_problems as image_problems
from tdsl.data.labels import float_dtype
from tdsl.data.streaming import FileData
from tdsl.data.tensors import Batch, Splits, split_index
from tdsl.special_files import require_regular_file
from tdsl.wording import file_reason

MASK_SUFFIX = ".png"  # lossless: a JPEG would blur the ids at every edge


def augment_pair(
    pixels: np.ndarray, mask: np.ndarray, flip: bool, pad: int, fill: int, rng
) -> tuple[np.ndarray, np.ndarray]:
    """One draw of a random horizontal flip (when `flip`) and a random crop after padding by
    `pad`, applied alike to pixels [C, H, W] and their mask [H, W]; the mask's padding is
    `fill` (the ignored id, else background)."""
    if flip and rng.random() < 0.5:
        pixels, mask = pixels[:, :, ::-1], mask[:, ::-1]
    if pad:
        _, height, width = pixels.shape
        pixels = np.pad(pixels, ((0, 0), (pad, pad), (pad, pad)))
        mask = np.pad(mask, ((pad, pad), (pad, pad)), constant_values=fill)
        top, left = rng.integers(0, 2 * pad + 1, size=2)
        pixels = pixels[:, top : top + height, left : left + width]
        mask = mask[top : top + height, left : left + width]
    return pixels, mask


def _stems(folder: Path, key: str, problems: Problems, masks: bool) -> dict[str, Path]:
    try:
        files = sorted(p for p in folder.iterdir() if p.is_file() and _is_image(p))
    except OSError as exc:
        problems.add((key,), f"cannot list {folder}: {exc.strerror or exc}")
        return {}
    if masks:
        files = [p for p in files if p.suffix.lower() == MASK_SUFFIX]
    if not files:
        what = "PNG masks" if masks else "PNG or JPEG images"
        problems.add((key,), f"{folder} has no {what}")
    by_stem: dict[str, Path] = {}
    for path in files:
        if path.stem in by_stem:  # a.png and a.jpg: which one would a.png's mask label?
            problems.add(
                (key,),
                f"{by_stem[path.stem].name} and {path.name} have the same name: a mask pairs "
                "with one image",
                "keep one of them",
            )
        by_stem[path.stem] = path
    return by_stem


def pair_files(
    images: dict[str, Path], masks: dict[str, Path], problems: Problems
) -> list[tuple[Path, Path]]:
    """(image, mask) pairs by file name; an image without a mask and a mask without an image
    are problems, named (the first of each, and how many more)."""
    for key, own, other, what in (
        ("masks", images, masks, "has no mask"),
        ("folder", masks, images, "has no image"),
    ):
        missing = [own[stem] for stem in own if stem not in other]
        if missing:
            more = f" ({len(missing) - 1} more like it)" if len(missing) > 1 else ""
            noun = "image" if key == "masks" else "mask"
            problems.add(
                (key,),
                f"{noun} {missing[0].name} {what} of the same name{more}",
                f"masks are PNGs named as their images: {missing[0].stem}{MASK_SUFFIX}"
                if key == "masks"
                else None,
            )
    return [(images[stem], masks[stem]) for stem in images if stem in masks]


def check_pairs(source: S.Segmentation, pairs: list[tuple[Path, Path]], problems: Problems) -> None:
    """Each mask as large as its image, single-channel, and holding only class ids (and the
    ignored id); the first file with each problem is named."""
    from PIL import Image

    sizes: list[str] = []
    ids: list[str] = []
    for image_path, mask_path in pairs:
        try:
            for path in (image_path, mask_path):  # a FIFO would block the read forever
                require_regular_file(path)
            with Image.open(image_path) as image:
                image_size = image.size
            with Image.open(mask_path) as mask:
                mask_size, mask_mode = mask.size, mask.mode
                values = np.unique(np.asarray(mask))
        except Exception as exc:  # Pillow raises many kinds for a broken file
            problems.add(
                ("masks",),
                f"cannot read {mask_path.name} or its image: {file_reason(exc)}",
            )
            continue
        if mask_size != image_size:
            sizes.append(
                f"mask {mask_path.name} is {mask_size[0]}x{mask_size[1]}, its image "
                f"{image_path.name} is {image_size[0]}x{image_size[1]} (width x height)"
            )
        if mask_mode not in ("L", "P", "I", "I;16", "1"):
            problems.add(
                ("masks",), f"mask {mask_path.name} has mode {mask_mode}, not one id a pixel"
            )
            continue
        bad = [int(v) for v in values if v >= source.num_classes and v != source.ignore_index]
        if bad:
            ids.append(
                f"mask {mask_path.name} has pixel values {bad[:5]}, but class ids are "
                f"0..{source.num_classes - 1}"
            )
    if sizes:
        problems.add(("masks",), sizes[0] + _more(sizes), "a mask must be as large as its image")
    if ids:
        ignored = "" if source.ignore_index is None else f" (ignore_index {source.ignore_index})"
        problems.add(
            ("num_classes",),
            ids[0] + ignored + _more(ids),
            "raise num_classes, or set ignore_index to the value that marks unlabelled pixels",
        )


def _more(found: list[str]) -> str:
    return f" ({len(found) - 1} more masks like it)" if len(found) > 1 else ""


class MaskReader(ImageReader):
    """Decodes image and mask pairs by row index, augmenting both alike."""

    def __init__(self, source: S.Segmentation, pairs: list[tuple[Path, Path]], dtype):
        super().__init__(source, [image for image, _ in pairs], torch.zeros(0), dtype)
        self.masks = [mask for _, mask in pairs]

    def _mask(self, path: Path) -> np.ndarray:
        from PIL import Image

        height, width = self.source.size
        try:
            with Image.open(path) as mask:
                mask = mask.resize((width, height), Image.Resampling.NEAREST)
                return np.asarray(mask).astype(np.int64)
        except Exception as exc:
            raise DataError.at(
                ("masks",),
                f"cannot read mask {path}: {file_reason(exc)}",
            ) from None

    def read(self, index: np.ndarray, augment_seed: int | None = None) -> Batch:
        fill = self.source.ignore_index or 0
        images, masks = [], []
        for position, row in enumerate(index.tolist()):
            pixels, mask = self._load(self.files[row]), self._mask(self.masks[row])
            if augment_seed is not None:
                rng = np.random.default_rng([augment_seed, position])
                flip, pad = self.source.random_flip, self.source.random_crop
                pixels, mask = augment_pair(pixels, mask, flip, pad, fill, rng)
            images.append(np.ascontiguousarray(pixels))
            masks.append(np.ascontiguousarray(mask))
        if not images:
            empty = torch.zeros(0, channels(self.source), *self.source.size)
            return Batch((empty.to(self.dtype),), torch.zeros(0, *self.source.size).long())
        batch = torch.from_numpy(np.stack(images))
        if self.source.mean:
            mean = torch.tensor(self.source.mean).reshape(1, -1, 1, 1)
            batch = (batch - mean) / torch.tensor(self.source.std).reshape(1, -1, 1, 1)
        return Batch((batch.to(self.dtype),), torch.from_numpy(np.stack(masks)))


def prepare(source: S.Segmentation, ctx: Context, fitted: Fitted | None = None):
    problems = Problems()
    image_problems(source, problems)
    if source.split.stratify:
        problems.add(("split", "stratify"), "does not apply to masks", "remove stratify")
    if source.ignore_index is not None and source.ignore_index < source.num_classes:
        problems.add(
            ("ignore_index",),
            f"{source.ignore_index} is a class id (classes 0..{source.num_classes - 1})",
            "use a value above the class ids, such as 255",
        )
    folders = {key: ctx.path(getattr(source, key)) for key in ("folder", "masks")}
    for key, path in folders.items():
        found = check_exists(path, (key,), folder=True)
        if found:
            problems.items.append(found)
    problems.check()
    images = _stems(folders["folder"], "folder", problems, masks=False)
    masks = _stems(folders["masks"], "masks", problems, masks=True)
    pairs = pair_files(images, masks, problems)
    problems.check()
    check_pairs(source, pairs, problems)
    problems.check()
    dtype = float_dtype(ctx)
    index = split_index(len(pairs), source.split, torch.Generator().manual_seed(ctx.seed))
    reader = MaskReader(source, pairs, dtype)
    splits = [FileData(reader, index.train.numpy(), source.workers, augment=True)]
    for which in (index.val, index.test):
        splits.append(None if which is None else FileData(reader, which.numpy(), source.workers))
    feature = FeatureInfo((channels(source), *source.size), str(dtype).removeprefix("torch."))
    counts = {
        n: len(s) for n, s in zip(("train", "val", "test"), splits, strict=True) if s is not None
    }
    signature = DataSignature(
        (feature,), declared_target(source), counts, ignore_index=source.ignore_index
    )
    return Splits(*splits, fitted=Fitted("segmentation", {})), signature


def declared_target(source: S.Segmentation) -> S.Target:
    return S.Target(kind="class", num_classes=source.num_classes, shape=tuple(source.size))


def read_input(source: S.Segmentation, ctx: Context, fitted: object, path: Path):
    """Prediction images (no masks): one image file, or every image under a folder."""
    return images.read_input(source, ctx, fitted, path)

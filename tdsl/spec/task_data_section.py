"""Data sources for sequence and segmentation tasks: text as token windows for language
models, generated additions, image folders with mask folders, generated shapes."""

from typing import Literal

from attrs import field, frozen

from tdsl.spec.data_section import PATH, Split
from tdsl.spec.origins import Recorded
from tdsl.spec.values import (
    as_float,
    as_floats,
    each_positive,
    non_negative,
    positive,
    row_count,
)


@frozen(kw_only=True)
class TextLM(Recorded):
    """A text file as a language-model task: windows of `block_size` token ids in, the same
    windows shifted by one token out (next-token targets, class targets of shape
    [block_size]). The text is split by position: the first `split.train` of its tokens
    train, then val, then test; the vocabulary is fitted on the training part."""

    kind: Literal["text_lm"] = "text_lm"
    file: str = field(metadata=PATH)
    # char: every character is a token; regex: the matches of `pattern`; whitespace: words.
    tokenizer: Literal["char", "regex", "whitespace"] = "char"
    pattern: str = r"\w+|[^\w\s]"
    lowercase: bool = False
    # Ids 0..vocab_size-1; id 0 stands for tokens the vocabulary lacks. None: an id for
    # every training token. Larger than needed: the ids left over are never used.
    vocab_size: int | None = field(default=None, validator=positive)
    min_freq: int = field(default=1, validator=positive)
    block_size: int = field(default=64, validator=positive)
    # A window starts every `stride` tokens.
    stride: int = field(default=1, validator=positive)
    split: Split = Split(train=0.9, val=0.1)


@frozen(kw_only=True)
class Addition(Recorded):
    """Generated n-digit additions as character sequences, `12+35=740`: the sum written with
    digits + 1 digits, least significant first when `reverse` (as minGPT's adder), so a
    causal model produces it in the order it is computed. Input: the sequence without its
    last character; target: the sequence shifted by one, with the prompt positions -100
    (ignored by the loss and the metrics). `n` distinct problems, split at random."""

    kind: Literal["addition"] = "addition"
    digits: int = field(default=2, validator=positive)
    n: int = field(default=10_000, validator=row_count)
    reverse: bool = True
    split: Split = Split(train=0.9, val=0.1)


@frozen(kw_only=True)
class Segmentation(Recorded):
    """A folder of PNG/JPEG images and a parallel folder of PNG masks, paired by file name
    (`a.jpg` with `a.png`): each mask pixel is the class id of the image pixel under it.
    Images become float32 [C, H, W], masks int64 [H, W] (needs Pillow)."""

    kind: Literal["segmentation"] = "segmentation"
    folder: str = field(metadata=PATH)
    masks: str = field(metadata=PATH)
    # Class ids are 0..num_classes-1.
    num_classes: int = field(validator=positive)
    # Images are resized to [height, width] (bilinear), masks too (nearest: ids stay ids).
    size: tuple[int, ...] = field(converter=tuple, validator=each_positive)
    mode: Literal["rgb", "gray"] = "rgb"
    # A mask value for unlabelled pixels (often 255), kept as is: the loss must skip it.
    ignore_index: int | None = field(default=None, validator=non_negative)
    mean: tuple[float, ...] = field(default=(), converter=as_floats)
    std: tuple[float, ...] = field(default=(), converter=as_floats)
    # Augmentations of training rows, applied alike to an image and its mask.
    random_flip: bool = False
    random_crop: int = field(default=0, validator=non_negative)
    workers: int = field(default=2, validator=non_negative)
    split: Split = Split()


@frozen(kw_only=True)
class Shapes(Recorded):
    """Generated segmentation images: `shapes_per_image` random circles, squares and
    triangles (each filled with a random brightness or colour) on Gaussian noise, with a
    class per pixel: 0 background, 1 circle, 2 square, 3 triangle (a later shape covers an
    earlier one). Images float32 [C, H, W], masks int64 [H, W]; drawn from the spec's seed."""

    kind: Literal["shapes"] = "shapes"
    n: int = field(default=2000, validator=row_count)
    size: tuple[int, ...] = field(default=(32, 32), converter=tuple, validator=each_positive)
    mode: Literal["gray", "rgb"] = "gray"
    shapes_per_image: int = field(default=2, validator=positive)
    # Standard deviation of the noise added to every pixel (shapes are 0.5 to 1 brighter).
    noise: float = field(converter=as_float, default=0.1, validator=non_negative)
    split: Split = Split()

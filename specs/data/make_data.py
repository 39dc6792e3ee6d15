"""Generate the small data sets the specs in specs/ read, with a fixed seed (numpy only).

    python specs/data/make_data.py

- titanic.csv: a Titanic-like passenger table with the seeds' columns (Pclass, Sex, Age with
  missing values, SibSp, Parch, Fare, Cabin mostly missing, Embarked with two missing) and a
  learnable rule for Survived; titanic_new.csv: a few more passengers without Survived.
- images/: 32x32 RGB PNGs in two class folders, 0_airplane (sky, wings) and 1_automobile
  (road, body, wheels), like the seeds' cifar2.
- reviews.tsv: `label<TAB>review` lines whose words depend on the label, like the seeds' IMDB.
- covid.csv: daily cumulative confirmed, cured and dead counts of a COVID-like outbreak.
- customers.csv: subscription customers (Tenure, Monthly, Plan, Calls) with two targets that
  depend on them: Churn (0/1) and next year's Spend (in hundreds), for specs/multitask.yaml.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 20240


def titanic(rng: np.random.Generator, n: int, with_target: bool = True) -> str:
    lines = []
    header = ["PassengerId", "Survived", "Pclass", "Sex", "Age", "SibSp", "Parch", "Fare"]
    header += ["Cabin", "Embarked"]
    if not with_target:
        header.remove("Survived")
    lines.append(",".join(header))
    for pid in range(1, n + 1):
        pclass = int(rng.choice([1, 2, 3], p=[0.24, 0.21, 0.55]))
        sex = "female" if rng.random() < 0.35 else "male"
        age = float(np.clip(rng.normal(30 - 4 * (pclass == 3), 14), 0.5, 80))
        sibsp = int(rng.choice([0, 1, 2, 3, 4], p=[0.68, 0.23, 0.04, 0.03, 0.02]))
        parch = int(rng.choice([0, 1, 2, 3], p=[0.76, 0.13, 0.09, 0.02]))
        fare = float(rng.gamma(2.0, {1: 40.0, 2: 10.0, 3: 6.0}[pclass]))
        cabin = f"{'ABCDE'[rng.integers(5)]}{rng.integers(1, 130)}"
        if rng.random() > {1: 0.8, 2: 0.2, 3: 0.05}[pclass]:
            cabin = ""
        embarked = str(rng.choice(["S", "C", "Q"], p=[0.72, 0.19, 0.09]))
        if pid in (62, 330):
            embarked = ""
        score = -1.2 + 2.6 * (sex == "female") + {1: 1.1, 2: 0.3, 3: -0.8}[pclass]
        score += 1.0 * (age < 12) - 0.02 * (age - 30) - 0.3 * (sibsp > 2) + 0.004 * fare
        survived = int(rng.random() < 1 / (1 + np.exp(-score)))
        age_text = "" if rng.random() < 0.2 else f"{age:.0f}"
        row = [pid, survived, pclass, sex, age_text, sibsp, parch, f"{fare:.2f}", cabin, embarked]
        if not with_target:
            row.pop(1)
        lines.append(",".join(map(str, row)))
    return "\n".join(lines) + "\n"


def png(pixels: np.ndarray) -> bytes:
    """An 8-bit RGB PNG of an [H, W, 3] uint8 array."""
    height, width, _ = pixels.shape
    raw = b"".join(b"\x00" + pixels[y].tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def airplane(rng: np.random.Generator) -> np.ndarray:
    image = np.zeros((32, 32, 3))
    image[:] = [90, 150, 230] + rng.integers(-20, 20, 3)  # sky
    y, x = rng.integers(8, 22), rng.integers(4, 10)
    image[y : y + 3, x : x + 22] = [235, 235, 240]  # fuselage
    image[y - 6 : y + 9, x + 9 : x + 13] = [210, 210, 220]  # wings
    return image


def automobile(rng: np.random.Generator) -> np.ndarray:
    image = np.zeros((32, 32, 3))
    image[:] = [120, 170, 120] + rng.integers(-20, 20, 3)  # grass
    image[22:] = [70, 70, 75]  # road
    x = rng.integers(2, 10)
    image[14:23, x : x + 20] = rng.integers(60, 230, 3)  # body
    for wheel in (x + 3, x + 15):
        image[21:26, wheel : wheel + 4] = [20, 20, 20]
    return image


def images(rng: np.random.Generator, per_class: int) -> dict[str, bytes]:
    files = {}
    for name, draw in (("0_airplane", airplane), ("1_automobile", automobile)):
        for index in range(per_class):
            noise = rng.integers(-6, 7, (32, 32, 1)) * 2  # coarse noise compresses well
            pixels = np.clip(draw(rng) + noise, 0, 255).astype(np.uint8)
            files[f"images/{name}/{index:03d}.png"] = png(pixels)
    return files


POSITIVE = [
    "great",
    "wonderful",
    "loved",
    "brilliant",
    "moving",
    "superb",
    "funny",
    "charming",
    "best",
    "enjoyable",
]
NEGATIVE = [
    "awful",
    "boring",
    "hated",
    "terrible",
    "dull",
    "worst",
    "weak",
    "predictable",
    "waste",
    "mess",
]
NEUTRAL = [
    "the",
    "movie",
    "film",
    "plot",
    "actor",
    "story",
    "scene",
    "was",
    "and",
    "a",
    "it",
    "this",
    "with",
    "director",
    "cast",
    "ending",
    "music",
    "script",
    "characters",
    "of",
    "in",
    "to",
    "i",
    "but",
    "time",
    "watch",
    "really",
    "about",
]


def reviews(rng: np.random.Generator, n: int) -> str:
    lines = []
    for _ in range(n):
        label = int(rng.random() < 0.5)
        mood = POSITIVE if label else NEGATIVE
        other = NEGATIVE if label else POSITIVE
        words = list(rng.choice(NEUTRAL, rng.integers(8, 20)))
        words += list(rng.choice(mood, rng.integers(2, 4)))
        words += list(rng.choice(other, rng.integers(0, 2)))
        rng.shuffle(words)
        text = " ".join(words).capitalize() + rng.choice([".", "!", "..."])
        lines.append(f"{label}\t{text}")
    return "\n".join(lines) + "\n"


def covid(rng: np.random.Generator, days: int) -> str:
    t = np.arange(days)
    confirmed = 80000 / (1 + np.exp(-(t - 18) / 4.5))
    cured = 70000 / (1 + np.exp(-(t - 32) / 6.0))
    dead = 3200 / (1 + np.exp(-(t - 22) / 5.5))
    lines = ["date,confirmed_num,cured_num,dead_num"]
    totals = np.zeros(3)
    for day in range(days):
        level = np.array([confirmed[day], cured[day], dead[day]])
        # Every count grows every day, so no daily increment is 0 (mspe divides by it).
        totals = np.maximum(
            totals + rng.integers(1, 9, 3), np.round(level * rng.uniform(0.97, 1.03, 3))
        )
        date = np.datetime64("2020-01-20") + day
        lines.append(f"{date},{int(totals[0])},{int(totals[1])},{int(totals[2])}")
    return "\n".join(lines) + "\n"


def customers(rng: np.random.Generator, n: int) -> str:
    lines = ["CustomerId,Tenure,Monthly,Plan,Calls,Churn,Spend"]
    for cid in range(1, n + 1):
        tenure = int(rng.integers(1, 73))
        plan = str(rng.choice(["basic", "plus", "pro"], p=[0.5, 0.3, 0.2]))
        monthly = {"basic": 20.0, "plus": 45.0, "pro": 80.0}[plan] + float(rng.normal(0, 6))
        calls = int(rng.poisson(1.5 + 2.0 * (plan == "basic")))
        score = 0.8 - 0.06 * tenure + 0.7 * calls - 0.02 * (monthly - 40)
        churn = int(rng.random() < 1 / (1 + np.exp(-score)))
        # Spend: a year of the monthly fee, less for those who leave, plus noise.
        months = 12 * (1 - 0.7 * churn) + 0.03 * tenure
        spend = max(0.0, monthly * months + float(rng.normal(0, 40))) / 100
        lines.append(f"{cid},{tenure},{monthly:.2f},{plan},{calls},{churn},{spend:.2f}")
    return "\n".join(lines) + "\n"


def bert_tokens(rng: np.random.Generator, rows: int, length: int = 512) -> dict[str, np.ndarray]:
    """Token rows for validating specs/models/bert_base.yaml: ids in BERT's vocabulary
    (0 is [PAD], trailing), two segments, and a 768-value stand-in target per row."""
    ids = rng.integers(1, 30522, size=(rows, length), dtype=np.int64)
    lengths = rng.integers(length // 4, length + 1, size=rows)
    ids[np.arange(length)[None, :] >= lengths[:, None]] = 0
    segments = (np.arange(length)[None, :] >= (lengths // 2)[:, None]).astype(np.int64)
    target = rng.standard_normal((rows, 768)).astype(np.float32)
    return {"ids": ids, "segments": segments, "y": target}


def main() -> None:
    rng = np.random.default_rng(SEED)
    # Each later file draws from a generator of its own, so resizing one leaves the others.
    texts = {
        "titanic.csv": titanic(rng, 400),
        "titanic_new.csv": titanic(rng, 12, with_target=False),
        "reviews.tsv": reviews(np.random.default_rng([SEED, 1]), 1000),
        "covid.csv": covid(np.random.default_rng([SEED, 2]), 60),
        "customers.csv": customers(np.random.default_rng([SEED, 5]), 600),
    }
    for name, text in texts.items():
        (HERE / name).write_text(text, encoding="utf-8")
    np.savez_compressed(
        HERE / "bert_tokens.npz", **bert_tokens(np.random.default_rng([SEED, 4]), 4)
    )
    for name, data in images(np.random.default_rng([SEED, 3]), 30).items():
        (HERE / name).parent.mkdir(parents=True, exist_ok=True)
        (HERE / name).write_bytes(data)


if __name__ == "__main__":
    main()

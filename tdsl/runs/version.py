"""`tdsl.__version__`: the installed package's version, or pyproject.toml's in a checkout
that was never installed."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path


def package_version() -> str:
    try:
        return metadata.version("tdsl")
    except metadata.PackageNotFoundError:
        pass
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    try:
        found = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(), re.M)
    except OSError:
        found = None
    return found.group(1) if found else "unknown"

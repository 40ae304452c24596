"""Model folders that ship with marc (``marc/assets/``), checked by their sha256 sums.

An asset is a saved folder (for example the embedded default's teacher, trained once by
``make reproduce``) with ``SHA256SUMS`` listing every file (``sha256  name``, as
``sha256sum`` writes it) and ``ASSET.json`` saying how it was made. :func:`install_asset`
copies it into place atomically after checking every file; :func:`write_asset` makes one
from a freshly trained folder.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from marc.io import replace_dir, staging_dir

ASSETS = Path(__file__).resolve().parent / "assets"
SUMS = "SHA256SUMS"
INFO = "ASSET.json"


class AssetError(ValueError):
    """An asset folder whose files do not match its sums (names the file)."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_asset(folder: str | Path) -> dict[str, str]:
    """Check every file of ``folder`` against its ``SHA256SUMS``; returns the sums."""
    folder = Path(folder)
    sums_file = folder / SUMS
    if not sums_file.is_file():
        raise AssetError(f"{folder} is not an asset: no {SUMS}")
    sums = {}
    for number, line in enumerate(sums_file.read_text().splitlines(), start=1):
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name:
            raise AssetError(f"{sums_file}:{number}: expected 'SHA256  NAME', got {line!r}")
        sums[name] = digest
    for name, digest in sums.items():
        path = folder / name
        if not path.is_file():
            raise AssetError(f"asset file missing: {path}")
        if sha256(path) != digest:
            raise AssetError(f"{path}: sha256 does not match {sums_file}")
    return sums


def install_asset(source: str | Path, target: str | Path) -> Path:
    """Copy a verified asset folder to ``target`` (atomically; the sums file goes too)."""
    verify_asset(source)
    staging = staging_dir(target)
    shutil.copytree(source, staging)
    return replace_dir(staging, target)


def write_asset(model_dir: str | Path, target: str | Path, info: dict) -> Path:
    """Make an asset of a saved model folder: its files, ``ASSET.json`` and ``SHA256SUMS``."""
    staging = staging_dir(target)
    shutil.copytree(model_dir, staging)
    (staging / INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    names = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
    lines = [f"{sha256(staging / name)}  {name}" for name in names if name != SUMS]
    (staging / SUMS).write_text("\n".join(lines) + "\n")
    return replace_dir(staging, target)

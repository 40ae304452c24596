"""Atomic writes of folders: build in a staging folder, then rename it into place."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def staging_dir(target: str | os.PathLike) -> Path:
    """A fresh, empty sibling folder of ``target`` to write into before the swap."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    return staging


def replace_dir(staging: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Rename ``staging`` to ``target``; an old ``target`` steps aside first, then is deleted.

    rename(2) cannot replace a non-empty folder, so the old one is moved away; if the second
    rename fails the old folder is put back, so a reader never sees a half-written one.
    """
    staging, target = Path(staging), Path(target)
    if not target.exists():
        os.replace(staging, target)
        return target
    old = target.with_name(f".{target.name}.old{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(target, old)
    try:
        os.replace(staging, target)
    except OSError:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return target

"""Atomic writes of folders that other processes may be reading.

A writer builds the new folder in a staging sibling (:func:`staging_dir`) and swaps it into
place with :func:`replace_dir`; a reader loads a folder inside :func:`read_lock`. The swap
takes two renames (rename(2) cannot replace a non-empty folder), so between them the
folder is absent, and a reader that opened some files before the swap and the rest after
it would mix two versions. The lock closes both gaps: the swap holds an exclusive
``flock`` on the folder's lock file (the hidden sibling ``.NAME.lock``), a reader holds a
shared one for as long as it reads, so it sees the whole old folder or the whole new one.
Building the staging folder and deleting the old one happen outside the lock, so readers
wait only for the two renames.

The lock is advisory: only marc's own loaders take it (another tool reading the folder
during a swap can still meet the gap). Where ``fcntl`` is missing (Windows) or the lock
file cannot be created (a read-only folder, which no marc writer can replace either),
reading goes on without it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Linux or macOS
    fcntl = None


def staging_dir(target: str | os.PathLike) -> Path:
    """A fresh, empty sibling folder of ``target`` to write into before the swap."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    return staging


def lock_file(target: str | os.PathLike) -> Path:
    """The lock file of a folder: its hidden sibling ``.NAME.lock`` (never deleted, since a
    deleted lock file could be held by one process while another locks a new one)."""
    target = Path(target)
    return target.with_name(f".{target.name}.lock")


@contextmanager
def _flock(target: str | os.PathLike, exclusive: bool) -> Iterator[None]:
    path = lock_file(target)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        if exclusive:
            raise
        fd = None  # read-only location: nobody can swap this folder
    if fd is None or fcntl is None:
        if fd is not None:
            os.close(fd)
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@contextmanager
def read_lock(target: str | os.PathLike) -> Iterator[None]:
    """Hold while reading the folder ``target``: no :func:`replace_dir` swaps it meanwhile."""
    target = Path(target)
    if not target.parent.is_dir():
        yield  # nothing there to read: let the reader report the missing folder
        return
    with _flock(target, exclusive=False):
        yield


def replace_dir(staging: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Rename ``staging`` to ``target``; an old ``target`` steps aside first, then is deleted.

    The renames happen under the folder's exclusive lock (see the module docstring); if the
    second rename fails the old folder is put back, so a reader never sees a half-written
    one.
    """
    staging, target = Path(staging), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    old = target.with_name(f".{target.name}.old{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    with _flock(target, exclusive=True):
        if not target.exists():
            os.replace(staging, target)
            return target
        os.replace(target, old)
        try:
            os.replace(staging, target)
        except OSError:
            os.replace(old, target)
            raise
    shutil.rmtree(old, ignore_errors=True)
    return target

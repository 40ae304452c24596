"""Folder swaps under real concurrent processes: a reader sees a whole version, never a mix
or nothing (marc.io, VideoMemory.save / load)."""

from __future__ import annotations

import multiprocessing
import traceback
from pathlib import Path

import numpy as np
import pytest

from marc.io import lock_file, read_lock, replace_dir, staging_dir
from marc.retrieval.memory import VideoMemory

SAVES = 40
FILES = 4
DIM = 8

# fork: the children run the functions below without re-importing this test module.
_fork = multiprocessing.get_context("fork")


def _write_versions(target: str, saves: int) -> None:
    """Write a folder ``saves`` times; version v holds FILES files that each say v."""
    for version in range(saves):
        staging = staging_dir(target)
        staging.mkdir()
        for i in range(FILES):
            (staging / f"part{i}.txt").write_text(f"{version}," * (1000 + version))
        replace_dir(staging, target)


def _read_versions(target: str, done, results) -> None:
    """Read the folder in a loop until the writer is done; report versions and failures."""
    seen, failures = [], []
    while not done.is_set() or not seen:
        try:
            with read_lock(target):
                parts = {(Path(target) / f"part{i}.txt").read_text() for i in range(FILES)}
            if len(parts) != 1:
                failures.append(f"a mix of versions: {sorted(p[:4] for p in parts)}")
            else:
                values = parts.pop().rstrip(",").split(",")
                version = int(values[0])
                whole = set(values) == {str(version)} and len(values) == 1000 + version
                seen.append(version if whole else -1)
        except Exception:  # noqa: BLE001 - every failure counts, whatever its type
            failures.append(traceback.format_exc(limit=1))
    results.put((seen, failures))


def _vectors(version: int) -> np.ndarray:
    return np.random.default_rng(version).standard_normal((10 + version, DIM)).astype(np.float32)


def _save_memories(target: str, saves: int) -> None:
    for version in range(saves):
        memory = VideoMemory(DIM, initial_capacity=8)
        vectors = _vectors(version)
        memory.add(vectors, [{"video_id": "v", "version": version}] * len(vectors))
        memory.save(target)


def _load_memories(target: str, done, results) -> None:
    seen, failures = [], []
    while not done.is_set() or not seen:
        try:
            memory = VideoMemory.load(target)
            versions = {memory.metadata_of(i)["version"] for i in range(len(memory))}
            (version,) = versions
            # Every vector is the one this version wrote: no index of another version.
            vectors = _vectors(version)
            assert len(memory) == len(vectors), (len(memory), len(vectors))
            hits = memory.search(vectors, k=1)
            assert [row[0].id for row in hits] == list(range(len(vectors)))
            seen.append(version)
        except Exception:  # noqa: BLE001
            failures.append(traceback.format_exc(limit=2))
    results.put((seen, failures))


def _race(writer, reader, target: Path) -> tuple[list[int], list[str]]:
    """Run ``writer`` and ``reader`` in two processes at once; the reader's report."""
    writer(str(target), 1)  # a first version exists before the race starts
    done, results = _fork.Event(), _fork.Queue()
    read = _fork.Process(target=reader, args=(str(target), done, results))
    write = _fork.Process(target=writer, args=(str(target), SAVES))
    read.start()
    write.start()
    write.join(timeout=300)
    done.set()
    seen, failures = results.get(timeout=300)
    read.join(timeout=60)
    assert write.exitcode == 0 and read.exitcode == 0
    return seen, failures


def test_readers_see_one_whole_version_while_another_process_swaps_the_folder(tmp_path):
    seen, failures = _race(_write_versions, _read_versions, tmp_path / "folder")
    assert failures == []
    assert set(seen) <= set(range(SAVES)) and len(seen) > 1
    assert -1 not in seen


def test_a_memory_loads_whole_while_another_process_saves_it(tmp_path):
    seen, failures = _race(_save_memories, _load_memories, tmp_path / "memory")
    assert failures == [], failures[:3]
    assert set(seen) <= set(range(SAVES)) and len(seen) > 1
    # The last load after the writer finished sees the last version.
    assert VideoMemory.load(tmp_path / "memory").metadata_of(0)["version"] == SAVES - 1


def test_a_failed_swap_keeps_the_old_folder(tmp_path, monkeypatch):
    target = tmp_path / "folder"
    _write_versions(str(target), 1)
    staging = staging_dir(target)
    staging.mkdir()
    (staging / "part0.txt").write_text("new")
    calls = []
    real = __import__("os").replace

    def second_rename_fails(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise OSError("disk full")
        return real(src, dst)

    monkeypatch.setattr("marc.io.os.replace", second_rename_fails)
    with pytest.raises(OSError, match="disk full"):
        replace_dir(staging, target)
    assert (target / "part0.txt").read_text().startswith("0")
    assert lock_file(target).name == ".folder.lock"


def test_reading_a_read_only_folder_needs_no_lock_file(tmp_path, monkeypatch):
    target = tmp_path / "folder"
    target.mkdir()
    real = __import__("os").open

    def read_only(path, flags, *args):
        if Path(path) == lock_file(target):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, flags, *args)

    monkeypatch.setattr("marc.io.os.open", read_only)
    with read_lock(target):
        assert target.is_dir()
    assert not lock_file(target).exists()

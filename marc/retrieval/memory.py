"""VideoMemory: clip embeddings with JSON metadata, searchable by hnswlib or exactly.

Ids are assigned sequentially from 0 in the order items are added. Scores are similarities
(higher is better) in both backends: the cosine for ``space="cosine"``, the inner product
for ``"ip"`` and the negated squared L2 distance for ``"l2"``. A memory saves to a folder
holding ``manifest.json`` (dim, backend, space, count, parameters, file checksums),
``metadata.json`` and the vectors (``index.bin`` for hnsw, ``embeddings.npy`` for exact);
the folder is written under a temporary name and then renamed into place, and loads and
saves of one folder from several processes never see a mix of two versions or nothing
(``marc.io``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hnswlib
import numpy as np
import torch
import torch.nn.functional as F

from marc.io import read_lock, replace_dir

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
METADATA = "metadata.json"
VECTOR_FILES = {"hnsw": "index.bin", "exact": "embeddings.npy"}
BACKENDS = tuple(VECTOR_FILES)
MANIFEST_FIELDS = (
    "format_version",
    "dim",
    "backend",
    "space",
    "count",
    "capacity",
    "params",
    "files",
)
SPACES = ("cosine", "ip", "l2")
# Items scored per matmul in exact search: bounds the [Q, chunk] score matrix in memory.
_EXACT_CHUNK = 1 << 17


class VideoMemoryError(Exception):
    """Bad input to a VideoMemory, or a saved memory that is missing, corrupt or inconsistent."""


@dataclass(frozen=True)
class SearchResult:
    """One retrieved item: its id, similarity score (higher is better) and metadata."""

    id: int
    score: float
    metadata: dict


class VideoMemory:
    """A searchable store of clip embeddings with per-item metadata (must hold "video_id").

    ``ef`` (hnsw search breadth, at least k is used) may be changed between searches.
    """

    def __init__(
        self,
        dim: int,
        backend: str = "hnsw",
        space: str = "cosine",
        M: int = 16,
        ef_construction: int = 200,
        ef: int = 64,
        initial_capacity: int = 1024,
        seed: int = 0,
        num_threads: int = 1,
    ):
        if dim < 1:
            raise VideoMemoryError(f"dim must be positive, got {dim}")
        if backend not in BACKENDS:
            raise VideoMemoryError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if space not in SPACES:
            raise VideoMemoryError(f"space must be one of {SPACES}, got {space!r}")
        if initial_capacity < 1:
            raise VideoMemoryError(f"initial_capacity must be positive, got {initial_capacity}")
        self.dim = dim
        self.backend = backend
        self.space = space
        self.M = M
        self.ef_construction = ef_construction
        self.ef = ef
        self.initial_capacity = initial_capacity
        self.seed = seed
        # One thread keeps hnswlib insertion order, and so the graph, deterministic.
        self.num_threads = num_threads
        self.capacity = initial_capacity
        self._metadata: list[dict] = []
        self._ids_by_video: dict[Any, list[int]] = {}
        if backend == "hnsw":
            self._index = hnswlib.Index(space=space, dim=dim)
            self._index.init_index(
                max_elements=initial_capacity,
                ef_construction=ef_construction,
                M=M,
                random_seed=seed,
            )
            self._index.set_ef(ef)
        else:
            self._vectors = torch.empty(initial_capacity, dim, dtype=torch.float32)

    def __len__(self) -> int:
        return len(self._metadata)

    def params(self) -> dict:
        """Constructor arguments, as saved in the manifest."""
        return {
            "M": self.M,
            "ef_construction": self.ef_construction,
            "ef": self.ef,
            "initial_capacity": self.initial_capacity,
            "seed": self.seed,
            "num_threads": self.num_threads,
        }

    def has_video(self, video_id: Any) -> bool:
        """Whether any item of this video is stored."""
        return video_id in self._ids_by_video

    def ids_of_video(self, video_id: Any) -> list[int]:
        """Ids of the items of one video, in the order they were added."""
        return list(self._ids_by_video.get(video_id, []))

    def metadata_of(self, item_id: int) -> dict:
        """Metadata of one item (a copy)."""
        return dict(self._metadata[item_id])

    def _as_matrix(self, values, what: str) -> np.ndarray:
        """A float32 ``[N, dim]`` array from a tensor or ndarray, with a clear error otherwise."""
        if isinstance(values, torch.Tensor):
            values = values.detach().to("cpu", torch.float32).numpy()
        array = np.asarray(values, dtype=np.float32)
        if array.ndim == 1:
            array = array[None]
        if array.ndim != 2 or array.shape[1] != self.dim:
            raise VideoMemoryError(
                f"{what} must have shape [N, {self.dim}] (memory dim {self.dim}), "
                f"got {tuple(array.shape)}"
            )
        if not np.isfinite(array).all():
            raise VideoMemoryError(f"{what} contain NaN or infinite values")
        return np.ascontiguousarray(array)

    def add(self, embeddings: torch.Tensor | np.ndarray, metadata: list[dict]) -> list[int]:
        """Store embeddings ``[N, dim]`` with one JSON-serialisable dict each; returns their ids."""
        vectors = self._as_matrix(embeddings, "embeddings")
        if len(metadata) != len(vectors):
            raise VideoMemoryError(
                f"got {len(vectors)} embeddings but {len(metadata)} metadata entries"
            )
        clean = []
        for i, entry in enumerate(metadata):
            if not isinstance(entry, dict) or not isinstance(entry.get("video_id"), (str, int)):
                raise VideoMemoryError(
                    f"metadata[{i}] must be a dict with a 'video_id' field (a string or int)"
                )
            try:
                # Stored as it will read back from JSON (tuples become lists), so a loaded
                # memory returns exactly what the live one did.
                clean.append(json.loads(json.dumps(entry)))
            except (TypeError, ValueError) as exc:
                raise VideoMemoryError(f"metadata[{i}] is not JSON-serialisable: {exc}") from exc
        start = len(self)
        ids = list(range(start, start + len(vectors)))
        if not ids:
            return ids
        self._grow(start + len(vectors))
        if self.backend == "hnsw":
            self._index.add_items(vectors, np.array(ids), num_threads=self.num_threads)
        else:
            stored = torch.from_numpy(vectors)
            if self.space == "cosine":
                # Stored unit-length, as hnswlib does, so a search never renormalises items.
                stored = F.normalize(stored, dim=1)
            self._vectors[start : start + len(vectors)] = stored
        for item_id, entry in zip(ids, clean):
            self._metadata.append(entry)
            self._ids_by_video.setdefault(entry["video_id"], []).append(item_id)
        return ids

    def _grow(self, needed: int) -> None:
        """Double the capacity until ``needed`` items fit."""
        if needed <= self.capacity:
            return
        capacity = self.capacity
        while capacity < needed:
            capacity *= 2
        if self.backend == "hnsw":
            self._index.resize_index(capacity)
        else:
            vectors = torch.empty(capacity, self.dim, dtype=torch.float32)
            vectors[: len(self)] = self._vectors[: len(self)]
            self._vectors = vectors
        self.capacity = capacity

    def search(
        self, queries: torch.Tensor | np.ndarray, k: int, video_id: Any = None
    ) -> list[list[SearchResult]]:
        """The ``k`` most similar items per query, best first (fewer when fewer are stored)."""
        matrix = self._as_matrix(queries, "queries")
        if k < 0:
            raise VideoMemoryError(f"k must be non-negative, got {k}")
        candidates = len(self) if video_id is None else len(self._ids_by_video.get(video_id, []))
        k = min(k, candidates)
        if k == 0:
            return [[] for _ in range(len(matrix))]
        if self.backend == "hnsw":
            labels, scores = self._search_hnsw(matrix, k, video_id)
        else:
            labels, scores = self._search_exact(matrix, k, video_id)
        return [
            [
                SearchResult(int(i), float(s), dict(self._metadata[int(i)]))
                for i, s in zip(row_ids, row_scores)
            ]
            for row_ids, row_scores in zip(labels, scores)
        ]

    def _search_hnsw(self, queries: np.ndarray, k: int, video_id: Any):
        labels, distances = self._hnsw_knn(queries, k, video_id)
        # hnswlib returns 1 - cosine, 1 - inner product, or the squared L2 distance.
        scores = -distances if self.space == "l2" else 1.0 - distances
        return labels, scores

    def _hnsw_knn(self, queries: np.ndarray, k: int, video_id: Any):
        """knn_query that widens ef, then lowers k, when the graph walk finds too few items.

        hnswlib raises rather than return fewer than k; with a filter this happens when the
        walk meets too few items of the video.
        """
        accept, threads, allowed = None, self.num_threads, len(self)
        if video_id is not None:
            members = set(self._ids_by_video[video_id])
            allowed = len(members)
            # The filter is a Python callable: more threads only contend for the GIL.
            threads = 1

            def accept(label: int) -> bool:
                return label in members

        wider = min(len(self), 4 * allowed)
        efs = sorted({self.ef, max(self.ef, wider), max(self.ef, len(self))})
        try:
            for ef in efs:
                self._index.set_ef(ef)
                try:
                    return self._index.knn_query(queries, k=k, num_threads=threads, filter=accept)
                except RuntimeError:
                    continue
            for lower in range(k - 1, 0, -1):
                try:
                    return self._index.knn_query(
                        queries, k=lower, num_threads=threads, filter=accept
                    )
                except RuntimeError:
                    continue
        finally:
            self._index.set_ef(self.ef)
        empty = np.empty((len(queries), 0))
        return empty.astype(np.uint64), empty.astype(np.float32)

    def _search_exact(self, queries: np.ndarray, k: int, video_id: Any):
        query = torch.from_numpy(queries)
        if video_id is None:
            ids = None
            items = self._vectors[: len(self)]
        else:
            ids = torch.tensor(self._ids_by_video[video_id])
            items = self._vectors[ids]
        if self.space == "cosine":
            query = F.normalize(query, dim=1)
        best_scores = torch.empty(len(query), 0)
        best_ids = torch.empty(len(query), 0, dtype=torch.long)
        for start in range(0, len(items), _EXACT_CHUNK):
            chunk = items[start : start + _EXACT_CHUNK]
            scores = query @ chunk.T
            if self.space == "l2":
                scores = 2 * scores - (query * query).sum(1, keepdim=True) - (chunk * chunk).sum(1)
            top = scores.topk(min(k, scores.shape[1]), dim=1)
            best_scores = torch.cat([best_scores, top.values], dim=1)
            best_ids = torch.cat([best_ids, top.indices + start], dim=1)
            if best_scores.shape[1] > k:
                keep = best_scores.topk(k, dim=1)
                best_scores, best_ids = keep.values, best_ids.gather(1, keep.indices)
        if ids is not None:
            best_ids = ids[best_ids]
        return best_ids.numpy(), best_scores.numpy()

    def save(self, directory: str | os.PathLike) -> None:
        """Write the memory to ``directory`` atomically (written aside, then renamed in)."""
        target = Path(directory)
        if target.exists() and not target.is_dir():
            raise VideoMemoryError(f"cannot save memory to {target}: it is a file")
        if target.is_dir() and any(target.iterdir()) and not (target / MANIFEST).is_file():
            raise VideoMemoryError(
                f"refusing to overwrite {target}: it is not empty and holds no {MANIFEST}"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        staging = target.parent / f".{target.name}.tmp-{tag}"
        staging.mkdir()
        try:
            vector_file = staging / VECTOR_FILES[self.backend]
            if self.backend == "hnsw":
                self._index.save_index(str(vector_file))
            else:
                np.save(vector_file, self._vectors[: len(self)].numpy(), allow_pickle=False)
            _write_json(staging / METADATA, self._metadata)
            files = {p.name: _file_record(p) for p in (vector_file, staging / METADATA)}
            manifest = {
                "format_version": FORMAT_VERSION,
                "dim": self.dim,
                "backend": self.backend,
                "space": self.space,
                "count": len(self),
                "capacity": self.capacity,
                "params": self.params(),
                "files": files,
            }
            _write_json(staging / MANIFEST, manifest)
            replace_dir(staging, target)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> VideoMemory:
        """Read a memory written by :meth:`save`, checking every file against the manifest.

        Safe while another process saves to the same folder: the load holds the folder's
        read lock (``marc.io.read_lock``), so it reads the old memory or the new one whole.
        """
        root = Path(directory)
        with read_lock(root):
            return cls._load(root)

    @classmethod
    def _load(cls, root: Path) -> VideoMemory:
        if not root.is_dir():
            raise VideoMemoryError(f"memory folder not found: {root}")
        manifest = _read_json(root / MANIFEST)
        if not isinstance(manifest, dict):
            raise VideoMemoryError(f"{root / MANIFEST}: expected a JSON object")
        for field in MANIFEST_FIELDS:
            if field not in manifest:
                raise VideoMemoryError(f"{root / MANIFEST}: missing field {field!r}")
        if manifest["format_version"] != FORMAT_VERSION:
            raise VideoMemoryError(
                f"{root / MANIFEST}: field 'format_version' is {manifest['format_version']}, "
                f"this code reads {FORMAT_VERSION}"
            )
        backend = manifest["backend"]
        if backend not in BACKENDS:
            raise VideoMemoryError(f"{root / MANIFEST}: field 'backend' is {backend!r}")
        try:
            memory = cls(
                dim=manifest["dim"], backend=backend, space=manifest["space"], **manifest["params"]
            )
        except (TypeError, VideoMemoryError) as exc:
            raise VideoMemoryError(f"{root / MANIFEST}: bad field value ({exc})") from exc
        count, capacity = manifest["count"], manifest["capacity"]
        vector_name = VECTOR_FILES[backend]
        for name in (vector_name, METADATA):
            _verify_file(root / name, manifest["files"].get(name))
        metadata = _read_json(root / METADATA)
        if not isinstance(metadata, list) or len(metadata) != count:
            raise VideoMemoryError(
                f"{root / METADATA}: expected a list of {count} entries (manifest field 'count')"
            )
        vector_path = root / vector_name
        if backend == "hnsw":
            # A fresh Index: load_index on an initialised one prints a warning to stderr.
            memory._index = hnswlib.Index(space=memory.space, dim=memory.dim)
            try:
                memory._index.load_index(str(vector_path), max_elements=max(capacity, count))
            except RuntimeError as exc:
                raise VideoMemoryError(
                    f"{vector_path}: cannot load the hnsw index ({exc})"
                ) from exc
            memory._index.set_ef(memory.ef)
            stored = memory._index.element_count
        else:
            try:
                array = np.load(vector_path, allow_pickle=False)
            except (ValueError, OSError) as exc:
                raise VideoMemoryError(
                    f"{vector_path}: cannot read the embeddings ({exc})"
                ) from exc
            if array.ndim != 2 or array.shape[1] != memory.dim:
                raise VideoMemoryError(
                    f"{vector_path}: shape {array.shape} does not match manifest field 'dim' "
                    f"({memory.dim})"
                )
            memory._vectors = torch.empty(max(capacity, len(array)), memory.dim)
            memory._vectors[: len(array)] = torch.from_numpy(array.astype(np.float32))
            stored = len(array)
        if stored != count:
            raise VideoMemoryError(
                f"{vector_path}: holds {stored} vectors, manifest field 'count' says {count}"
            )
        memory.capacity = max(capacity, count)
        for item_id, entry in enumerate(metadata):
            if not isinstance(entry, dict) or "video_id" not in entry:
                raise VideoMemoryError(f"{root / METADATA}: entry {item_id} has no 'video_id'")
            memory._metadata.append(entry)
            memory._ids_by_video.setdefault(entry["video_id"], []).append(item_id)
        return memory


def _write_json(path: Path, value: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f)
        f.flush()
        os.fsync(f.fileno())


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise VideoMemoryError(f"missing memory file: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise VideoMemoryError(f"{path}: not valid JSON ({exc})") from exc


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _file_record(path: Path) -> dict:
    return {"bytes": path.stat().st_size, "sha256": _sha256(path)}


def _verify_file(path: Path, record: dict | None) -> None:
    """Check a file's size and checksum against the manifest before any parser touches it."""
    if not path.is_file():
        raise VideoMemoryError(f"missing memory file: {path}")
    if not isinstance(record, dict) or "sha256" not in record or "bytes" not in record:
        raise VideoMemoryError(
            f"{path.parent / MANIFEST}: field 'files' has no entry for {path.name}"
        )
    size = path.stat().st_size
    if size != record["bytes"]:
        raise VideoMemoryError(
            f"{path}: corrupt or truncated ({size} bytes, manifest says {record['bytes']})"
        )
    if _sha256(path) != record["sha256"]:
        raise VideoMemoryError(f"{path}: corrupt (sha256 does not match the manifest)")

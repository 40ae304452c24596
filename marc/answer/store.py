"""The persistent clip memory of ``marc ask`` and ``main.py predict``: encode once, ask many.

A video's clips (segment spans, their embeddings, the source frames each span holds) are
stored under the sha256 of the file's bytes, in a memory kept per retriever fingerprint::

    CLIP_MEMORY/                 the folder (default artifacts/ask/clip_memory)
      <fingerprint>/             one per retriever and decoding settings (16 hex digits)
        manifest.json            VideoMemory.save: dim, backend, count, file checksums
        metadata.json            one entry per clip: video_id (the file's sha256), path,
                                 clip_index, span (decoded frames), source_frames,
                                 seconds [start, end], num_frames, fps
        index.bin                the hnswlib index

The fingerprint hashes the retriever's ``retriever.json`` and encoder weights and the
decoding settings (fps, frame cap, frame size), so clips embedded by another retriever or
cut from frames decoded otherwise are never searched. A changed file has another hash and
is indexed anew (its former entries stay, under the former hash). Every addition is saved
at once through ``VideoMemory.save`` (a staging folder renamed into place under the
folder's lock, ``marc.io``), so the memory grows as videos arrive and a crash leaves the
previous memory whole. A memory that fails its checks raises :class:`ClipMemoryError`
naming the folder and how to rebuild it; it is never searched half-read.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from marc.retrieval.memory import MANIFEST, VideoMemory, VideoMemoryError
from marc.retrieval.retriever import CONFIG_FILE, STATE_FILES, VisualMemoryRetriever
from marc.retrieval.segment import Span

DEFAULT_DIR = "artifacts/ask/clip_memory"


class ClipMemoryError(RuntimeError):
    """A clip memory folder that is missing a file or holds a corrupt one."""


@dataclass(frozen=True)
class Decoding:
    """How frames are read: every clip span in the store counts frames decoded so."""

    fps: float | None = None
    max_frames: int | None = 64
    frame_size: int | None = 56


@dataclass
class StoredClip:
    """One clip of a stored video."""

    item_id: int
    clip_index: int
    span: Span  # decoded frames
    source_frames: list[int]  # the file's frame index of each decoded frame in the span
    seconds: tuple[float, float]


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes: the key of its clips."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def retriever_fingerprint(retriever_dir: str | os.PathLike, decoding: Decoding) -> str:
    """16 hex digits of the retriever's config and weights and the decoding settings."""
    folder = Path(retriever_dir)
    digest = hashlib.sha256(json.dumps(decoding.__dict__, sort_keys=True).encode())
    for name in (CONFIG_FILE, *STATE_FILES.values()):
        path = folder / name
        if path.is_file():
            digest.update(name.encode() + file_sha256(path).encode())
    return digest.hexdigest()[:16]


class ClipStore:
    """Clips of every video asked about, searchable per video, saved after each addition."""

    def __init__(
        self,
        folder: str | os.PathLike,
        retriever: VisualMemoryRetriever,
        fingerprint: str,
    ):
        self.root = Path(folder)
        self.folder = self.root / fingerprint
        self.retriever = retriever
        self.memory = self._load()

    def _load(self) -> VideoMemory:
        if not self.folder.exists():
            return VideoMemory(self.retriever.clip_encoder.embed_dim)
        try:
            memory = VideoMemory.load(self.folder)
        except VideoMemoryError as error:
            raise ClipMemoryError(
                f"clip memory {self.folder} is corrupt ({error}); remove the folder to rebuild "
                f"it (rm -r {self.folder}): videos are indexed again when next asked about"
            ) from error
        if memory.dim != self.retriever.clip_encoder.embed_dim:
            raise ClipMemoryError(
                f"clip memory {self.folder / MANIFEST} holds {memory.dim}-d clips but the "
                f"retriever embeds {self.retriever.clip_encoder.embed_dim}; remove the folder "
                f"to rebuild it (rm -r {self.folder})"
            )
        return memory

    def has(self, key: str) -> bool:
        """Whether the video whose file hashes to ``key`` is stored."""
        return self.memory.has_video(key)

    def clips(self, key: str) -> list[StoredClip]:
        """The stored clips of one video, in time order."""
        clips = []
        for item_id in self.memory.ids_of_video(key):
            meta = self.memory.metadata_of(item_id)
            clips.append(
                StoredClip(
                    item_id,
                    meta["clip_index"],
                    (meta["span"][0], meta["span"][1]),
                    list(meta["source_frames"]),
                    (meta["seconds"][0], meta["seconds"][1]),
                )
            )
        return sorted(clips, key=lambda clip: clip.span)

    def add(
        self,
        key: str,
        path: Path,
        spans: list[Span],
        embeddings: torch.Tensor,
        source_frames: list[int],
        fps: float,
    ) -> None:
        """Store one video's clips and save the memory (atomically)."""
        rate = fps or 1.0
        metadata = [
            {
                "video_id": key,
                "path": str(path),
                "clip_index": i,
                "span": [s, e],
                "source_frames": [int(f) for f in source_frames[s:e]],
                "seconds": [
                    round(source_frames[s] / rate, 3),
                    round((source_frames[e - 1] + 1) / rate, 3),
                ],
                "num_frames": len(source_frames),
                "fps": fps,
            }
            for i, (s, e) in enumerate(spans)
        ]
        self.memory.add(embeddings, metadata)
        self.memory.save(self.folder)

"""VisualMemoryRetriever: segment a video, embed and index its clips, fetch the clips a
question needs and put them back together in time order.

A retriever saves to a folder (``save_pretrained``, written to a staging folder and then
renamed into place) and loads from it (``from_pretrained``)::

    retriever.json        format_version, k, max_clip_frames, frame_multiple, and the clip
                          encoder, query encoder and segmenter as {class_path, init_args}
    clip_encoder.pt       state dict (tensors only; loaded with weights_only=True)
    query_encoder.pt      state dict
    memory/               VideoMemory.save output (hnswlib index + JSON metadata)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from marc.configurable import ConfigError, build, describe
from marc.io import read_lock, replace_dir, staging_dir
from marc.retrieval.dual_encoder import check_one_dual_encoder
from marc.retrieval.encoders import ClipEncoderBase, QueryEncoderBase, subsample_frames
from marc.retrieval.memory import VideoMemory
from marc.retrieval.segment import Segmenter, Span, VideoSource

CONFIG_FILE = "retriever.json"
FORMAT_VERSION = 2
STATE_FILES = {"clip_encoder": "clip_encoder.pt", "query_encoder": "query_encoder.pt"}


class RetrieverFolderError(ValueError):
    """A saved retriever folder that is missing a file or holds a corrupt one (named)."""


# Clips embedded per encoder call while indexing, so a long video never needs one huge batch.
_INDEX_BATCH_CLIPS = 32


@dataclass
class RetrievalResult:
    """The reconstructed video and the chosen clips, all in time order."""

    frames: torch.Tensor  # uint8 [T', C, H, W]
    spans: list[Span]  # the chosen clips, in frames of the full video
    scores: list[float]
    clip_indices: list[int]
    offset: int = 0  # the query's predicted offset from the matched clips (see retrieve)
    # Where each clip lies in ``frames`` (they tile it): the compressor's segments.
    segments: list[Span] = field(default_factory=list)


def reconstruct_video(
    frames: torch.Tensor,
    spans: list[Span],
    max_clip_frames: int | None = None,
    frame_multiple: int = 1,
) -> tuple[torch.Tensor, list[Span]]:
    """Concatenate the frames of ``spans`` in time order; returns them and each clip's span.

    Each clip is capped to ``max_clip_frames`` (uniformly subsampled), then padded by
    repeating its last frame to a multiple of ``frame_multiple`` frames, so that when a
    vision tower groups ``frame_multiple`` frames into one temporal group (Qwen2.5-VL: 2),
    no group holds frames of two clips.
    """
    if not spans:
        raise ValueError("cannot reconstruct a video from no spans")
    if frame_multiple < 1:
        raise ValueError(f"frame_multiple must be at least 1, got {frame_multiple}")
    pieces, segments, start = [], [], 0
    for s, e in sorted(spans):
        clip = subsample_frames(frames[s:e], max_clip_frames)
        if pad := -len(clip) % frame_multiple:
            clip = torch.cat([clip, clip[-1:].expand(pad, -1, -1, -1)])
        pieces.append(clip)
        segments.append((start, start + len(clip)))
        start += len(clip)
    return torch.cat(pieces), segments


@contextmanager
def _inference(*modules: nn.Module) -> Iterator[None]:
    """Eval mode and no grad for the duration, restoring each module's training flag after."""
    modes = [m.training for m in modules]
    try:
        for m in modules:
            m.eval()
        with torch.no_grad():
            yield
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)


class VisualMemoryRetriever:
    """Segment → embed → index → query → reconstruct, with one memory shared by all videos.

    Args:
        segmenter: cuts a video into event clips.
        clip_encoder: embeds clips; query_encoder: embeds questions into the same space.
        memory: where clip embeddings live; a new hnsw cosine memory when None.
        k: clips retrieved per question (the paper uses 3).
        max_clip_frames: frames kept per retrieved clip in the reconstruction (uniformly
            subsampled); None keeps whole clips.
        frame_multiple: each retrieved clip is padded (its last frame repeated) to a
            multiple of this many frames: 2, Qwen2.5-VL's temporal patch, so no temporal
            group of the reconstructed video spans two clips.
    """

    def __init__(
        self,
        segmenter: Segmenter,
        clip_encoder: ClipEncoderBase,
        query_encoder: QueryEncoderBase,
        memory: VideoMemory | None = None,
        k: int = 3,
        max_clip_frames: int | None = None,
        frame_multiple: int = 2,
    ):
        check_one_dual_encoder(clip_encoder, query_encoder)
        if clip_encoder.embed_dim != query_encoder.embed_dim:
            raise ValueError(
                f"clip encoder embed_dim {clip_encoder.embed_dim} differs from query encoder "
                f"embed_dim {query_encoder.embed_dim}"
            )
        memory = memory if memory is not None else VideoMemory(clip_encoder.embed_dim)
        if memory.dim != clip_encoder.embed_dim:
            raise ValueError(
                f"memory dim {memory.dim} differs from embed_dim {clip_encoder.embed_dim}"
            )
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self.segmenter = segmenter
        self.clip_encoder = clip_encoder
        self.query_encoder = query_encoder
        self.memory = memory
        self.k = k
        self.max_clip_frames = max_clip_frames
        self.frame_multiple = frame_multiple

    def index_video(
        self, video_id: str, frames: torch.Tensor, source: VideoSource | None = None
    ) -> list[int]:
        """Segment and embed a video's clips into the memory once; returns their memory ids.

        ``source`` (the frames' file and source indices) lets a segmenter read the file at
        its own frame rate (``TransNetV2Segmenter``).
        """
        if self.memory.has_video(video_id):
            ids = self.memory.ids_of_video(video_id)
            indexed = self.memory.metadata_of(ids[0]).get("num_frames", len(frames))
            if indexed != len(frames):
                raise ValueError(
                    f"video {video_id!r} was indexed with {indexed} frames "
                    f"but has {len(frames)} now"
                )
            return ids
        spans = self.segmenter.segment_source(frames, source)
        embeddings = []
        with _inference(self.clip_encoder):
            for start in range(0, len(spans), _INDEX_BATCH_CLIPS):
                batch = spans[start : start + _INDEX_BATCH_CLIPS]
                embeddings.append(self.clip_encoder.encode_clips([frames[s:e] for s, e in batch]))
        metadata = [
            {"video_id": video_id, "clip_index": i, "span": [s, e], "num_frames": len(frames)}
            for i, (s, e) in enumerate(spans)
        ]
        return self.memory.add(torch.cat(embeddings), metadata)

    def retrieve(
        self,
        video_id: str,
        frames: torch.Tensor,
        question: str,
        k: int | None = None,
        source: VideoSource | None = None,
    ) -> RetrievalResult:
        """The top-k clips of this video for the question, reconstructed in time order.

        With a temporal relation head on the query encoder, each of the k best-matching
        clips is replaced by the clip ``offset`` places from it (clamped to the video's
        first and last clip); a moved clip keeps the score of the match it came from, and
        two matches moved onto one clip keep it once, with the better score.
        """
        k = self.k if k is None else k
        self.index_video(video_id, frames, source)
        with _inference(self.query_encoder):
            query, offset_logits = self.query_encoder.embed_with_offsets([question])
        offset = 0
        if offset_logits is not None:
            offset = self.query_encoder.offsets_from_logits(offset_logits)[0]
        results = self.memory.search(query, k, video_id=video_id)[0]
        chosen = {r.metadata["clip_index"]: (r.metadata, r.score) for r in results}
        if offset:
            chosen = self._moved(video_id, list(chosen.values()), offset)
        order = sorted(chosen.values(), key=lambda item: item[0]["span"][0])
        spans = [(meta["span"][0], meta["span"][1]) for meta, _ in order]
        reconstructed, segments = reconstruct_video(
            frames, spans, self.max_clip_frames, self.frame_multiple
        )
        return RetrievalResult(
            frames=reconstructed,
            segments=segments,
            spans=spans,
            scores=[score for _, score in order],
            clip_indices=[meta["clip_index"] for meta, _ in order],
            offset=offset,
        )

    def _moved(
        self, video_id: str, matches: list[tuple[dict, float]], offset: int
    ) -> dict[int, tuple[dict, float]]:
        """Each match moved ``offset`` clips along its video, keyed by clip index."""
        clips = {}
        for item_id in self.memory.ids_of_video(video_id):
            meta = self.memory.metadata_of(item_id)
            clips[meta["clip_index"]] = meta
        first, last = min(clips), max(clips)
        moved: dict[int, tuple[dict, float]] = {}
        for meta, score in sorted(matches, key=lambda item: -item[1]):
            index = min(max(meta["clip_index"] + offset, first), last)
            moved.setdefault(index, (clips[index], score))
        return moved

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Save encoders, segmenter, k and memory to ``directory`` (atomically)."""
        target = Path(directory)
        staging = staging_dir(target)
        staging.mkdir()
        config = {
            "format_version": FORMAT_VERSION,
            "clip_encoder": describe(self.clip_encoder, **_no_download(self.clip_encoder)),
            "query_encoder": describe(self.query_encoder),
            "segmenter": describe(self.segmenter),
            "k": self.k,
            "max_clip_frames": self.max_clip_frames,
            "frame_multiple": self.frame_multiple,
        }
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        torch.save(self.clip_encoder.state_dict(), staging / STATE_FILES["clip_encoder"])
        torch.save(self.query_encoder.state_dict(), staging / STATE_FILES["query_encoder"])
        self.memory.save(staging / "memory")
        return replace_dir(staging, target)

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike, k: int | None = None
    ) -> VisualMemoryRetriever:
        """Load a retriever saved by :meth:`save_pretrained` (optionally with another k).

        A missing or corrupt file raises :class:`RetrieverFolderError` naming it.
        """
        directory = Path(directory)
        # Held for the whole load, so a save from another process cannot swap the folder
        # between the encoders and the memory.
        with read_lock(directory):
            return cls._load(directory, k)

    @classmethod
    def _load(cls, directory: Path, k: int | None) -> VisualMemoryRetriever:
        config = _read_config(directory)
        where = f"{directory / CONFIG_FILE} field"
        encoders = {}
        bases = (("clip_encoder", ClipEncoderBase), ("query_encoder", QueryEncoderBase))
        for name, base in bases:
            encoder = _build(config, name, base, where)
            _load_state(encoder, directory / STATE_FILES[name], f"{where} {name!r}")
            encoders[name] = encoder.eval()
        memory = VideoMemory.load(directory / "memory")
        if memory.dim != encoders["clip_encoder"].embed_dim:
            raise RetrieverFolderError(
                f"{directory / 'memory'}: a memory of dimension {memory.dim}, but the encoders "
                f"of {directory / CONFIG_FILE} embed {encoders['clip_encoder'].embed_dim}"
            )
        return cls(
            _build(config, "segmenter", Segmenter, where),
            encoders["clip_encoder"],
            encoders["query_encoder"],
            memory=memory,
            k=_field(config, "k", where) if k is None else k,
            max_clip_frames=_field(config, "max_clip_frames", where),
            # Folders saved before clips were padded: pad them now, as new ones do.
            frame_multiple=config.get("frame_multiple", 2),
        )


def _no_download(encoder: ClipEncoderBase) -> dict:
    """``pretrained=False`` for a timm encoder, whose weights are in the state dict: loading
    never fetches or reads them again. Encoders over a local folder (dual-encoder towers)
    have no such argument and keep theirs."""
    return {"pretrained": False} if "pretrained" in encoder.init_args else {}


def _read_config(directory: Path) -> dict:
    """``retriever.json`` of a saved retriever, upgraded to the current format."""
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise RetrieverFolderError(f"not a saved retriever (no {CONFIG_FILE}): {directory}")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RetrieverFolderError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(config, dict):
        raise RetrieverFolderError(f"{path}: expected a JSON object, got {type(config).__name__}")
    if "format_version" not in config and "segmenter" in config:
        config = _upgrade_from_version_1(config)
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise RetrieverFolderError(
            f"{path}: field 'format_version' is {version!r}, this code reads {FORMAT_VERSION}"
        )
    return config


def _upgrade_from_version_1(config: dict) -> dict:
    """Version 1 kept each part's arguments under its own keys (no class paths)."""
    segmenter = config.get("segmenter") or {}
    return {
        **config,
        "format_version": FORMAT_VERSION,
        "clip_encoder": {
            "class_path": "marc.retrieval.encoders.ClipEncoder",
            "init_args": config.get("clip_encoder"),
        },
        "query_encoder": {
            "class_path": "marc.retrieval.encoders.QueryEncoder",
            "init_args": config.get("query_encoder"),
        },
        "segmenter": {
            "class_path": f"marc.retrieval.segment.{segmenter.get('class')}",
            "init_args": segmenter.get("args", {}),
        },
    }


def _field(config: dict, name: str, where: str):
    if name not in config:
        raise RetrieverFolderError(f"{where} {name!r} is missing")
    return config[name]


def _build(config: dict, name: str, base: type, where: str):
    try:
        return build(_field(config, name, where), base, where=f"{where} {name!r}")
    except ConfigError as error:
        raise RetrieverFolderError(str(error)) from error


def _load_state(module: nn.Module, path: Path, described_by: str) -> None:
    """Load a state dict file into ``module``; errors name the file and what is wrong."""
    if not path.is_file():
        raise RetrieverFolderError(f"saved retriever is missing {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and EOF errors all mean the same: corrupt
        raise RetrieverFolderError(
            f"{path}: corrupt or truncated state dict ({type(error).__name__}: {error})"
        ) from error
    if not isinstance(state, dict):
        raise RetrieverFolderError(f"{path}: expected a state dict, got {type(state).__name__}")
    try:
        module.load_state_dict(state)
    except RuntimeError as error:
        raise RetrieverFolderError(
            f"{path} does not fit the encoder described by {described_by}: {error}"
        ) from error

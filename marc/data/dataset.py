"""A map-style dataset of video questions: annotation rows in, decoded samples out."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from marc.data.annotations import Annotation
from marc.data.image import read_image
from marc.data.prompts import format_question
from marc.data.video import VideoDecodeError, decode_video
from marc.retrieval.segment import VideoSource

log = logging.getLogger(__name__)

BadSamplePolicy = Literal["raise", "skip"]


def map_event_spans(events: Sequence[dict], source_indices: np.ndarray) -> list[tuple[int, int]]:
    """Event spans in source frames -> spans in decoded frame indices (may become empty)."""
    spans = []
    for event in events:
        inside = np.nonzero((source_indices >= event["start"]) & (source_indices < event["end"]))[0]
        if len(inside) == 0:
            # The event fell between sampled frames: an empty span at its position.
            position = int(np.searchsorted(source_indices, event["start"]))
            spans.append((position, position))
        else:
            spans.append((int(inside[0]), int(inside[-1]) + 1))
    return spans


def image_retrieval(frames: torch.Tensor) -> dict:
    """What a retriever serves for an image row: the picture itself, as one clip."""
    return {
        "retrieved_video": frames,
        "retrieved_segments": [(0, len(frames))],
        "retrieval": {
            "spans": [(0, len(frames))],
            "scores": [1.0],
            "clip_indices": [0],
            "offset": 0,
        },
    }


class VideoQADataset(Dataset):
    """Decodes each annotation's video and returns a sample dict (see docs/CONTRACTS.md).

    With ``on_bad_sample="skip"`` a missing or undecodable video (or picture) yields
    ``None`` (the collate function drops and counts it) after a warning naming the file and
    row. Image rows (``data_type: image``) are served as one-frame videos padded to a
    temporal group (``marc.data.image``); they are their own retrieved video, so the
    retriever never sees them.
    """

    def __init__(
        self,
        annotations: list[Annotation],
        fps: float | None = None,
        max_frames: int | None = 64,
        frame_size: int | None = 112,
        cache_frames: bool = False,
        on_bad_sample: BadSamplePolicy = "raise",
        retriever: Any = None,
    ):
        if on_bad_sample not in ("raise", "skip"):
            raise ValueError(f"on_bad_sample must be 'raise' or 'skip', got {on_bad_sample!r}")
        self.annotations = annotations
        self.fps = fps
        self.max_frames = max_frames
        self.frame_size = frame_size
        self.cache_frames = cache_frames
        self.on_bad_sample = on_bad_sample
        self.retriever = retriever
        # Each dataloader worker holds its own cache: decoded videos are not shared memory.
        self._cache: dict[str, tuple[torch.Tensor, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.annotations)

    def decode(self, annotation: Annotation) -> tuple[torch.Tensor, np.ndarray]:
        """Decoded frames and their source indices, from the cache when enabled."""
        key = str(annotation.video_path)
        if self.cache_frames and key in self._cache:
            return self._cache[key]
        if annotation.data_type == "image":
            decoded = read_image(key, self.frame_size, row=annotation.source)
        else:
            decoded = decode_video(key, self.fps, self.max_frames, self.frame_size)
        if self.cache_frames:
            self._cache[key] = decoded
        return decoded

    def __getitem__(self, index: int) -> dict | None:
        annotation = self.annotations[index]
        try:
            frames, source_indices = self.decode(annotation)
        except (FileNotFoundError, VideoDecodeError) as exc:
            if self.on_bad_sample == "raise":
                raise
            log.warning(
                "skipping sample %s (%s): %s", annotation.problem_id, annotation.source, exc
            )
            return None
        sample = self.build_sample(annotation, frames, source_indices)
        if self.retriever is not None and annotation.data_type == "image":
            sample.update(image_retrieval(frames))
        elif self.retriever is not None:
            source = VideoSource(str(annotation.video_path), source_indices)
            result = self.retriever.retrieve(
                annotation.video_id, frames, annotation.problem, source=source
            )
            sample["retrieved_video"] = result.frames
            # Frame spans of the clips inside retrieved_video: the compressor's segments.
            sample["retrieved_segments"] = [tuple(s) for s in result.segments]
            sample["retrieval"] = {
                "spans": [tuple(s) for s in result.spans],
                "scores": [float(s) for s in result.scores],
                "clip_indices": [int(i) for i in result.clip_indices],
                "offset": int(result.offset),
            }
        return sample

    @staticmethod
    def build_sample(
        annotation: Annotation, frames: torch.Tensor, source_indices: np.ndarray
    ) -> dict:
        """The sample dict for one annotation and its decoded frames."""
        events = annotation.extra.get("events") or []
        return {
            "video": frames,
            "event_spans": map_event_spans(events, source_indices),
            "captions": [e.get("caption", "") for e in events],
            # Ground-truth attributes per event (the generated default; [] otherwise).
            "events": [{k: e.get(k) for k in ("background", "pattern", "objects")} for e in events],
            "target_events": list(annotation.extra.get("target_events") or []),
            "target_objects": list(annotation.extra.get("target_objects") or []),
            "problem_id": annotation.problem_id,
            "video_id": annotation.video_id,
            "problem": annotation.problem,
            "options": annotation.options,
            "solution": annotation.solution,
            "answer": annotation.answer,
            "process": annotation.extra.get("process"),
            "problem_type": annotation.problem_type,
            "data_type": annotation.data_type,
            "question_kind": annotation.question_kind,
            "path": str(annotation.video_path),
            "prompt": format_question(
                annotation.problem, annotation.options, annotation.problem_type
            ),
        }

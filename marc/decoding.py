"""Decoding video files with PyAV: the one place PyAV's failures become a VideoDecodeError.

The data module (``marc.data.video``) and the segmenters that read a file themselves
(``marc.retrieval.segment.TransNetV2Segmenter``) both decode through :func:`decode_rgb`, so
a file that cannot be read fails with the same error, naming the file and the reason,
wherever it is read.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Picks the frames to keep from (number of frames, frame rate); None keeps every frame.
FrameSelector = Callable[[int, float], np.ndarray]


class VideoDecodeError(RuntimeError):
    """A video file exists but cannot be decoded; the message names the file and reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot decode video {self.path}: {reason}")


@dataclass
class DecodedFrames:
    """RGB frames of a video and where they came from."""

    frames: np.ndarray  # uint8 [T, H, W, 3]
    indices: np.ndarray  # source index of each kept frame
    fps: float  # the stream's average frame rate (0 when unknown)
    total: int  # frames in the stream


def decode_rgb(
    path: str | os.PathLike,
    select: FrameSelector | None = None,
    width: int | None = None,
    height: int | None = None,
) -> DecodedFrames:
    """Decode a video's frames as RGB, keeping those ``select`` picks.

    Only the kept frames are converted to arrays (a long video sampled at 1 fps never holds
    all its frames in memory) when the container declares its frame count; otherwise every
    frame is converted and the selection applied afterwards. ``width`` / ``height`` scale
    frames in PyAV (both or neither). A missing file raises FileNotFoundError; an empty,
    unreadable, truncated or corrupt one a :class:`VideoDecodeError`.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"video file not found: {path}")
    if path.stat().st_size == 0:
        raise VideoDecodeError(path, "the file is empty")
    if (width is None) != (height is None):
        raise ValueError("give both width and height, or neither")
    decoded, declared = _decode(path, select, width, height)
    if declared and decoded.total > declared and select is not None:
        # The container under-declared its frames: select again on the real count.
        decoded, _ = _decode(path, select, width, height, known_total=decoded.total)
    return decoded


def _open(path: Path):
    """The opened container; errors name the file."""
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise VideoDecodeError(path, f"not a readable media container ({exc})") from exc
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(path, "the file has no video stream")
    return container


def _decode(
    path: Path,
    select: FrameSelector | None,
    width: int | None,
    height: int | None,
    known_total: int | None = None,
) -> tuple[DecodedFrames, int]:
    """The selected frames and the container's declared frame count (0 when unknown)."""
    import av

    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate) if stream.average_rate else 0.0
        declared = int(stream.frames or 0)
        total = known_total or declared
        # With a known count only the kept frames are converted to arrays.
        wanted = None if select is None or not total else np.asarray(select(total, fps), int)
        keep = None if wanted is None else set(wanted.tolist())
        size = {} if width is None else {"width": width, "height": height}
        frames: dict[int, np.ndarray] = {}
        count = 0
        try:
            for count, frame in enumerate(container.decode(stream), start=1):
                if keep is None or count - 1 in keep:
                    frames[count - 1] = frame.to_ndarray(format="rgb24", **size)
        except av.error.FFmpegError as exc:
            raise VideoDecodeError(
                path, f"decoding failed after {count} frames, truncated or corrupt ({exc})"
            ) from exc
    if not count:
        raise VideoDecodeError(path, "no frames could be decoded (truncated or empty stream)")
    if declared and count < declared:
        # The container promises more frames than the stream holds: the file was cut short.
        raise VideoDecodeError(path, f"truncated: decoded {count} of {declared} frames")
    if wanted is None:
        wanted = np.arange(count) if select is None else np.asarray(select(count, fps), int)
    elif count > total:
        return DecodedFrames(np.empty((0,)), wanted, fps, count), declared  # caller decodes again
    video = np.stack([frames[i] for i in wanted.tolist()])
    return DecodedFrames(video, wanted, fps, count), declared

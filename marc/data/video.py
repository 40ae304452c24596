"""Video decoding with PyAV: uniform sampling to a target fps, a frame cap, and resizing.

``read_video`` returns uint8 frames ``[T, C, H, W]``. Sizes are rounded to a multiple of
28 pixels because Qwen2.5-VL's vision tower turns each 28x28 block (2x2 patches of 14 px)
into one visual token.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

# VideoDecodeError lives with the decoding every reader shares; imported from here too.
from marc.decoding import VideoDecodeError, decode_rgb

PIXELS_PER_TOKEN = 28


def round_to_multiple(value: int, multiple: int = PIXELS_PER_TOKEN) -> int:
    """Nearest positive multiple of ``multiple``."""
    return max(multiple, int(round(value / multiple)) * multiple)


def _target_size(height: int, width: int, size) -> tuple[int, int]:
    """Output (H, W), both multiples of 28; ``size`` is None, an int (short side) or (H, W)."""
    if size is None:
        return round_to_multiple(height), round_to_multiple(width)
    if isinstance(size, int):
        scale = size / min(height, width)
        return round_to_multiple(height * scale), round_to_multiple(width * scale)
    h, w = size
    return round_to_multiple(h), round_to_multiple(w)


def sample_indices(num_frames: int, source_fps: float, fps: float | None, max_frames: int | None):
    """Indices of the frames to keep: uniform in time at ``fps``, then capped uniformly."""
    indices = np.arange(num_frames)
    if fps is not None and source_fps > 0 and fps < source_fps:
        count = max(1, int(round(num_frames * fps / source_fps)))
        indices = np.linspace(0, num_frames - 1, count).round().astype(int)
    if max_frames is not None and len(indices) > max_frames:
        pick = np.linspace(0, len(indices) - 1, max_frames).round().astype(int)
        indices = indices[pick]
    return indices


def resize_frames(frames: torch.Tensor, size) -> torch.Tensor:
    """Resize uint8 ``[T, C, H, W]`` frames to multiples of 28 px (bilinear, antialiased)."""
    height, width = frames.shape[-2:]
    out_h, out_w = _target_size(height, width, size)
    if (out_h, out_w) == (height, width):
        return frames
    resized = F.interpolate(
        frames.float(), size=(out_h, out_w), mode="bilinear", antialias=True, align_corners=False
    )
    return resized.round().clamp(0, 255).to(torch.uint8)


def read_video(
    path: str | os.PathLike,
    fps: float | None = None,
    max_frames: int | None = None,
    size: int | tuple[int, int] | None = None,
) -> torch.Tensor:
    """Decode a video file into uint8 frames ``[T, C, H, W]`` with H and W multiples of 28.

    Args:
        path: any container/codec PyAV can read.
        fps: sample uniformly to this rate (never upsamples); None keeps every frame.
        max_frames: keep at most this many frames, uniformly spread.
        size: None keeps the size (rounded to 28 px), an int sets the short side, a pair
            sets (H, W).
    """
    return decode_video(path, fps, max_frames, size)[0]


def decode_video(
    path: str | os.PathLike,
    fps: float | None = None,
    max_frames: int | None = None,
    size: int | tuple[int, int] | None = None,
) -> tuple[torch.Tensor, np.ndarray]:
    """Like :func:`read_video`, also returning the source index of every kept frame.

    Only the sampled frames are converted from the stream (``marc.decoding.decode_rgb``).
    """
    decoded = decode_rgb(path, lambda total, rate: sample_indices(total, rate, fps, max_frames))
    video = torch.from_numpy(decoded.frames).permute(0, 3, 1, 2)
    return resize_frames(video.contiguous(), size), decoded.indices


def video_info(path: str | os.PathLike) -> dict:
    """Frame count, fps and size of a video without decoding it fully."""
    import av

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"video file not found: {path}")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoDecodeError(path, "the file has no video stream")
            stream = container.streams.video[0]
            return {
                "frames": stream.frames,
                "fps": float(stream.average_rate or 0),
                "height": stream.codec_context.height,
                "width": stream.codec_context.width,
            }
    except av.error.FFmpegError as exc:
        raise VideoDecodeError(path, f"not a readable media container ({exc})") from exc

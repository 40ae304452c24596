"""Image rows: one picture read as a one-frame video padded to a temporal group.

Video-R1 mixes picture questions (``data_type: image``) with its video questions. They are
served in the same sample form as videos: the picture, resized like video frames, repeated
``frames`` times (Qwen2.5-VL's temporal patch is 2 frames, so 2 makes one temporal group,
as its image processor repeats a picture). The compressor and the language model then see
a one-group video.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from marc.data.video import resize_frames
from marc.decoding import VideoDecodeError

IMAGE_FRAMES = 2  # one temporal group of Qwen2.5-VL


class ImageDecodeError(VideoDecodeError):
    """A picture that exists but cannot be read; names the file, the reason and the row."""

    def __init__(self, path: str | os.PathLike, reason: str, row: str | None = None):
        super().__init__(path, reason)
        self.row = row
        where = f" (row {row})" if row else ""
        self.args = (f"cannot read image {self.path}{where}: {reason}",)


def read_image(
    path: str | os.PathLike,
    size: int | tuple[int, int] | None = None,
    frames: int = IMAGE_FRAMES,
    row: str | None = None,
) -> tuple[torch.Tensor, np.ndarray]:
    """A picture as uint8 frames ``[frames, 3, H, W]`` (H, W multiples of 28) and their
    source indices (all 0).

    ``row`` (the annotation's ``file:line``) is named in the errors: FileNotFoundError for
    a missing file, :class:`ImageDecodeError` for an empty, truncated or corrupt one.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    where = f" (row {row})" if row else ""
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}{where}")
    if frames < 1:
        raise ValueError(f"frames must be at least 1, got {frames}")
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        # PIL reports truncated files as OSError and some corrupt headers as SyntaxError.
        raise ImageDecodeError(path, f"not a readable picture ({exc})", row) from exc
    picture = torch.from_numpy(pixels.copy()).permute(2, 0, 1).unsqueeze(0)
    video = resize_frames(picture.contiguous(), size).expand(frames, -1, -1, -1).contiguous()
    return video, np.zeros(frames, dtype=int)

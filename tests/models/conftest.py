"""Shared fixtures of the model tests: one small seeded VideoVLM and helpers for videos."""

from __future__ import annotations

import pytest
import torch

from marc.compression.base import Budget, CompressedVideo
from marc.models.vlm import VideoVLM

QUESTION = "What colour is the circle in the event with the black plain background?"
COMPLETION = "<think> a red circle moves left </think> <answer> B </answer>"


@pytest.fixture(scope="session")
def vlm() -> VideoVLM:
    """Tiny model with a wider init than training uses, so random logits are far from flat."""
    return VideoVLM.tiny(seed=0, initializer_range=0.3).eval()


def random_frames(
    num_frames: int, height: int = 56, width: int = 56, seed: int = 0
) -> torch.Tensor:
    """Seeded noise video, uint8 [T, 3, H, W]."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(
        0, 256, (num_frames, 3, height, width), dtype=torch.uint8, generator=generator
    )


def merge_all_groups(tokens: torch.Tensor, grid: tuple[int, int, int]) -> CompressedVideo:
    """Test stand-in compressor: average every temporal group into one (lossless if all equal)."""
    t, h, w = grid
    return CompressedVideo(tokens.mean(0, keepdim=True), (1, h, w), 1 / t)


def keep_all(
    tokens: torch.Tensor, grid: tuple[int, int, int], budget: Budget, segments=None
) -> CompressedVideo:
    """Test stand-in compressor that keeps every token."""
    return CompressedVideo(tokens, grid, 1.0)


def random_video(groups: int, height: int = 2, width: int = 2, seed: int = 0) -> CompressedVideo:
    """Compressed video of random visual tokens with grid (groups, height, width)."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randn(groups, height * width, 128, generator=generator)
    return CompressedVideo(tokens, (groups, height, width), 1.0)

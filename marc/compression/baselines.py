"""Simple compressors to compare MARC against; all keep whole temporal groups.

Each takes ``tokens [T, H*W, D]``, ``grid (T, H, W)`` and a :class:`Budget`, returns
``budget.max_groups(grid)`` groups (``Identity`` excepted) on the same ``H x W`` grid, and
reports ``kept_fraction`` = output tokens / input tokens. ``ToMe`` lives in its own module
and is re-exported here.
"""

from __future__ import annotations

import torch

from marc.compression.base import (
    Budget,
    CompressedVideo,
    Grid,
    TokenCompressor,
    kept_groups,
)
from marc.compression.groups import compute_dtype
from marc.compression.tome import ToMe

__all__ = ["Identity", "RandomDrop", "TemporalMeanPool", "ToMe", "UniformFrames"]


class Identity(TokenCompressor):
    """Keep every token (the uncompressed baseline); the budget is ignored."""

    def compress(
        self, tokens: torch.Tensor, grid: Grid, budget: Budget, segments=None
    ) -> CompressedVideo:
        """Return ``tokens`` unchanged with ``kept_fraction`` 1.0."""
        return CompressedVideo(tokens, grid, 1.0)


def uniform_indices(total: int, keep: int) -> list[int]:
    """``keep`` indices of ``range(total)``, at the centres of ``keep`` equal time bins."""
    return [((2 * k + 1) * total) // (2 * keep) for k in range(keep)]


class UniformFrames(TokenCompressor):
    """Keep ``budget.max_groups`` temporal groups uniformly spaced in time (bin centres)."""

    def compress(
        self, tokens: torch.Tensor, grid: Grid, budget: Budget, segments=None
    ) -> CompressedVideo:
        """Select the groups at the centres of ``max_groups`` equal time bins."""
        keep = uniform_indices(grid[0], budget.max_groups(grid))
        return kept_groups(tokens[keep], grid)


def chunk_bounds(total: int, chunks: int) -> list[tuple[int, int]]:
    """``chunks`` contiguous, non-empty, near-equal ``(start, end)`` ranges covering ``total``."""
    edges = [(k * total) // chunks for k in range(chunks + 1)]
    return list(zip(edges[:-1], edges[1:]))


class TemporalMeanPool(TokenCompressor):
    """Average ``budget.max_groups`` contiguous, near-equal chunks of temporal groups."""

    def compress(
        self, tokens: torch.Tensor, grid: Grid, budget: Budget, segments=None
    ) -> CompressedVideo:
        """Replace each chunk of consecutive groups by its mean group."""
        keep = budget.max_groups(grid)
        # Averaging in float32 at least keeps bf16 chunk means accurate.
        work = tokens.to(compute_dtype(tokens.dtype))
        pooled = torch.stack([work[s:e].mean(0) for s, e in chunk_bounds(grid[0], keep)])
        return kept_groups(pooled.to(tokens.dtype), grid)


class RandomDrop(TokenCompressor):
    """Keep ``budget.max_groups`` randomly chosen temporal groups, in time order.

    Args:
        seed: seed of the generator, created afresh on every call: the result depends only
            on the inputs and ``seed`` (the same ``T`` and budget always keep the same
            groups), never on what was compressed before.
    """

    def __init__(self, seed: int = 0):
        super().__init__()
        self.seed = seed

    def extra_repr(self) -> str:
        return f"seed={self.seed}"

    def compress(
        self, tokens: torch.Tensor, grid: Grid, budget: Budget, segments=None
    ) -> CompressedVideo:
        """Select a seeded random subset of groups, sorted by time."""
        generator = torch.Generator().manual_seed(self.seed)
        chosen = torch.randperm(grid[0], generator=generator)[: budget.max_groups(grid)]
        keep = chosen.sort().values.to(tokens.device)
        return kept_groups(tokens[keep], grid)

"""The compressor interface: visual tokens and their grid in, fewer tokens and a grid out.

Tokens are ``[T, H*W, D]``: ``T`` temporal groups (Qwen2.5-VL merges two frames into one
group), each with ``H*W`` merged visual tokens laid out row-major on an ``H x W`` grid.
A compressor returns a :class:`CompressedVideo` whose grid ``(T', H', W')`` says how the
language model must place the kept tokens (M-RoPE positions come from that grid).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
from torch import nn

Grid = tuple[int, int, int]


@dataclass(frozen=True)
class Budget:
    """How many visual tokens a compressor may keep.

    ``Budget(frames=1)`` counts temporal groups of the grid (one frame = one temporal group,
    the paper's one-frame budget); ``Budget(tokens=N)`` counts tokens. Exactly one is set.
    """

    frames: int | None = None
    tokens: int | None = None

    def __post_init__(self):
        if (self.frames is None) == (self.tokens is None):
            raise ValueError("Budget needs exactly one of frames= or tokens=")
        value = self.frames if self.frames is not None else self.tokens
        if value < 1:
            raise ValueError(f"Budget must be at least 1, got {value}")

    def max_tokens(self, grid: Grid) -> int:
        """Number of tokens allowed for a video with this grid (never more than it has)."""
        t, h, w = grid
        allowed = self.frames * h * w if self.frames is not None else self.tokens
        return min(allowed, t * h * w)

    def max_groups(self, grid: Grid) -> int:
        """Number of whole temporal groups allowed for a video with this grid (at least 1)."""
        t, h, w = grid
        return max(1, min(t, self.max_tokens(grid) // (h * w)))


@dataclass
class CompressedVideo:
    """Kept tokens ``[T', H'*W', D]``, their grid ``(T', H', W')`` and the fraction kept."""

    tokens: torch.Tensor
    grid: Grid
    kept_fraction: float

    def __post_init__(self):
        t, h, w = self.grid
        if self.tokens.dim() != 3 or self.tokens.shape[0] != t or self.tokens.shape[1] != h * w:
            raise ValueError(
                f"tokens of shape {tuple(self.tokens.shape)} do not match grid {self.grid}"
            )

    @property
    def num_tokens(self) -> int:
        """Number of visual tokens handed to the language model."""
        t, h, w = self.grid
        return t * h * w


def check_tokens(tokens: torch.Tensor, grid: Grid) -> None:
    """Raise a clear error when ``tokens`` do not have the layout ``grid`` describes."""
    t, h, w = grid
    if tokens.dim() != 3 or tokens.shape[0] != t or tokens.shape[1] != h * w:
        raise ValueError(
            f"expected tokens [T, H*W, D] = [{t}, {h * w}, D] for grid {grid}, "
            f"got {tuple(tokens.shape)}"
        )


def check_inputs(tokens: torch.Tensor, grid: Grid, budget: Budget) -> Grid:
    """Raise a clear ValueError for bad grid, tokens or budget; return the grid as ints."""
    try:
        if len(grid) != 3:
            raise TypeError
        grid = tuple(operator.index(n) for n in grid)
    except TypeError:
        raise ValueError(f"grid must be three ints (T, H, W), got {grid!r}") from None
    if min(grid) < 1:
        raise ValueError(f"grid sizes must be positive, got {grid}")
    if not isinstance(tokens, torch.Tensor):
        raise ValueError(f"tokens must be a torch.Tensor, got {type(tokens).__name__}")
    check_tokens(tokens, grid)
    if not tokens.is_floating_point():
        raise ValueError(f"tokens must be a floating-point tensor, got {tokens.dtype}")
    if not isinstance(budget, Budget):
        raise ValueError(f"budget must be a Budget, got {type(budget).__name__}")
    return grid


class TokenCompressor(nn.Module):
    """Base class: ``compressor(tokens, grid, budget) -> CompressedVideo``.

    :meth:`forward` holds what every compressor does first: it checks the inputs
    (:func:`check_inputs`) and returns the video unchanged when the budget allows all of
    it; otherwise it calls :meth:`compress`, which a subclass implements on checked inputs
    (``grid`` a tuple of ints) with a budget smaller than the video.
    """

    def forward(self, tokens: torch.Tensor, grid: Grid, budget: Budget) -> CompressedVideo:
        """Compress ``tokens [T, H*W, D]`` of a video with ``grid (T, H, W)`` to ``budget``."""
        grid = check_inputs(tokens, grid, budget)
        if budget.max_groups(grid) >= grid[0]:
            return CompressedVideo(tokens, grid, 1.0)
        return self.compress(tokens, grid, budget)

    def compress(self, tokens: torch.Tensor, grid: Grid, budget: Budget) -> CompressedVideo:
        """The compressor's own work, on checked inputs that exceed the budget."""
        raise NotImplementedError


def kept_fraction(grid_in: Grid, grid_out: Grid) -> float:
    """Share of the input's visual tokens that the output keeps."""
    t_in, h_in, w_in = grid_in
    t_out, h_out, w_out = grid_out
    return (t_out * h_out * w_out) / (t_in * h_in * w_in)


def kept_groups(tokens: torch.Tensor, grid: Grid) -> CompressedVideo:
    """Wrap whole groups ``[T', H*W, D]`` kept from a video with input ``grid``."""
    _, h, w = grid
    out_grid = (tokens.shape[0], h, w)
    return CompressedVideo(tokens, out_grid, kept_fraction(grid, out_grid))

"""The compressor interface: visual tokens and their grid in, fewer tokens out.

Tokens are ``[T, H*W, D]``: ``T`` temporal groups (Qwen2.5-VL merges two frames into one
group), each with ``H*W`` merged visual tokens laid out row-major on an ``H x W`` grid.
``segments`` (optional) are ``(start, end)`` spans of temporal groups that tile ``[0, T)``:
the retrieved clips, or a video's events; a compressor may keep within them.

A compressor returns a :class:`CompressedVideo` in one of two forms:

- grid-shaped: tokens ``[T', H'*W', D]`` on the grid ``(T', H', W')`` (whole temporal
  groups kept or merged); the language model places them as a ``T' x H' x W'`` video;
- token-level: tokens ``[N, D]`` with ``positions`` ``[N, 3]``, the ``(t, h, w)`` index of
  each kept token on the input grid (in merged-token units), so each token keeps its own
  place in the video (VidCom², FastVID, VisionZip, DyCoke keep tokens this way).

``CompressedVideo.token_positions()`` gives the ``(t, h, w)`` of every token in both forms,
which is what the language model's M-RoPE position ids are built from.
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


Span = tuple[int, int]


@dataclass
class CompressedVideo:
    """Kept tokens, their grid, the fraction kept and, for token-level results, positions.

    Grid-shaped: ``tokens`` ``[T', H'*W', D]``, ``grid`` ``(T', H', W')``, no positions.
    Token-level: ``tokens`` ``[N, D]``, ``positions`` long ``[N, 3]`` of ``(t, h, w)``
    indices, each inside ``grid`` (the input video's grid), in the order the
    tokens are handed to the language model. ``kept_fraction`` is tokens out / tokens in.
    """

    tokens: torch.Tensor
    grid: Grid
    kept_fraction: float
    positions: torch.Tensor | None = None

    def __post_init__(self):
        t, h, w = self.grid
        if self.positions is None:
            if self.tokens.dim() != 3 or self.tokens.shape[0] != t or self.tokens.shape[1] != h * w:
                raise ValueError(
                    f"tokens of shape {tuple(self.tokens.shape)} do not match grid {self.grid}"
                )
            return
        positions = self.positions
        if (
            not isinstance(positions, torch.Tensor)
            or positions.dim() != 2
            or positions.shape[1] != 3
        ):
            shape = tuple(positions.shape) if isinstance(positions, torch.Tensor) else positions
            raise ValueError(f"positions must be a [N, 3] tensor of (t, h, w), got shape {shape}")
        if positions.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"positions must be an integer tensor, got {positions.dtype}")
        if self.tokens.dim() != 2 or self.tokens.shape[0] != positions.shape[0]:
            raise ValueError(
                f"token-level tokens must be [N, D] with N = {positions.shape[0]} positions, "
                f"got shape {tuple(self.tokens.shape)}"
            )
        if positions.numel():
            limits = torch.tensor(self.grid, device=positions.device)
            outside = (positions < 0).any(dim=1) | (positions >= limits).any(dim=1)
            if bool(outside.any()):
                row = int(outside.nonzero()[0, 0])
                raise ValueError(
                    f"positions of shape {tuple(positions.shape)}: row {row} "
                    f"{positions[row].tolist()} lies outside the grid {self.grid}"
                )

    @property
    def is_token_level(self) -> bool:
        """Whether tokens are ``[N, D]`` at explicit positions (else a grid of groups)."""
        return self.positions is not None

    @property
    def num_tokens(self) -> int:
        """Number of visual tokens handed to the language model."""
        if self.positions is not None:
            return int(self.positions.shape[0])
        t, h, w = self.grid
        return t * h * w

    def flat_tokens(self) -> torch.Tensor:
        """Tokens ``[N, D]`` in the order the language model reads them."""
        return self.tokens if self.positions is not None else self.tokens.flatten(0, 1)

    def token_positions(self) -> torch.Tensor:
        """``(t, h, w)`` of every token, long ``[N, 3]`` (derived from the grid when grid-shaped)."""
        if self.positions is not None:
            return self.positions.long()
        return grid_positions(self.grid, self.tokens.device)


def grid_positions(grid: Grid, device: torch.device | str | None = None) -> torch.Tensor:
    """``(t, h, w)`` of every cell of ``grid`` in time-major, row-major order, ``[T*H*W, 3]``."""
    t, h, w = grid
    axes = [torch.arange(n, device=device) for n in (t, h, w)]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)


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
    """Base class: ``compressor(tokens, grid, budget, segments=None) -> CompressedVideo``.

    :meth:`forward` holds what every compressor does first: it checks the inputs
    (:func:`check_inputs`, :func:`check_segments`) and returns the video unchanged when the
    budget allows all of it; otherwise it calls :meth:`compress`, which a subclass
    implements on checked inputs (``grid`` a tuple of ints, ``segments`` a list of spans
    or None) with a budget smaller than the video. A subclass may use the segments or
    ignore them.
    """

    def forward(
        self,
        tokens: torch.Tensor,
        grid: Grid,
        budget: Budget,
        segments: list[Span] | None = None,
    ) -> CompressedVideo:
        """Compress ``tokens [T, H*W, D]`` of a video with ``grid (T, H, W)`` to ``budget``."""
        grid = check_inputs(tokens, grid, budget)
        segments = check_segments(segments, grid[0])
        t, h, w = grid
        if budget.max_tokens(grid) >= t * h * w:
            return CompressedVideo(tokens, grid, 1.0)
        return self.compress(tokens, grid, budget, segments)

    def compress(
        self,
        tokens: torch.Tensor,
        grid: Grid,
        budget: Budget,
        segments: list[Span] | None = None,
    ) -> CompressedVideo:
        """The compressor's own work, on checked inputs that exceed the budget."""
        raise NotImplementedError


def check_segments(segments, num_groups: int) -> list[Span] | None:
    """``segments`` as a list of int spans that tile ``[0, num_groups)`` in order, or None.

    A ValueError names the first offending span: empty, overlapping, leaving a gap, or
    outside the video.
    """
    if segments is None:
        return None
    spans: list[Span] = []
    expected = 0
    for index, span in enumerate(segments):
        try:
            start, end = (operator.index(x) for x in span)
        except (TypeError, ValueError):
            raise ValueError(
                f"segment {index} must be a (start, end) pair of ints, got {span!r}"
            ) from None
        if end <= start:
            raise ValueError(f"segment {index} {(start, end)} is empty (end must exceed start)")
        if start != expected:
            problem = "overlaps the one before" if start < expected else "leaves a gap before it"
            raise ValueError(
                f"segment {index} {(start, end)} {problem}: segments must tile [0, {num_groups}) "
                f"in order, the next one should start at {expected}"
            )
        if end > num_groups:
            raise ValueError(
                f"segment {index} {(start, end)} ends after the video's {num_groups} groups"
            )
        spans.append((start, end))
        expected = end
    if expected != num_groups:
        raise ValueError(
            f"segments cover [0, {expected}) but the video has {num_groups} groups"
            if spans
            else "segments is empty: pass None for a video without segments"
        )
    return spans


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


def kept_tokens(tokens: torch.Tensor, positions: torch.Tensor, grid: Grid) -> CompressedVideo:
    """Wrap tokens ``[N, D]`` kept at ``positions`` ``[N, 3]`` from a video with ``grid``.

    Tokens are put in time-major, row-major order of their positions, the order the
    language model reads a video in.
    """
    t, h, w = grid
    positions = positions.long()
    order = ((positions[:, 0] * h + positions[:, 1]) * w + positions[:, 2]).argsort()
    return CompressedVideo(
        tokens[order], grid, positions.shape[0] / (t * h * w), positions=positions[order]
    )

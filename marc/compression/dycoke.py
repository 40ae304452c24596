"""DyCoke's temporal token merging: drop tokens that repeat their reference frame's."""

from __future__ import annotations

import torch

from marc.compression.base import Budget, CompressedVideo, Grid, Span, TokenCompressor
from marc.compression.tokens import allocate, keep_per_frame, kept_mask, unit

WINDOW = 4


class DyCoke(TokenCompressor):
    """DyCoke's temporal token merging (TTM): prune tokens repeated from a reference frame.

    Keda Tao, Can Qin, Haoxuan You, Yang Sui, Huan Wang. "DyCoke: Dynamic Compression of
    Tokens for Fast Video Large Language Models." CVPR 2025, arXiv 2411.15024 (official
    code: github.com/KD-TAO/DyCoke, ``dycole_ttm`` in ``llava/model/llava_arch.py``).

    Algorithm (TTM, as the official code runs it): frames are taken in windows of 4,
    ``(i, i+1, i+2, i+3)``. The window's first frame ``i`` (the pivot) is kept whole; frames
    ``i+1`` and ``i+2`` are compared with frame ``i``, frame ``i+3`` with frame ``i+2``, each
    token with the token at the same spatial position (cosine similarity of the original,
    unpruned tokens), and each of them keeps the tokens least similar to their reference
    (those that changed), unmodified. Despite its name the step prunes: nothing is
    averaged. The official pruning ratio is ``K = 0.7``; here it follows from the budget.

    DyCoke's second part, dynamic KV-cache pruning during decoding (at layer 3, keep the
    image tokens the last query attends to most, re-chosen when that attention shifts), needs
    the language model's attention at every decoding step; a compressor runs once, before
    the language model, so it is out of its reach and not implemented here.

    Adaptations to marc (a frame is one temporal group of merged Qwen2.5-VL tokens):

    - windows restart at every segment start, so no token is compared across a segment
      (clip) border; without ``segments`` the video is one segment. The last window may be
      shorter (the official code skips frame ``i+2`` of the last window and drops the last
      frame of an odd-length video; neither quirk is kept);
    - exact budget ``N``: with ``P`` pivots and ``N >= P*M``, pivots are whole and the other
      frames share ``N - P*M`` tokens equally (:func:`~marc.compression.tokens.allocate`,
      remainders to the earliest), i.e. DyCoke with ``K = 1 - (N - P*M) / ((T - P) M)``;
    - beyond DyCoke, for ``N < P*M`` only pivots keep tokens (equal shares): a pivot keeps
      the tokens least similar to the previous pivot of its segment, and a segment's first
      pivot the tokens least similar to its own frame's mean token.

    Ties go to the lower index. Kept tokens keep their own ``(t, h, w)``.
    """

    def compress(
        self, tokens: torch.Tensor, grid: Grid, budget: Budget, segments: list[Span] | None = None
    ) -> CompressedVideo:
        """Keep exactly ``budget.max_tokens(grid)`` tokens, pivot frames first."""
        t, h, w = grid
        m, total = h * w, budget.max_tokens(grid)
        reference, pivot = self.references(t, segments)
        reference = reference.to(tokens.device)
        units = unit(tokens)
        # A segment's first pivot has no reference frame: its own mean token stands in.
        first = reference < 0
        anchor = units[reference.clamp_min(0)]
        anchor[first] = unit(units[first].mean(dim=1, keepdim=True))
        redundancy = (units * anchor).sum(dim=-1)
        pivots = int(pivot.sum())
        counts = torch.zeros(t, dtype=torch.int64)
        if total >= pivots * m:
            counts[pivot] = m
            counts[~pivot] = allocate(
                torch.ones(t - pivots), total - pivots * m, [m] * (t - pivots)
            )
        else:
            counts[pivot] = allocate(torch.ones(pivots), total, [m] * pivots)
        return kept_mask(tokens, keep_per_frame(redundancy, counts, largest=False), grid)

    @staticmethod
    def references(
        num_frames: int, segments: list[Span] | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each frame's reference frame (-1 for none) ``[T]`` and which frames are pivots.

        In a window ``(i, i+1, i+2, i+3)`` of a segment, ``i+1`` and ``i+2`` refer to ``i``
        and ``i+3`` to ``i+2``; a pivot ``i`` refers to the previous pivot ``i-4`` of its
        segment, the segment's first pivot to none.
        """
        reference = torch.full((num_frames,), -1, dtype=torch.int64)
        pivot = torch.zeros(num_frames, dtype=torch.bool)
        for start, end in segments or [(0, num_frames)]:
            frames = torch.arange(start, end)
            offset = (frames - start) % WINDOW
            window_start = frames - offset
            reference[start:end] = torch.where(offset == 3, frames - 1, window_start)
            reference[start:end][offset == 0] = window_start[offset == 0] - WINDOW
            pivot[start:end] = offset == 0
            reference[start] = -1
        return reference, pivot

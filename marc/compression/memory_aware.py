"""MARC's parameter-free memory-aware temporal compression (arXiv 2510.07915).

Temporal groups are merged, two adjacent ones at a time, until the budget is met; each step
merges the most similar allowed adjacent pair, where similarity is the mean over spatial
positions of the cosine similarity of the tokens there (the paper's frame metric); ties go
to the earliest pair, so the result is deterministic. Which pairs are allowed depends on
the stage, and the lowest stage with an allowed pair goes first:

1. local: inside one window of ``window`` adjacent groups (the paper's m) of one segment,
   while that segment still holds more than ``local_ratio`` of its groups (at least one);
   windows start at each segment's first group, so they never cross a segment border;
2. within a segment, across its windows;
3. across segments (only once every segment is down to one group).

Segments are the retrieved clips (or a video's events); without them the whole video is
one segment. With as many budget groups as segments, stage 3 never runs, so no output
group mixes two segments.
"""

from __future__ import annotations

import math

import torch

from marc.compression.base import (
    Budget,
    CompressedVideo,
    Grid,
    Span,
    TokenCompressor,
    check_inputs,
    check_segments,
    kept_groups,
)
from marc.compression.groups import (
    MERGE_RULES,
    compute_dtype,
    group_similarity,
    inverse_norms,
    merge_pair,
)

LOCAL, WITHIN_SEGMENT, ACROSS_SEGMENTS = 1, 2, 3


class MemoryAwareMerge(TokenCompressor):
    """Merge the most similar adjacent temporal groups: in windows, in segments, then across.

    Args:
        window: groups per local window of stage 1 (the paper's ``m``, which it does not
            give; 4 here): consecutive runs of ``window`` groups from each segment's start,
            the last one of a segment may be shorter. ``window=1`` skips stage 1.
        local_ratio: stage 1 stops merging in a segment once it holds
            ``ceil(local_ratio * its groups)`` groups (at least one); the paper's stage-1
            ratio, which it does not give either. 0.25 with ``window=4`` lets stage 1 bring
            every full window down to one group.
        merge: how two groups become one. ``"pairwise"`` (default) is the paper's
            ``H = (H_a + H_b) / 2``: a group merged late keeps more weight than groups merged
            early. ``"size_weighted"`` averages the original groups a merge holds (the mean
            of all its members, so at a one-frame budget it equals ``TemporalMeanPool``).
            Identical groups merge losslessly under both.

    In stage 1 the most similar within-window pair anywhere in the video is merged next, so
    when the budget stops stage 1 early, the merges went to the most redundant windows
    rather than to the first ones.
    """

    def __init__(self, window: int = 4, local_ratio: float = 0.25, merge: str = "pairwise"):
        super().__init__()
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        if not 0.0 < local_ratio <= 1.0:
            raise ValueError(f"local_ratio must be in (0, 1], got {local_ratio}")
        if merge not in MERGE_RULES:
            raise ValueError(f"merge must be one of {MERGE_RULES}, got {merge!r}")
        self.window = window
        self.local_ratio = local_ratio
        self.merge = merge

    def extra_repr(self) -> str:
        return f"window={self.window}, local_ratio={self.local_ratio}, merge={self.merge!r}"

    def compress(
        self,
        tokens: torch.Tensor,
        grid: Grid,
        budget: Budget,
        segments: list[Span] | None = None,
    ) -> CompressedVideo:
        """Compress ``tokens [T, H*W, D]`` to ``budget.max_groups(grid)`` temporal groups."""
        merged, _, _ = self.merge_groups(tokens, grid, budget, segments)
        return kept_groups(merged, grid)

    def merge_groups(
        self,
        tokens: torch.Tensor,
        grid: Grid,
        budget: Budget,
        segments: list[Span] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, list[list[int]]]:
        """Merge groups down to the budget.

        Returns the merged tokens ``[T', H*W, D]`` (input dtype), ``counts`` (long ``[T']``,
        original groups per output group) and ``members`` (the original group indices of
        each output group, in time order).
        """
        grid = check_inputs(tokens, grid, budget)
        segments = check_segments(segments, grid[0]) or [(0, grid[0])]
        target = budget.max_groups(grid)
        means = list(tokens.to(compute_dtype(tokens.dtype)).unbind(0))
        inv = [inverse_norms(mean) for mean in means]  # per group, like the updates below
        counts = [1] * len(means)
        members = [[i] for i in range(len(means))]
        # Segment and window of each current group (a merged group keeps its first one's).
        segment_of = [s for s, (start, end) in enumerate(segments) for _ in range(start, end)]
        window_of = [
            (s, (i - start) // self.window)
            for s, (start, end) in enumerate(segments)
            for i in range(start, end)
        ]
        size = [end - start for start, end in segments]
        local_target = [max(1, math.ceil(self.local_ratio * n)) for n in size]

        def stage(i: int) -> int:
            """Which stage may merge the adjacent pair (i, i + 1)."""
            if segment_of[i] != segment_of[i + 1]:
                return ACROSS_SEGMENTS
            local = window_of[i] == window_of[i + 1]
            if local and size[segment_of[i]] > local_target[segment_of[i]]:
                return LOCAL
            return WITHIN_SEGMENT

        def similarities(pairs: list[int]) -> list[float]:
            """Similarity of each adjacent pair ``(i, i + 1)`` for ``i`` in ``pairs``."""
            if not pairs:
                return []
            sims = [group_similarity(means[i], means[i + 1], inv[i], inv[i + 1]) for i in pairs]
            return torch.stack(sims).tolist()  # one device sync for the lot

        sims = similarities(list(range(len(means) - 1)))
        while len(means) > target:
            stages = [stage(i) for i in range(len(sims))]
            lowest = min(stages)
            i = _best_pair(sims, [s == lowest for s in stages])
            size[segment_of[i]] -= 1  # a cross-segment merge is the last kind: harmless
            means[i] = merge_pair(means[i], counts[i], means[i + 1], counts[i + 1], self.merge)
            inv[i] = inverse_norms(means[i])
            counts[i] += counts.pop(i + 1)
            members[i] += members.pop(i + 1)
            del means[i + 1], inv[i + 1], segment_of[i + 1], window_of[i + 1], sims[i]
            # Only the merged group's two neighbouring pairs changed.
            changed = [j for j in (i - 1, i) if 0 <= j < len(sims)]
            for j, sim in zip(changed, similarities(changed)):
                sims[j] = sim

        merged = torch.stack(means).to(tokens.dtype)
        count_tensor = torch.tensor(counts, dtype=torch.long, device=tokens.device)
        return merged, count_tensor, members


def _best_pair(sims: list[float], allowed: list[bool]) -> int:
    """Index of the most similar allowed adjacent pair (earliest on ties)."""
    best, best_sim = None, None
    for i, (sim, ok) in enumerate(zip(sims, allowed)):
        if ok and (best_sim is None or sim > best_sim):
            best, best_sim = i, sim
    return best

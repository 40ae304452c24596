"""MARC's parameter-free memory-aware temporal compression (arXiv 2510.07915).

Temporal groups are merged, two adjacent ones at a time, into size-weighted averages until
the budget is met. Stage 1 (local) only merges inside short windows of ``window`` adjacent
groups, down to ``local_keep`` groups per window; stage 2 (global) then merges across window
(and retrieved-clip) borders. Each step merges the most similar allowed adjacent pair, where
similarity is the mean over spatial positions of the cosine similarity of the tokens there;
ties go to the earliest pair, so the result is deterministic.
"""

from __future__ import annotations

import torch

from marc.compression.base import (
    Budget,
    CompressedVideo,
    Grid,
    TokenCompressor,
    check_inputs,
    kept_groups,
)
from marc.compression.groups import compute_dtype, group_similarity, inverse_norms, merge_pair


class MemoryAwareMerge(TokenCompressor):
    """Merge the most similar adjacent temporal groups, first within windows, then globally.

    Args:
        window: groups per local window in stage 1 (the paper's ``m``); windows are
            consecutive runs of ``window`` original groups, the last may be shorter.
        local_keep: stage 1 reduces every window to this many groups (fewer merges happen
            if the global budget is reached first); ``local_keep >= window`` skips stage 1.

    In stage 1 the most similar within-window pair anywhere in the video is merged next, so
    when the budget stops stage 1 early, the merges went to the most redundant windows
    rather than to the first ones.
    """

    def __init__(self, window: int = 4, local_keep: int = 1):
        super().__init__()
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        if local_keep < 1:
            raise ValueError(f"local_keep must be at least 1, got {local_keep}")
        self.window = window
        self.local_keep = local_keep

    def extra_repr(self) -> str:
        return f"window={self.window}, local_keep={self.local_keep}"

    def compress(
        self, tokens: torch.Tensor, grid: Grid, budget: Budget, segments=None
    ) -> CompressedVideo:
        """Compress ``tokens [T, H*W, D]`` to ``budget.max_groups(grid)`` temporal groups."""
        merged, _, _ = self.merge_groups(tokens, grid, budget)
        return kept_groups(merged, grid)

    def merge_groups(
        self, tokens: torch.Tensor, grid: Grid, budget: Budget
    ) -> tuple[torch.Tensor, torch.Tensor, list[list[int]]]:
        """Merge groups down to the budget.

        Returns the merged tokens ``[T', H*W, D]`` (input dtype), ``counts`` (long ``[T']``,
        original groups per output group) and ``members`` (the original group indices of
        each output group, in time order).
        """
        grid = check_inputs(tokens, grid, budget)
        target = budget.max_groups(grid)
        means = list(tokens.to(compute_dtype(tokens.dtype)).unbind(0))
        inv = [inverse_norms(mean) for mean in means]  # per group, like the updates below
        counts = [1] * len(means)
        members = [[i] for i in range(len(means))]
        window_of = [i // self.window for i in range(len(means))]
        window_size = [window_of.count(win) for win in range(window_of[-1] + 1)]

        def similarities(pairs: list[int]) -> list[float]:
            """Similarity of each adjacent pair ``(i, i + 1)`` for ``i`` in ``pairs``."""
            if not pairs:
                return []
            sims = [group_similarity(means[i], means[i + 1], inv[i], inv[i + 1]) for i in pairs]
            return torch.stack(sims).tolist()  # one device sync for the lot

        def local_ok(i: int) -> bool:
            win = window_of[i]
            return window_of[i + 1] == win and window_size[win] > self.local_keep

        sims = similarities(list(range(len(means) - 1)))
        local = True
        while len(means) > target:
            i = _best_pair(sims, local_ok if local else None)
            if i is None:  # every window is down to local_keep: stage 2
                local = False
                continue
            if local:
                window_size[window_of[i]] -= 1
            means[i] = merge_pair(means[i], counts[i], means[i + 1], counts[i + 1])
            inv[i] = inverse_norms(means[i])
            counts[i] += counts.pop(i + 1)
            members[i] += members.pop(i + 1)
            del means[i + 1], inv[i + 1], window_of[i + 1], sims[i]
            # Only the merged group's two neighbouring pairs changed.
            changed = [j for j in (i - 1, i) if 0 <= j < len(sims)]
            for j, sim in zip(changed, similarities(changed)):
                sims[j] = sim

        merged = torch.stack(means).to(tokens.dtype)
        count_tensor = torch.tensor(counts, dtype=torch.long, device=tokens.device)
        return merged, count_tensor, members


def _best_pair(sims: list[float], allowed=None) -> int | None:
    """Index of the most similar allowed adjacent pair (earliest on ties), or None."""
    best, best_sim = None, None
    for i, sim in enumerate(sims):
        if (allowed is None or allowed(i)) and (best_sim is None or sim > best_sim):
            best, best_sim = i, sim
    return best

"""ToMe baseline: Token Merging's bipartite soft matching applied to whole temporal groups."""

from __future__ import annotations

import torch

from marc.compression.base import (
    Budget,
    CompressedVideo,
    Grid,
    TokenCompressor,
    kept_groups,
)
from marc.compression.groups import compute_dtype, merge_pair, normalize_groups


class ToMe(TokenCompressor):
    """Token Merging (Bolya et al., ICLR 2023) bipartite soft matching over temporal groups.

    The merged units are whole temporal groups, not single tokens, so the output is still a
    ``T' x H x W`` grid the language model can place. Each round splits the groups, in time
    order, alternately into sets A and B, matches every A group to its most similar B group
    (mean per-position cosine similarity) and merges the ``r`` best-matched A groups into
    their B partners by size-weighted averaging; rounds repeat until ``budget.max_groups``
    groups remain. Groups are kept ordered by the mean time of the original groups they hold.

    Args:
        merge_ratio: share of set A merged per round, ``r = max(1, floor(merge_ratio * |A|))``
            (never more than the budget needs). 1.0 is ToMe's maximal 50 % reduction per
            round; the default 0.5 leaves the least similar A groups, so an unusual group is
            not forced into a partner early.
    """

    def __init__(self, merge_ratio: float = 0.5):
        super().__init__()
        if not 0.0 < merge_ratio <= 1.0:
            raise ValueError(f"merge_ratio must be in (0, 1], got {merge_ratio}")
        self.merge_ratio = merge_ratio

    def extra_repr(self) -> str:
        return f"merge_ratio={self.merge_ratio}"

    def compress(
        self, tokens: torch.Tensor, grid: Grid, budget: Budget, segments=None
    ) -> CompressedVideo:
        """Merge groups by rounds of bipartite soft matching down to the budget."""
        target = budget.max_groups(grid)
        work = tokens.to(compute_dtype(tokens.dtype))
        means = list(work.unbind(0))
        sizes = [1] * len(means)
        members = [[i] for i in range(len(means))]
        gram = _GroupGram(work)
        while len(means) > target:
            means, sizes, members = self._round(gram, means, sizes, members, target)
        return kept_groups(torch.stack(means).to(tokens.dtype), grid)

    def _round(
        self,
        gram: _GroupGram,
        means: list[torch.Tensor],
        sizes: list[int],
        members: list[list[int]],
        target: int,
    ) -> tuple[list[torch.Tensor], list[int], list[list[int]]]:
        """One bipartite matching round: merge the r best A->B matches, keep time order."""
        # A group's slot in the gram is the original index it started from (members[i][0]
        # only changes for A groups, which disappear when merged).
        slots = [group[0] for group in members]
        set_a, set_b = list(range(0, len(means), 2)), list(range(1, len(means), 2))
        sim = gram.block([slots[a] for a in set_a], [slots[b] for b in set_b])
        best, partner = (values.tolist() for values in sim.max(dim=1))
        r = min(len(means) - target, max(1, int(self.merge_ratio * len(set_a))))
        chosen = sorted(sorted(range(len(set_a)), key=lambda a: (-best[a], a))[:r])
        for a in chosen:
            src, dst = set_a[a], set_b[partner[a]]
            means[dst] = merge_pair(means[dst], sizes[dst], means[src], sizes[src])
            sizes[dst] += sizes[src]
            members[dst] = members[dst] + members[src]
        changed = sorted({set_b[partner[a]] for a in chosen})
        gram.update([slots[b] for b in changed], [means[b] for b in changed])
        dropped = {set_a[a] for a in chosen}
        alive = [i for i in range(len(means)) if i not in dropped]
        alive.sort(key=lambda i: (sum(members[i]) / len(members[i]), min(members[i])))
        return [means[i] for i in alive], [sizes[i] for i in alive], [members[i] for i in alive]


class _GroupGram:
    """Similarities between all groups of one video, kept up to date as groups change.

    Each group has a slot holding its normalised tokens; the similarity of two slots is the
    mean per-position cosine, i.e. the dot product of their normalised tokens over ``H*W``.
    """

    def __init__(self, groups: torch.Tensor):
        self.positions = groups.shape[1]
        self.normed = normalize_groups(groups).flatten(1)
        self.sim = self.normed @ self.normed.T / self.positions

    def block(self, rows: list[int], cols: list[int]) -> torch.Tensor:
        """Similarities of the groups in slots ``rows`` to those in slots ``cols``."""
        return self.sim[rows][:, cols]

    @torch.no_grad()
    def update(self, slots: list[int], groups: list[torch.Tensor]) -> None:
        """Store new tokens for ``slots`` and recompute their similarities."""
        if not slots:
            return
        self.normed[slots] = normalize_groups(torch.stack(groups)).flatten(1)
        fresh = self.normed[slots] @ self.normed.T / self.positions
        self.sim[slots] = fresh
        self.sim[:, slots] = fresh.T

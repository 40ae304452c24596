"""Token-level ToMe: bipartite soft matching over all the video's tokens."""

from __future__ import annotations

import math

import torch

from marc.compression.base import Budget, CompressedVideo, Grid, Span, TokenCompressor
from marc.compression.groups import compute_dtype
from marc.compression.tokens import kept_at, span_ids, unit


class TokenToMe(TokenCompressor):
    """Token Merging's bipartite soft matching on single tokens, over the whole video.

    Daniel Bolya, Cheng-Yang Fu, Xiaoliang Dai, Peizhao Zhang, Christoph Feichtenhofer,
    Judy Hoffman. "Token Merging: Your ViT But Faster." ICLR 2023, arXiv 2210.09461
    (official code: github.com/facebookresearch/ToMe, ``bipartite_soft_matching``).
    :class:`~marc.compression.ToMe` is the same matching on whole temporal groups.

    Algorithm, one round on the ``n`` current tokens in ``(t, h, w)`` order: alternate
    tokens form sets A (even places) and B (odd places); every A token finds its most
    similar B token (cosine of the tokens); the ``r`` A tokens with the best matches merge
    into their B partner (several may merge into one), and a merged token is the
    size-weighted mean of all original tokens it holds. Rounds repeat on the merged tokens
    until exactly ``N`` remain, with ``r = min(n - N, max(1, floor(merge_ratio * |A|)))``.

    Defaults: ``merge_ratio=1.0`` (every A token may merge in a round, ToMe's largest
    step), so a one-frame budget on 32 groups takes 5 rounds; ``global_from=4096``.

    Adaptations to marc: ToMe runs inside a ViT on attention keys, a fixed ``r`` per layer;
    here it runs on the video's output tokens (the metric is the tokens themselves) in
    rounds sized to hit ``N`` exactly. A token's sequence is the whole video, so a token may
    merge with one in any temporal group (with even ``W``, A and B are the even and odd
    columns of every group). A merged token sits at its B token's original ``(t, h, w)``
    (B tokens are never consumed in a round, so positions stay distinct and on the grid).
    Proportional attention (``+ log size``) has no place outside the ViT. Cost: a round on
    ``n`` tokens compares ``n/2`` with ``n/2``; rounds on more than ``global_from`` tokens
    (in practice only the first round of a long video: 8192 tokens for 32 groups of
    16x16) match each A token only with the B tokens of its own and the two adjacent
    temporal groups, which covers the spatial and the frame-to-frame redundancy at about
    a tenth of the cost for 32 groups; set ``global_from`` to at least ``T*H*W`` for
    whole-video matching in every round. ``segments``: matches between tokens of
    different segments are not allowed; when a round finds no allowed match at all (a
    segment without B partners), cross-segment matches are allowed for that round. Ties
    go to the lower index.

    Args:
        merge_ratio: share of set A that may merge per round, in ``(0, 1]``.
        global_from: rounds on more tokens than this match within adjacent groups only.
    """

    def __init__(self, merge_ratio: float = 1.0, global_from: int = 4096):
        super().__init__()
        if not 0.0 < merge_ratio <= 1.0:
            raise ValueError(f"merge_ratio must be in (0, 1], got {merge_ratio}")
        if global_from < 1:
            raise ValueError(f"global_from must be at least 1, got {global_from}")
        self.merge_ratio = merge_ratio
        self.global_from = global_from

    def extra_repr(self) -> str:
        return f"merge_ratio={self.merge_ratio}, global_from={self.global_from}"

    def compress(
        self, tokens: torch.Tensor, grid: Grid, budget: Budget, segments: list[Span] | None = None
    ) -> CompressedVideo:
        """Merge tokens by rounds of bipartite soft matching down to exactly the budget."""
        sums, sizes, index, _ = self.merge(tokens, grid, budget.max_tokens(grid), segments)
        return kept_at(sums / sizes.unsqueeze(-1), index, grid, tokens.dtype)

    def merge(
        self,
        tokens: torch.Tensor,
        grid: Grid,
        target: int,
        segments: list[Span] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rounds of matching down to ``target`` tokens.

        Returns the sums of the original tokens each output token holds ``[N, D]``, how
        many it holds ``[N]``, the flat index of its position ``[N]`` (outputs in flat
        order) and, for every input token, the output token that holds it ``[T*H*W]``.
        """
        t, h, w = grid
        spans = segments or [(0, t)]
        # Each frame's segment bounds [first, last] (a local round's window stays inside).
        first = torch.tensor([s for s, e in spans for _ in range(s, e)], device=tokens.device)
        last = torch.tensor([e - 1 for s, e in spans for _ in range(s, e)], device=tokens.device)
        segment = span_ids(spans if len(spans) > 1 else None, t, tokens.device)
        sums = tokens.flatten(0, 1).to(compute_dtype(tokens.dtype))
        sizes = sums.new_ones(sums.shape[0])
        index = torch.arange(sums.shape[0], device=tokens.device)
        owner = index.clone()
        while sums.shape[0] > target:
            n = sums.shape[0]
            a = torch.arange(0, n, 2, device=sums.device)
            b = torch.arange(1, n, 2, device=sums.device)
            units = unit(sums)  # a mean and its sum point the same way
            frame = index // (h * w)
            best = partner = None
            if n > self.global_from:
                best, partner = _local_matches(units, frame, a, b, first, last)
            if best is None or not bool(torch.isfinite(best).any()):
                best, partner = _global_matches(
                    units, segment[frame] if len(spans) > 1 else None, a, b
                )
            r = min(
                n - target, max(1, int(self.merge_ratio * len(a))), int(torch.isfinite(best).sum())
            )
            order = best.argsort(descending=True, stable=True)[:r]
            src, dst = a[order], b[partner[order]]
            keep = torch.ones(n, dtype=torch.bool, device=sums.device)
            keep[src] = False
            slot = keep.cumsum(0) - 1  # place of each survivor in the next round
            merged_sums, merged_sizes = sums[keep], sizes[keep]
            merged_sums.index_add_(0, slot[dst], sums[src])
            merged_sizes.index_add_(0, slot[dst], sizes[src])
            slot[src] = slot[dst]
            sums, sizes, index, owner = merged_sums, merged_sizes, index[keep], slot[owner]
        return sums, sizes, index, owner


def _global_matches(units, segment, a, b):
    """Each A token's best B token over the video (within its segment when any matches)."""
    scores = units[a] @ units[b].T
    if segment is not None:
        allowed = segment[a].unsqueeze(1) == segment[b].unsqueeze(0)
        if bool(allowed.any()):
            scores = scores.masked_fill(~allowed, -math.inf)
    return scores.max(dim=1)


def _local_matches(units, frame, a, b, first, last):
    """Each A token's best B token in its own or an adjacent frame of its segment.

    Tokens are padded into one row per frame so the scores are three batched products (the
    B tokens of frames ``f - 1``, ``f`` and ``f + 1``), far cheaper than the whole video's.
    """
    num_frames, dim = first.shape[0], units.shape[1]
    padded = []
    for members in (a, b):
        f = frame[members]
        counts = torch.bincount(f, minlength=num_frames)
        rank = torch.arange(len(members), device=units.device) - (counts.cumsum(0) - counts)[f]
        table = units.new_zeros(num_frames, max(1, int(counts.max())), dim)
        table[f, rank] = units[members]
        place = torch.full(table.shape[:2], -1, dtype=torch.long, device=units.device)
        place[f, rank] = torch.arange(len(members), device=units.device)
        padded.append((f, rank, table, place))
    (frame_a, rank_a, table_a, _), (_, _, table_b, place_b) = padded
    frames = torch.arange(num_frames, device=units.device)
    scores, places = [], []
    for shift in (-1, 0, 1):
        # Frames f whose frame f + shift exists: [lo, hi); the others get no partner there.
        lo, hi = max(0, -shift), min(num_frames, num_frames - shift)
        block = units.new_full((num_frames, table_a.shape[1], table_b.shape[1]), -math.inf)
        block[lo:hi] = torch.bmm(table_a[lo:hi], table_b[lo + shift : hi + shift].transpose(1, 2))
        other = (frames + shift).clamp(0, num_frames - 1)
        inside = (frames + shift >= first) & (frames + shift <= last)
        place = torch.where(inside.unsqueeze(1), place_b[other], -1)
        scores.append(block.masked_fill_((place < 0).unsqueeze(1), -math.inf))
        places.append(place)
    best, which = torch.cat(scores, dim=2).max(dim=2)
    partner = torch.cat(places, dim=1).gather(1, which)
    return best[frame_a, rank_a], partner[frame_a, rank_a].clamp_min(0)

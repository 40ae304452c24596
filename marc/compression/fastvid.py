"""FastVID: dynamic temporal segments, then salient tokens and density-peak anchors in each."""

from __future__ import annotations

import math

import torch

from marc.compression.base import Budget, CompressedVideo, Grid, Span, TokenCompressor
from marc.compression.groups import compute_dtype
from marc.compression.tokens import (
    SALIENCY,
    allocate,
    check_choice,
    keep_per_frame,
    kept_at,
    nearest_sums,
    saliency,
    unit,
)


class FastVID(TokenCompressor):
    """FastVID's dynamic density pruning: DySeg segments, then STPrune in each segment.

    Leqi Shen, Guoqiang Gong, Tao He, Yifeng Zhang, Pengzhang Liu, Sicheng Zhao, Guiguang
    Ding. "FastVID: Dynamic Density Pruning for Fast Video Large Language Models."
    NeurIPS 2025, arXiv 2503.11187 (official code: github.com/LunarShen/FastVID; followed
    here is its Qwen2.5-VL path).

    Algorithm:

    1. *DySeg*: with ``f_t`` the unit-length mean token of frame ``t``, cut between frames
       ``t`` and ``t+1`` where ``cos(f_t, f_{t+1}) < cut_similarity``, and at the lowest
       similarities until there are at least ``min_segments`` segments;
    2. each segment gets a share of the budget proportional to its length; inside it,
       runs of near-duplicate frames (adjacent ``cos < duplicate_similarity`` splits them)
       count once: only the last frame of each run is *valid*;
    3. ``context_share`` of the segment's tokens (at least one) are *anchors*, spread
       over every ``anchor_stride``-th valid frame counting back from the segment's last
       (at most half a frame each); the rest are *salient* tokens, spread evenly over the
       valid frames: each frame's most attended tokens, kept unmodified;
    4. anchors of a frame are its non-salient tokens with the highest density-peak score
       ``rho * delta`` (DPC-kNN): ``rho = exp(-mean of the squared distances to the
       density_neighbours nearest, itself included)``, distances ``|x_i - x_j| / sqrt(D)``,
       and ``delta`` the distance to the nearest denser token (the largest distance for
       the densest);
    5. DTM: for each anchor frame, every other non-salient token of the segment (of every
       frame) joins its most similar anchor of that frame (cosine), and the anchor becomes
       ``w * anchor + (1 - w) * mean(joined)``, ``w = max(1 / (n + 1), anchor_weight)``.

    Defaults are the official Qwen2.5-VL ones (``c=8, tau=0.84, ignore=0.95, d=0.4, p=4,
    beta=0.6``, 4 neighbours). Adaptations to marc:

    - a frame is one temporal group of merged Qwen2.5-VL tokens (as in the official port);
    - saliency: the official score is the attention of each frame's mean query to its keys
      in the vision tower's last block; the compressor only sees output tokens, so by
      default a token's score is the attention it receives in a single-head self-attention
      of its frame's tokens, diagonal masked (:func:`~marc.compression.tokens.saliency`;
      ``"mean_query"`` is the output-token analogue of the official mean query,
      ``"norm"`` the cheapest); encoder attention can be passed to :meth:`compress` as
      ``saliency_scores [T, H*W]``;
    - ``segments``: their borders are forced cuts, and count towards ``min_segments``;
      DySeg (``dyseg=True``, the default) adds its own cuts, and is the whole segmentation
      when ``segments`` is None; ``dyseg=False`` keeps exactly the given segments;
    - exact budget ``N``: segment shares, anchors and salient counts come from
      :func:`~marc.compression.tokens.allocate` (the official floors miss the budget); when
      a segment's valid frames cannot hold its salient share, the rest are salient tokens
      of its collapsed duplicate frames, spread evenly (remainders to the latest);
    - determinism: DPC breaks density ties by the lower index instead of random jitter;
    - output: salient tokens at their own ``(t, h, w)``, each merged anchor at its anchor
      token's ``(t, h, w)``; the two sets are disjoint.

    Args:
        min_segments: DySeg's ``c``, at least this many segments (when the video has as
            many frames).
        cut_similarity: DySeg's ``tau``: adjacent frames less similar than this are cut.
        duplicate_similarity: frames this similar to the next are collapsed into it.
        context_share: ``d``, the anchors' share of a segment's tokens.
        anchor_stride: ``p``, every ``p``-th valid frame (from the last) holds anchors.
        anchor_weight: ``beta``, the least weight an anchor keeps in its merge.
        density_neighbours: ``k`` of DPC-kNN.
        saliency: how salient tokens are scored without ``saliency_scores``.
        dyseg: whether DySeg adds cuts (else only ``segments`` split the video).
    """

    def __init__(
        self,
        min_segments: int = 8,
        cut_similarity: float = 0.84,
        duplicate_similarity: float = 0.95,
        context_share: float = 0.4,
        anchor_stride: int = 4,
        anchor_weight: float = 0.6,
        density_neighbours: int = 4,
        saliency: str = "self_attn",
        dyseg: bool = True,
    ):
        super().__init__()
        for name, value in [
            ("min_segments", min_segments),
            ("anchor_stride", anchor_stride),
            ("density_neighbours", density_neighbours),
        ]:
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        for name, value in [("context_share", context_share), ("anchor_weight", anchor_weight)]:
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        check_choice("saliency", saliency, SALIENCY)
        self.min_segments = min_segments
        self.cut_similarity = cut_similarity
        self.duplicate_similarity = duplicate_similarity
        self.context_share = context_share
        self.anchor_stride = anchor_stride
        self.anchor_weight = anchor_weight
        self.density_neighbours = density_neighbours
        self.saliency = saliency
        self.dyseg = dyseg

    def extra_repr(self) -> str:
        names = (
            "min_segments, cut_similarity, duplicate_similarity, context_share, "
            "anchor_stride, anchor_weight, density_neighbours, saliency, dyseg"
        ).split(", ")
        return ", ".join(f"{name}={getattr(self, name)!r}" for name in names)

    @torch.no_grad()
    def frame_similarity(self, tokens: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of adjacent frames' mean tokens, ``[T - 1]``."""
        features = unit(tokens.detach().to(compute_dtype(tokens.dtype)).mean(dim=1))
        return (features[:-1] * features[1:]).sum(dim=-1)

    def segmentation(self, tokens: torch.Tensor, segments: list[Span] | None = None) -> list[Span]:
        """The spans FastVID compresses one by one: DySeg's cuts plus ``segments``' borders."""
        return self._segments(self.frame_similarity(tokens).cpu(), segments)

    def _segments(self, similarity: torch.Tensor, segments: list[Span] | None) -> list[Span]:
        """:meth:`segmentation` from the adjacent frames' similarity ``[T - 1]``."""
        t = similarity.shape[0] + 1
        cut = torch.zeros(t - 1, dtype=torch.bool)
        for _, end in (segments or [])[:-1]:
            cut[end - 1] = True
        if self.dyseg:
            cut |= similarity < self.cut_similarity
            missing = min(self.min_segments, t) - 1 - int(cut.sum())
            if missing > 0:
                # The least similar adjacent pairs not cut yet, ties to the earliest.
                order = similarity.masked_fill(cut, math.inf).argsort(stable=True)
                cut[order[:missing]] = True
        ends = (cut.nonzero().squeeze(1) + 1).tolist() + [t]
        return list(zip([0] + ends[:-1], ends))

    def compress(
        self,
        tokens: torch.Tensor,
        grid: Grid,
        budget: Budget,
        segments: list[Span] | None = None,
        *,
        saliency_scores: torch.Tensor | None = None,
    ) -> CompressedVideo:
        """Keep exactly ``budget.max_tokens(grid)`` salient tokens and merged anchors."""
        t, h, w = grid
        m = h * w
        scores = saliency(tokens, self.saliency, saliency_scores)
        similarity = self.frame_similarity(tokens).cpu()
        spans = self._segments(similarity, segments)
        lengths = [end - start for start, end in spans]
        shares = allocate(lengths, budget.max_tokens(grid), [n * m for n in lengths])
        salient_counts = torch.zeros(t, dtype=torch.int64)
        anchor_counts = torch.zeros(t, dtype=torch.int64)
        for (start, end), share in zip(spans, shares.tolist()):
            salient, anchors = self.plan(similarity[start : end - 1], share, m)
            salient_counts[start:end], anchor_counts[start:end] = salient, anchors
        values = tokens.to(compute_dtype(tokens.dtype))
        units = unit(values)
        salient = keep_per_frame(scores, salient_counts)
        anchors = self.density_peaks(values, ~salient, anchor_counts)
        flat = torch.arange(t * m, device=tokens.device).view(t, m)
        keep_index, keep_values = [flat[salient]], [values[salient]]
        for start, end in spans:
            for frame in (anchor_counts[start:end] > 0).nonzero().squeeze(1).tolist():
                index, merged = self.merge_into_anchors(
                    values[start:end],
                    units[start:end],
                    salient[start:end],
                    anchors[start + frame],
                    frame,
                )
                keep_index.append(flat[start + frame][index])
                keep_values.append(merged)
        return kept_at(torch.cat(keep_values), torch.cat(keep_index), grid, tokens.dtype)

    def plan(
        self, similarity: torch.Tensor, share: int, per_frame: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Salient and anchor counts ``[L]`` of a segment's ``L`` frames, ``share`` in all.

        ``similarity [L - 1]`` is that of the segment's adjacent frames.
        """
        length = similarity.shape[0] + 1
        frames = torch.arange(length)
        # Valid frames: the last of each run of near-duplicates.
        valid = torch.cat([similarity < self.duplicate_similarity, torch.ones(1, dtype=torch.bool)])
        valid_frames = frames[valid]
        anchor_frames = valid_frames.flip(0)[:: self.anchor_stride]  # latest first
        anchor_cap = per_frame // 2
        wanted = max(int(share * self.context_share), 1) if share >= 2 else 0
        anchor_total = min(wanted, anchor_cap * len(anchor_frames))
        anchors = torch.zeros(length, dtype=torch.int64)
        anchors[anchor_frames] = allocate(
            torch.ones(len(anchor_frames)), anchor_total, [anchor_cap] * len(anchor_frames)
        )
        # Salient tokens: evenly over valid frames, the overflow on collapsed frames.
        salient_total = share - anchor_total
        room = per_frame - anchors[valid_frames]
        on_valid = min(salient_total, int(room.sum()))
        salient = torch.zeros(length, dtype=torch.int64)
        salient[valid_frames] = allocate(torch.ones(len(valid_frames)), on_valid, room)
        collapsed = frames[~valid].flip(0)
        salient[collapsed] = allocate(
            torch.ones(len(collapsed)), salient_total - on_valid, [per_frame] * len(collapsed)
        )
        return salient, anchors

    @torch.no_grad()
    def density_peaks(
        self, values: torch.Tensor, candidates: torch.Tensor, counts: torch.Tensor
    ) -> torch.Tensor:
        """Mask ``[T, M]`` of the ``counts[t]`` DPC-kNN anchors among ``candidates`` per frame."""
        anchors = torch.zeros_like(candidates)
        frames = (counts > 0).nonzero().squeeze(1).to(values.device)
        if len(frames) == 0:
            return anchors
        x = values.detach()[frames]
        allowed = candidates[frames]
        squared = (x * x).sum(dim=-1)
        gram = torch.bmm(x, x.transpose(1, 2))
        distance2 = (squared.unsqueeze(2) + squared.unsqueeze(1) - 2 * gram).clamp_min_(0)
        distance2 /= x.shape[-1]
        distance2.diagonal(dim1=1, dim2=2).zero_()
        blocked = ~allowed.unsqueeze(1)  # columns that are not candidates
        near = distance2.masked_fill(blocked, math.inf)
        k = min(self.density_neighbours, x.shape[1])
        nearest = near.topk(k, dim=-1, largest=False).values
        finite = torch.isfinite(nearest)
        mean = torch.where(finite, nearest, 0).sum(-1) / finite.sum(-1).clamp_min(1)
        density = torch.exp(-mean)
        distance = distance2.sqrt()
        # Token j is denser than i when its density is higher, or equal with a lower index.
        index = torch.arange(x.shape[1], device=x.device)
        denser = (density.unsqueeze(1) > density.unsqueeze(2)) | (
            (density.unsqueeze(1) == density.unsqueeze(2))
            & (index.view(1, 1, -1) < index.view(1, -1, 1))
        )
        denser &= allowed.unsqueeze(1)
        pair_ok = allowed.unsqueeze(1) & allowed.unsqueeze(2)
        largest = distance.masked_fill(~pair_ok, 0).flatten(1).max(dim=1).values
        delta = distance.masked_fill(~denser, math.inf).min(dim=-1).values
        delta = torch.where(torch.isfinite(delta), delta, largest.unsqueeze(1))
        score = (density * delta).masked_fill(~allowed, -math.inf)
        anchors[frames] = keep_per_frame(score, counts[frames.cpu()])
        return anchors

    def merge_into_anchors(
        self,
        values: torch.Tensor,
        units: torch.Tensor,
        salient: torch.Tensor,
        anchors: torch.Tensor,
        frame: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """DTM for one anchor frame: its anchors absorb the segment's other non-salient tokens.

        ``values``, ``units`` ``[L, M, D]`` and ``salient [L, M]`` are the segment's,
        ``anchors [M]`` the anchor mask of its frame ``frame`` (counted in the segment).
        Returns the anchors' indices in their frame ``[c]`` and the merged anchors ``[c, D]``.
        """
        length, m, dim = values.shape
        index = anchors.nonzero().squeeze(1)
        joined = ~salient
        joined[frame, index] = False
        sums, counts = nearest_sums(
            values.reshape(1, length * m, dim),
            units.reshape(1, length * m, dim),
            units[frame, index].unsqueeze(0),
            joined.reshape(1, -1),
        )
        counts = counts[0].unsqueeze(-1)
        weight = (1 / (counts + 1)).clamp_min(self.anchor_weight)  # 1 when none joined
        return index, weight * values[frame, index] + (1 - weight) * sums[0] / counts.clamp_min(1)

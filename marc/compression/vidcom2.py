"""VidCom²: frame budgets by uniqueness, then the most distinctive tokens of each frame."""

from __future__ import annotations

import torch

from marc.compression.base import Budget, CompressedVideo, Grid, Span, TokenCompressor
from marc.compression.groups import compute_dtype
from marc.compression.tokens import allocate, keep_per_frame, kept_mask, unit

# The official code's kernel widths, 2^-3 ... 2^1.
ALPHAS = (0.125, 0.25, 0.5, 1.0, 2.0)


class VidCom2(TokenCompressor):
    """VidCom² (Video Compression Commander), training-free token pruning.

    Xuyang Liu, Yiyu Wang, Junpeng Ma, Linfeng Zhang. "Video Compression Commander:
    Plug-and-Play Inference Acceleration for Video Large Language Models." EMNLP 2025,
    arXiv 2505.14454 (official code: github.com/xuyang-liu16/VidCom2). Implemented as the
    official code computes it: multi-scale Gaussian-kernel similarities on a channel
    subset (summaries of the paper describe plain cosine similarities).

    Algorithm, on the whole video (or on each segment with ``per_segment``):

    1. keep the ``D // 2`` channels of *lowest* variance over all tokens (the official
       code's choice) and normalise each token on them to unit length, ``s``;
    2. ``kv`` / ``kf``: the similarity of each token to the video's and to its frame's mean
       ``s``, ``K(s, c) = sum_a exp(-|s - c|^2 / (2a))`` over ``a`` in 1/8 ... 2;
    3. frame uniqueness ``u_t = -mean kv``; ``p = softmax((u - max u) / tau)``; frame shares
       ``r (1 + p_t - mean p)``, at most 1, with ``r`` the kept fraction: a frame unlike the
       rest of the video gets up to twice the others' share;
    4. in every frame keep the tokens with the lowest ``kv + kf`` (unlike both the video
       and the frame), unmodified, at their own ``(t, h, w)``.

    Defaults are the official ones: ``tau=0.01``, the kernel widths above, half the
    channels. Adaptation to marc: a frame is one temporal group of merged Qwen2.5-VL
    tokens (as in the official Qwen2.5-VL port). The official per-frame counts
    ``max(1, round(share * M))`` miss the budget; here the shares are turned into exactly
    ``N`` counts by :func:`~marc.compression.tokens.allocate` (capped at ``M``), every
    frame keeps at least one token when ``N >= T``, and below that the ``N`` most unique
    frames keep one each. Ties go to the lower index.

    Args:
        tau: temperature of the frame-uniqueness softmax.
        channel_ratio: share of the channels (lowest variance first) the scores use.
        per_segment: with ``segments``, run the whole method on each segment alone, with a
            share of ``N`` proportional to its length, so that "unique" means unique within
            its clip; otherwise (the default) segments are ignored.
    """

    def __init__(self, tau: float = 0.01, channel_ratio: float = 0.5, per_segment: bool = False):
        super().__init__()
        if tau <= 0:
            raise ValueError(f"tau must be positive, got {tau}")
        if not 0.0 < channel_ratio <= 1.0:
            raise ValueError(f"channel_ratio must be in (0, 1], got {channel_ratio}")
        self.tau = tau
        self.channel_ratio = channel_ratio
        self.per_segment = per_segment

    def extra_repr(self) -> str:
        return f"tau={self.tau}, channel_ratio={self.channel_ratio}, per_segment={self.per_segment}"

    def compress(
        self, tokens: torch.Tensor, grid: Grid, budget: Budget, segments: list[Span] | None = None
    ) -> CompressedVideo:
        """Keep exactly ``budget.max_tokens(grid)`` tokens, chosen frame by frame."""
        t, h, w = grid
        total = budget.max_tokens(grid)
        spans = segments if self.per_segment and segments else [(0, t)]
        lengths = [end - start for start, end in spans]
        shares = allocate(lengths, total, [n * h * w for n in lengths]).tolist()
        mask = torch.cat(
            [self.keep_mask(tokens[s:e], n) for (s, e), n in zip(spans, shares)], dim=0
        )
        return kept_mask(tokens, mask, grid)

    @torch.no_grad()
    def scores(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame uniqueness ``u [T]`` and token scores ``kv + kf [T, M]`` (lower = kept first)."""
        t, m, d = tokens.shape
        x = tokens.detach().flatten(0, 1).to(compute_dtype(tokens.dtype))
        channels = max(1, int(d * self.channel_ratio))
        variance = (x - x.mean(dim=0)).square_().mean(dim=0)  # 2x faster than x.var(0)
        low = variance.argsort(stable=True)[:channels].sort().values
        s = unit(x.index_select(1, low)).view(t, m, channels)
        sq = (s * s).sum(-1)  # 1, or 0 for a zero token
        video_centre = s.mean(dim=(0, 1))
        frame_centres = s.mean(dim=1)
        to_video = sq + video_centre.square().sum() - 2 * (s @ video_centre)
        to_frame = (
            sq
            + frame_centres.square().sum(-1, keepdim=True)
            - 2 * (s @ frame_centres.unsqueeze(-1)).squeeze(-1)
        )
        kv, kf = gaussian_kernel(to_video), gaussian_kernel(to_frame)
        return -kv.mean(dim=1), kv + kf

    def frame_counts(self, uniqueness: torch.Tensor, total: int, per_frame: int) -> torch.Tensor:
        """Exactly ``total`` tokens split over frames by VidCom²'s uniqueness shares."""
        t = uniqueness.shape[0]
        if total < t:
            # Too few tokens for every frame: the most unique frames keep one each.
            counts = torch.zeros(t, dtype=torch.int64)
            counts[uniqueness.cpu().argsort(descending=True, stable=True)[:total]] = 1
            return counts
        p = ((uniqueness - uniqueness.max()) / self.tau).softmax(dim=0)
        rate = total / (t * per_frame)
        shares = (rate * (1 + p - p.mean())).clamp(max=1.0)
        counts = allocate(shares, total, [per_frame] * t)
        # At least one token per frame (the official max(1, ...)), taken from the largest.
        for _ in range(int((counts == 0).sum())):
            counts[counts.argmax()] -= 1
        return counts.clamp_min(1)

    def keep_mask(self, tokens: torch.Tensor, total: int) -> torch.Tensor:
        """Mask ``[T, M]`` of the ``total`` tokens VidCom² keeps from ``tokens [T, M, D]``."""
        uniqueness, token_scores = self.scores(tokens)
        counts = self.frame_counts(uniqueness, total, tokens.shape[1])
        return keep_per_frame(token_scores, counts, largest=False)


def gaussian_kernel(squared_distance: torch.Tensor) -> torch.Tensor:
    """``sum_a exp(-d^2 / (2a))`` over VidCom²'s kernel widths ``a``."""
    return sum(torch.exp(-squared_distance.clamp_min(0) / (2 * a)) for a in ALPHAS)

"""VisionZip: the most attended tokens kept as they are, the rest merged into a few."""

from __future__ import annotations

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

SCOPES = ("frame", "video")
CONTEXT_MERGES = ("mean", "target_plus_mean")


class VisionZip(TokenCompressor):
    """VisionZip: dominant tokens by attention, contextual tokens by merging the rest.

    Senqiao Yang, Yukang Chen, Zhuotao Tian, Chengyao Wang, Jingyao Li, Bei Yu, Jiaya Jia.
    "VisionZip: Longer is Better but Not Necessary in Vision Language Models." CVPR 2025,
    arXiv 2412.04467 (official code: github.com/dvlab-research/VisionZip).

    Algorithm, per frame (``scope="frame"``) of ``n`` kept tokens:

    1. *dominant*: the ``n - c`` tokens that receive the most attention, kept unmodified;
    2. *contextual*: of the other tokens, in raster order, every ``step``-th
       (``step = max(1, remaining // c)``, the first ``c`` of them) is a target; every
       other remaining token joins its most similar target (cosine) and each target
       becomes the average of itself and the tokens that joined it.

    Defaults: ``c = round(n * 10/64)`` (the official 54 dominant + 10 contextual split; at
    least one contextual token when ``n >= 2``), ``scope="frame"``, ``saliency="self_attn"``,
    ``context_merge="mean"``.

    Adaptations to Qwen2.5-VL's merged tokens. The official attention is the CLS token's in
    the vision tower's second-to-last layer; Qwen2.5-VL's tower has no CLS token and a
    compressor only sees its output tokens, so by default a token's score is the attention
    it receives in a single-head softmax self-attention of its frame's tokens, diagonal
    masked (:func:`~marc.compression.tokens.saliency`; ``"norm"`` and ``"mean_query"`` are
    the alternatives). A caller that has real encoder attention (e.g. last-block
    attention received, pooled over each 2x2 merge unit) can pass it to :meth:`compress`
    as ``saliency_scores [T, H*W]``. The official code compares keys and merges hidden
    states; here both are the merged tokens. It merges by ``target + mean(joined)``
    (``context_merge="target_plus_mean"``, which roughly doubles the token's norm); the
    default ``"mean"`` is the paper's average. Frames get equal shares of the exact budget
    ``N`` (:func:`~marc.compression.tokens.allocate`, remainders to the earliest frames).
    ``scope="video"`` (the LightCompress Qwen2.5-VL port) picks the dominant tokens over the
    whole video and spaces the targets over each segment's remaining tokens, so there
    ``segments`` bound the merges (contextual tokens split over segments by length);
    with ``scope="frame"`` segments are ignored. Dominant tokens and contextual tokens
    (at their target's ``(t, h, w)``) keep original positions, all distinct.

    Args:
        contextual_ratio: share of the kept tokens that are contextual, in ``[0, 1)``.
        scope: ``"frame"`` (budget split over frames) or ``"video"``.
        saliency: how dominant tokens are scored when no ``saliency_scores`` are passed.
        context_merge: ``"mean"`` or the official code's ``"target_plus_mean"``.
    """

    def __init__(
        self,
        contextual_ratio: float = 10 / 64,
        scope: str = "frame",
        saliency: str = "self_attn",
        context_merge: str = "mean",
    ):
        super().__init__()
        if not 0.0 <= contextual_ratio < 1.0:
            raise ValueError(f"contextual_ratio must be in [0, 1), got {contextual_ratio}")
        check_choice("scope", scope, SCOPES)
        check_choice("saliency", saliency, SALIENCY)
        check_choice("context_merge", context_merge, CONTEXT_MERGES)
        self.contextual_ratio = contextual_ratio
        self.scope = scope
        self.saliency = saliency
        self.context_merge = context_merge

    def extra_repr(self) -> str:
        return (
            f"contextual_ratio={self.contextual_ratio}, scope={self.scope!r}, "
            f"saliency={self.saliency!r}, context_merge={self.context_merge!r}"
        )

    def contextual_count(self, kept: int) -> int:
        """How many of ``kept`` tokens are contextual (none when one is kept)."""
        if kept < 2 or self.contextual_ratio == 0:
            return 0
        return min(kept - 1, max(1, int(kept * self.contextual_ratio + 0.5)))

    def compress(
        self,
        tokens: torch.Tensor,
        grid: Grid,
        budget: Budget,
        segments: list[Span] | None = None,
        *,
        saliency_scores: torch.Tensor | None = None,
    ) -> CompressedVideo:
        """Keep exactly ``budget.max_tokens(grid)`` dominant and contextual tokens."""
        t, h, w = grid
        m, total = h * w, budget.max_tokens(grid)
        scores = saliency(tokens, self.saliency, saliency_scores)
        values = tokens.to(compute_dtype(tokens.dtype))
        units = unit(values)
        if self.scope == "frame":
            kept = allocate(torch.ones(t), total, [m] * t)
            context = torch.tensor([self.contextual_count(n) for n in kept.tolist()])
            dominant = keep_per_frame(scores, kept - context)
            jobs = [(0, t, context)]
        else:
            context_total = self.contextual_count(total)
            order = scores.flatten().argsort(descending=True, stable=True)
            dominant = torch.zeros(t * m, dtype=torch.bool, device=tokens.device)
            dominant[order[: total - context_total]] = True
            dominant = dominant.view(t, m)
            spans = segments or [(0, t)]
            remaining = [int((~dominant[s:e]).sum()) for s, e in spans]
            shares = allocate([e - s for s, e in spans], context_total, remaining)
            jobs = [(s, e, shares[i : i + 1]) for i, (s, e) in enumerate(spans)]
        flat = torch.arange(t * m, device=tokens.device).view(t, m)
        keep_index, keep_values = [flat[dominant]], [values[dominant]]
        for start, end, context in jobs:
            if int(context.max()) == 0:
                continue
            # Frame scope: one row per frame; video scope: one row per segment.
            rows = end - start if self.scope == "frame" else 1
            index, valid, merged = self.contextual_tokens(
                values[start:end].reshape(rows, -1, values.shape[-1]),
                units[start:end].reshape(rows, -1, values.shape[-1]),
                dominant[start:end].reshape(rows, -1),
                context.to(tokens.device),
            )
            keep_index.append(flat[start:end].reshape(rows, -1).gather(1, index)[valid])
            keep_values.append(merged[valid])
        return kept_at(torch.cat(keep_values), torch.cat(keep_index), grid, tokens.dtype)

    def contextual_tokens(
        self,
        values: torch.Tensor,
        units: torch.Tensor,
        dominant: torch.Tensor,
        counts: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``counts[b]`` contextual tokens from the non-dominant tokens of each row ``b``.

        ``values``, ``units`` ``[B, n, D]``, ``dominant [B, n]``. Returns the targets' indices
        in their row ``[B, c]`` (``c = max(counts)``), which of them exist ``[B, c]`` and the
        contextual tokens ``[B, c, D]``.
        """
        remaining = ~dominant
        rank = remaining.long().cumsum(dim=1) - 1  # place among the row's remaining tokens
        counts = counts.view(-1, 1)
        step = (remaining.sum(dim=1, keepdim=True) // counts.clamp_min(1)).clamp_min(1)
        is_target = remaining & (rank % step == 0) & (rank // step < counts)
        width = int(counts.max())
        rows, cols = is_target.nonzero(as_tuple=True)
        index = torch.zeros(values.shape[0], width, dtype=torch.long, device=values.device)
        index[rows, (rank // step)[rows, cols]] = cols
        valid = torch.arange(width, device=values.device) < counts
        gather = index.unsqueeze(-1).expand(-1, -1, values.shape[-1])
        sums, count = nearest_sums(
            values, units, units.gather(1, gather), remaining & ~is_target, valid
        )
        targets, count = values.gather(1, gather), count.unsqueeze(-1)
        if self.context_merge == "mean":
            return index, valid, (targets + sums) / (1 + count)
        return index, valid, targets + sums / count.clamp_min(1)

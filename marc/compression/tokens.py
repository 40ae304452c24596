"""Shared pieces of the token-level compressors: budget splits, per-frame selection, scores.

A *frame* here is one temporal group of ``tokens [T, M, D]`` (``M = H*W``), as in the
official Qwen2.5-VL ports of VidCom² and FastVID. Tokens are addressed by their flat index
``t*M + m`` (time-major, row-major), so index order is the order the language model reads.

- :func:`allocate` splits an exact number of tokens over frames or segments (largest
  remainders, caps);
- :func:`keep_per_frame` marks the ``k_t`` best-scored tokens of every frame;
- :func:`saliency` scores how much attention each token of a frame draws, from the tokens
  alone (the Qwen2.5-VL vision tower has no CLS token);
- :func:`nearest_sums` assigns tokens to their most similar target (VisionZip, FastVID);
- :func:`unit`, :func:`span_ids`, :func:`kept_at` and :func:`kept_mask` are the small rest.

Scores are computed in float32 at least (:func:`~marc.compression.groups.compute_dtype`)
and detached; kept values are sliced or averaged from the input, so gradients reach it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from marc.compression.base import CompressedVideo, Grid, Span, kept_tokens
from marc.compression.groups import compute_dtype

SALIENCY = ("self_attn", "mean_query", "norm")


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    """A ValueError naming the setting when ``value`` is not one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def allocate(weights, total: int, caps) -> torch.Tensor:
    """Split ``total`` into non-negative integers ``n`` with ``sum(n) == total``, ``n <= caps``.

    ``n`` is proportional to ``weights`` (non-negative; all zero means equal shares):
    an entry whose proportional share reaches its cap gets the cap and the rest is shared
    again over the others (water-filling), then the ideal shares are floored and the
    leftover units go to the largest fractional parts, ties to the lowest index. It is
    deterministic, and equal weights with equal caps give shares that differ by at most 1.
    Returns a long tensor on the CPU; a ValueError when ``total`` exceeds ``sum(caps)``.
    """
    weights = torch.as_tensor(weights, dtype=torch.float64).flatten().cpu()
    caps = torch.as_tensor(caps, dtype=torch.int64).flatten().cpu().clamp_min(0)
    if weights.shape != caps.shape:
        raise ValueError(f"weights {tuple(weights.shape)} and caps {tuple(caps.shape)} differ")
    if bool((weights < 0).any()) or not bool(torch.isfinite(weights).all()):
        raise ValueError("weights must be finite and non-negative")
    if total < 0 or total > int(caps.sum()):
        raise ValueError(f"cannot split {total} over caps summing to {int(caps.sum())}")
    counts = torch.zeros_like(caps)
    open_ = caps > 0
    left = total
    while left > 0:
        share = torch.where(open_, weights, 0.0)
        if float(share.sum()) <= 0.0:
            share = open_.double()
        ideal = left * share / share.sum()
        room = caps - counts
        full = open_ & (ideal >= room)
        if bool(full.any()):
            # Entries whose share reaches their cap take it; share what is left again.
            left -= int(room[full].sum())
            counts[full] = caps[full]
            open_ &= ~full
            continue
        base = ideal.floor().long()
        counts += base
        extra = left - int(base.sum())
        remainder = torch.where(open_, ideal - base, -1.0)
        # Stable sort: equal remainders go to the lowest index first.
        counts[remainder.argsort(descending=True, stable=True)[:extra]] += 1
        left = 0
    return counts


def keep_per_frame(scores: torch.Tensor, counts, largest: bool = True) -> torch.Tensor:
    """Boolean mask ``[T, M]`` of the ``counts[t]`` highest (or lowest) ``scores[t]`` per row.

    Ties go to the lower index, so the mask depends only on the scores and the counts.
    """
    counts = torch.as_tensor(counts, dtype=torch.int64, device=scores.device).view(-1, 1)
    order = scores.argsort(dim=1, descending=largest, stable=True)
    ranks = torch.empty_like(order).scatter_(
        1, order, torch.arange(scores.shape[1], device=scores.device).expand_as(order)
    )
    return ranks < counts


@torch.no_grad()
def unit(tokens: torch.Tensor) -> torch.Tensor:
    """Detached unit-length copies of ``tokens [..., D]`` in float32 at least (zeros stay 0)."""
    return F.normalize(tokens.detach().to(compute_dtype(tokens.dtype)), dim=-1, eps=1e-12)


@torch.no_grad()
def saliency(
    tokens: torch.Tensor, mode: str = "self_attn", given: torch.Tensor | None = None
) -> torch.Tensor:
    """How much attention each token of a frame draws, ``[T, M]``, from ``tokens [T, M, D]``.

    ``given`` (``[T, M]``, e.g. the vision tower's own attention) is checked and returned
    instead when passed. Otherwise, by ``mode``:

    ``"self_attn"``: the mean attention each token receives in a single-head softmax
    self-attention of its frame's tokens (queries = keys = the tokens, logits scaled by
    ``1/sqrt(D)``) with the diagonal masked, so a token does not vote for itself; each
    frame's scores sum to 1. Without the mask, high-norm tokens attend almost only to
    themselves and every score tends to ``1/M``.
    ``"mean_query"``: the attention of the frame's mean token (a pseudo-CLS query, as
    FastVID's Qwen2.5-VL code uses in the vision tower) to each token; sums to 1 too.
    ``"norm"``: the token's L2 norm.
    """
    check_choice("saliency", mode, SALIENCY)
    t, m, d = tokens.shape
    if given is not None:
        return check_saliency(given, (t, m))
    x = tokens.detach().to(compute_dtype(tokens.dtype))
    if mode == "norm":
        return torch.linalg.vector_norm(x, dim=-1)
    if mode == "mean_query":
        logits = (x @ x.mean(1, keepdim=True).transpose(1, 2)).squeeze(-1) / math.sqrt(d)
        return logits.softmax(dim=-1)
    if m == 1:
        return x.new_ones(t, 1)
    logits = torch.bmm(x, x.transpose(1, 2)) / math.sqrt(d)
    logits.diagonal(dim1=1, dim2=2).fill_(-math.inf)
    return logits.softmax(dim=-1).mean(dim=1)


def check_saliency(scores: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """``scores`` as a detached float ``[T, H*W]`` tensor; a ValueError otherwise."""
    if not isinstance(scores, torch.Tensor) or tuple(scores.shape) != tuple(shape):
        got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ValueError(f"saliency must be a [T, H*W] = {list(shape)} tensor, got {got}")
    scores = scores.detach().to(compute_dtype(scores.dtype))
    if not bool(torch.isfinite(scores).all()):
        raise ValueError("saliency scores must be finite")
    return scores


def nearest_sums(
    values: torch.Tensor,
    units: torch.Tensor,
    unit_targets: torch.Tensor,
    joined: torch.Tensor | None = None,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Assign tokens to their most similar target and sum the tokens each target gets.

    ``values [B, n, D]`` are summed; ``units [B, n, D]`` and ``unit_targets [B, c, D]``
    (unit length) are compared by cosine. ``joined [B, n]`` (bool) says which tokens take
    part, ``valid [B, c]`` which targets exist (rows may have fewer than ``c``). Ties go to
    the lowest target. Returns ``sums [B, c, D]`` and ``counts [B, c]``.
    """
    similarity = torch.bmm(units, unit_targets.transpose(1, 2))
    if valid is not None:
        similarity = similarity.masked_fill(~valid.unsqueeze(1), -math.inf)
    choice = F.one_hot(similarity.argmax(dim=-1), unit_targets.shape[1]).to(values.dtype)
    if joined is not None:
        choice = choice * joined.unsqueeze(-1)
    return torch.bmm(choice.transpose(1, 2), values), choice.sum(dim=1)


def span_ids(segments: list[Span] | None, num_frames: int, device=None) -> torch.Tensor:
    """The segment index of every frame, long ``[T]`` (all 0 when ``segments`` is None)."""
    ids = torch.zeros(num_frames, dtype=torch.int64, device=device)
    for index, (start, end) in enumerate(segments or []):
        ids[start:end] = index
    return ids


def kept_at(values: torch.Tensor, flat_index: torch.Tensor, grid: Grid, dtype) -> CompressedVideo:
    """Token-level video of ``values [N, D]`` at flat indices ``t*H*W + h*W + w`` of ``grid``."""
    _, h, w = grid
    flat_index = flat_index.long()
    positions = torch.stack((flat_index // (h * w), (flat_index // w) % h, flat_index % w), dim=1)
    return kept_tokens(values.to(dtype), positions, grid)


def kept_mask(tokens: torch.Tensor, mask: torch.Tensor, grid: Grid) -> CompressedVideo:
    """Token-level video of those of ``tokens [T, M, D]`` where ``mask [T, M]`` is set."""
    flat_index = mask.flatten().nonzero().squeeze(1)
    return kept_at(tokens.flatten(0, 1)[flat_index], flat_index, grid, tokens.dtype)

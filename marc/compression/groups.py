"""Operations on whole temporal groups: per-position cosine similarity and merges of two groups.

A group is the ``[H*W, D]`` slice of one temporal step. Two groups are similar when the
tokens at the same spatial position point the same way: the similarity is the mean over the
``H*W`` positions of the cosine similarity of those tokens (the MARC paper's frame metric).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Same floor as torch.nn.functional.normalize: a zero token has cosine 0 with everything.
_EPS = 1e-12


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Dtype to merge and compare in: at least float32, so bf16/fp16 merges do not drift."""
    return torch.promote_types(dtype, torch.float32)


@torch.no_grad()
def inverse_norms(groups: torch.Tensor) -> torch.Tensor:
    """``1 / max(|token|, eps)`` for groups ``[..., H*W, D]`` -> ``[..., H*W]``, detached."""
    return torch.linalg.vector_norm(groups.detach(), dim=-1).clamp_min(_EPS).reciprocal()


@torch.no_grad()
def normalize_groups(groups: torch.Tensor) -> torch.Tensor:
    """Unit-length tokens of groups ``[..., H*W, D]`` (zero tokens stay zero), detached."""
    return F.normalize(groups.detach(), dim=-1, eps=_EPS)


@torch.no_grad()
def group_similarity(
    a: torch.Tensor, b: torch.Tensor, inv_a: torch.Tensor, inv_b: torch.Tensor
) -> torch.Tensor:
    """Mean per-position cosine similarity of groups ``a``, ``b`` ``[H*W, D]`` (0-d tensor).

    ``inv_a`` and ``inv_b`` are their :func:`inverse_norms`. Comparing one pair at a time
    (instead of normalised copies of the whole video) avoids large temporaries, and one
    formula for every pair keeps equal pairs exactly equal, so ties stay ties.
    """
    # (a * b).sum(-1) measured ~4x faster than linalg.vecdot on CPU for uncached groups.
    return ((a.detach() * b.detach()).sum(-1) * inv_a * inv_b).mean()


MERGE_RULES = ("pairwise", "size_weighted")


def merge_pair(
    mean_a: torch.Tensor,
    count_a: int,
    mean_b: torch.Tensor,
    count_b: int,
    rule: str = "size_weighted",
) -> torch.Tensor:
    """Two groups, holding ``count_a`` and ``count_b`` original groups, merged into one.

    ``"size_weighted"``: the mean of all original groups the two hold;
    ``"pairwise"``: ``(a + b) / 2`` whatever they hold (MARC's rule).
    """
    weight = 0.5 if rule == "pairwise" else count_b / (count_a + count_b)
    # lerp rather than (ca*a + cb*b) / (ca+cb): merging two equal groups returns them bit-exactly.
    return torch.lerp(mean_a, mean_b, weight)

"""Faster CPU paths for the Qwen2.5-VL vision tower, numerically equivalent to transformers'.

Two costs dominate the tiny vision tower on a CPU, both Python overhead rather than maths:

- attention: for implementations other than flash attention, transformers' vision
  attention calls attention once per window (a Python loop over ``cu_seqlens``: about a
  thousand calls for a batch of sixteen 64-frame videos). Flash-style implementations are
  instead handed the whole sequence with ``cu_seqlens``. :func:`chunked_attention` is such
  an implementation, registered through transformers' public ``AttentionInterface`` under
  the name ``"marc_flash_chunks"`` (the name must contain "flash" for transformers to pass
  ``cu_seqlens``): windows of equal length, as every window of the embedded default is,
  go through one batched ``scaled_dot_product_attention``; unequal ones one call each, as
  transformers does;
- the patch embedding: a ``Conv3d`` whose kernel equals its stride, which
  :class:`PatchMatmul` computes as the equivalent matrix product with the same weights.

:func:`speed_up_vision` applies both to one model's vision tower (its config and its patch
embedding module), so transformers itself is never modified and ``save_pretrained`` /
``state_dict`` stay exactly those of transformers' model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AttentionInterface

ATTENTION_NAME = "marc_flash_chunks"


def chunked_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    scaling: float | None = None,
    dropout: float = 0.0,
    cu_seq_lens_q: torch.Tensor | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Attention within each ``cu_seq_lens_q`` window of ``[1, heads, S, d]`` inputs.

    Returns ``[1, S, heads, d]`` like transformers' attention functions.
    """
    _, heads, length, dim = query.shape
    if cu_seq_lens_q is None:
        cu_seq_lens_q = torch.tensor([0, length], device=query.device)
    lengths = (cu_seq_lens_q[1:] - cu_seq_lens_q[:-1]).tolist()
    dropout = dropout if module.training else 0.0
    if len(set(lengths)) == 1:
        # [1, heads, S, d] -> [windows, heads, window, d]: one batched call.
        windows = len(lengths)

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(heads, windows, lengths[0], dim).transpose(0, 1)

        out = F.scaled_dot_product_attention(
            split(query), split(key), split(value), dropout_p=dropout, scale=scaling
        )
        out = out.transpose(0, 1).reshape(1, heads, length, dim)
    else:
        parts = [
            F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=scaling)
            for q, k, v in zip(*(t.split(lengths, dim=2) for t in (query, key, value)))
        ]
        out = torch.cat(parts, dim=2)
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(ATTENTION_NAME, chunked_attention)


class PatchMatmul(nn.Conv3d):
    """A ``Conv3d`` with kernel = stride computed as a matrix product (same parameters)."""

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        flat = patches.reshape(patches.shape[0], -1)
        out = flat @ self.weight.reshape(self.out_channels, -1).t()
        if self.bias is not None:
            out = out + self.bias
        return out.view(patches.shape[0], self.out_channels, 1, 1, 1)


def speed_up_vision(model: nn.Module) -> None:
    """Give a Qwen2.5-VL model's vision tower the two paths above (its numbers unchanged)."""
    visual = model.model.visual
    if visual.config._attn_implementation in ("sdpa", "eager", None):
        visual.config._attn_implementation = ATTENTION_NAME
    proj = visual.patch_embed.proj
    if type(proj) is nn.Conv3d and list(proj.kernel_size) == list(proj.stride):
        proj.__class__ = PatchMatmul  # same parameters, same state_dict keys

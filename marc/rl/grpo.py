"""GRPO maths: group advantages, the clipped surrogate loss with a k3 KL penalty, masks.

Written plainly, after TRL's ``GRPOTrainer._compute_loss``. For one batch of B completions
(num_prompts groups of G, contiguous) with per-token log-probs ``[B, L]``:

    A_i       = (r_i - mean(r_group)) / (std(r_group) + eps)         per completion
    ratio_t   = exp(logp_t - old_logp_t)                              per token
    loss_t    = -min(ratio_t * A_i, clip(ratio_t, 1 - eps_low, 1 + eps_high) * A_i)
                + beta * KL_t,   KL_t = exp(ref_t - logp_t) - (ref_t - logp_t) - 1   (k3)

and the loss averages ``loss_t`` over the completion tokens given by the mask.

Choices and simplifications, all deliberate:

- The group std is the population std (``unbiased=False``), so a half-right group gets
  advantages of +-1 whatever G is and a group of one gets 0, not NaN. TRL uses the
  unbiased std (``torch.std``), which scales advantages by sqrt((G - 1) / G).
- A group whose rewards are all equal gets advantages of exactly 0 (set explicitly, so
  float rounding of the mean cannot leak tiny non-zero values).
- Every token of a completion shares that completion's advantage; no value function, no
  per-token credit assignment, no reward whitening across the batch.
- Loss normalisation: ``loss_type="grpo"`` (default, the GRPO paper and TRL's "grpo") takes
  the mean over each sequence's tokens, then the mean over sequences, so every completion
  weighs the same; ``loss_type="dapo"`` (DAPO's token-level loss) divides the sum over all
  tokens of the batch by their count, so long completions weigh more. Here the count is
  this batch's tokens; under DDP each process normalises by its own count (TRL's "bnpo"),
  not by the global count across processes.
- Old log-probs: with mu > 1 optimisation steps per generated batch, pass the log-probs
  computed at sampling time as ``old_logprobs`` for every step. ``old_logprobs=None``
  means mu = 1: the current log-probs, detached, so the ratio is 1 and only its gradient
  counts.
- The reference policy is frozen and the KL (k3 estimator, always >= 0) is a per-token
  loss term, not a reward term. ``beta=0`` or ``ref_logprobs=None`` drops it.
- Defaults: beta = 0.04, eps_low = eps_high = 0.2 (the Video-R1 line of work). No entropy
  bonus, no length penalty, no importance-sampling correction for a separate sampler,
  no clamp of the log-ratio: a non-finite value raises ``FloatingPointError`` instead.
- Gradients flow only through ``logprobs``; old, reference log-probs and advantages are
  detached here. Values at masked-out positions are ignored, even when non-finite.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

LossType = Literal["grpo", "dapo"]


def check_finite(name: str, tensor: torch.Tensor) -> None:
    """Raise ``FloatingPointError`` naming ``name`` when ``tensor`` has NaN or inf values."""
    finite = torch.isfinite(tensor)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise FloatingPointError(
            f"{name} has {bad} non-finite value(s) (NaN or inf) out of {tensor.numel()}"
        )


def group_advantages(
    rewards: torch.Tensor, scale_std: bool = True, eps: float = 1e-4
) -> torch.Tensor:
    """Advantages ``[num_prompts, G]``: rewards minus the group mean, over the std if asked."""
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [num_prompts, G], got shape {tuple(rewards.shape)}")
    check_finite("rewards", rewards)
    rewards = rewards.float()
    advantages = rewards - rewards.mean(dim=1, keepdim=True)
    if scale_std:
        advantages = advantages / (rewards.std(dim=1, unbiased=False, keepdim=True) + eps)
    all_equal = (rewards == rewards[:, :1]).all(dim=1, keepdim=True)
    return torch.where(all_equal, torch.zeros_like(advantages), advantages)


def zero_advantage_fraction(rewards: torch.Tensor) -> float:
    """Fraction of groups (rows of ``[num_prompts, G]``) whose rewards are all equal."""
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [num_prompts, G], got shape {tuple(rewards.shape)}")
    if rewards.shape[0] == 0:
        return 0.0
    all_equal = (rewards == rewards[:, :1]).all(dim=1)
    return float(all_equal.float().mean())


def kl_k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(policy || reference): exp(d) - d - 1, d = ref - logp."""
    delta = ref_logprobs - logprobs
    return torch.exp(delta) - delta - 1


def completion_mask(
    token_ids: torch.Tensor, eos_token_id: int | Sequence[int], pad_token_id: int | None = None
) -> torch.Tensor:
    """Mask ``[B, L]`` (int64): 1 up to and including the first EOS, 0 after; 1s if no EOS.

    With ``pad_token_id``, pad tokens are 0 as well (a completion cut at the length limit
    and right-padded has no EOS), except when the pad id is the EOS that ends a completion.
    """
    if token_ids.dim() != 2:
        raise ValueError(f"token_ids must be [B, L], got shape {tuple(token_ids.shape)}")
    eos_ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
    is_eos = torch.isin(
        token_ids, torch.tensor(eos_ids, dtype=token_ids.dtype, device=token_ids.device)
    )
    length = token_ids.shape[1]
    positions = torch.arange(length, device=token_ids.device).expand_as(token_ids)
    first_eos = torch.where(is_eos, positions, length).min(dim=1, keepdim=True).values
    mask = positions <= first_eos
    if pad_token_id is not None:
        mask &= (token_ids != pad_token_id) | (positions == first_eos)
    return mask.long()


@dataclass
class GRPOLossOutput:
    """The loss to backpropagate and detached statistics for logging (token-level means)."""

    loss: torch.Tensor
    policy_loss: torch.Tensor  # the clipped surrogate part of the loss
    kl: torch.Tensor  # mean per-token k3 KL to the reference (0 without one)
    clip_fraction: torch.Tensor  # share of tokens where the clipped term is the one used
    low_clip_fraction: torch.Tensor  # ratio < 1 - eps_low with A < 0
    high_clip_fraction: torch.Tensor  # ratio > 1 + eps_high with A > 0
    ratio_mean: torch.Tensor

    def metrics(self) -> dict[str, torch.Tensor]:
        """Every field, detached, keyed by name (for ``self.log_dict``)."""
        return {name: value.detach() for name, value in vars(self).items()}


def grpo_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor | None,
    ref_logprobs: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    beta: float = 0.04,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
    loss_type: LossType = "grpo",
) -> GRPOLossOutput:
    """Clipped GRPO surrogate plus beta * k3 KL, averaged over masked completion tokens."""
    if loss_type not in ("grpo", "dapo"):
        raise ValueError(f"loss_type must be 'grpo' or 'dapo', got {loss_type!r}")
    if logprobs.dim() != 2:
        raise ValueError(f"logprobs must be [B, L], got shape {tuple(logprobs.shape)}")
    for label, other in (("old_logprobs", old_logprobs), ("ref_logprobs", ref_logprobs)):
        if other is not None and other.shape != logprobs.shape:
            raise ValueError(
                f"{label} shape {tuple(other.shape)} != logprobs shape {tuple(logprobs.shape)}"
            )
    if mask.shape != logprobs.shape:
        raise ValueError(
            f"mask shape {tuple(mask.shape)} != logprobs shape {tuple(logprobs.shape)}"
        )
    if advantages.shape != logprobs.shape[:1]:
        raise ValueError(
            f"advantages must be [B] = [{logprobs.shape[0]}], got {tuple(advantages.shape)}"
        )

    # Zero out masked-out positions before any arithmetic: torch.where's backward does not
    # multiply, so a NaN there cannot reach the gradient.
    keep = mask.bool()
    zero = torch.zeros((), dtype=logprobs.dtype, device=logprobs.device)
    check_finite("logprobs", logprobs.detach()[keep])
    logprobs = torch.where(keep, logprobs, zero)
    if old_logprobs is None:
        old_logprobs = logprobs.detach()
    else:
        check_finite("old_logprobs", old_logprobs.detach()[keep])
        old_logprobs = torch.where(keep, old_logprobs.detach(), zero)
    check_finite("advantages", advantages)
    advantages = advantages.detach().to(logprobs.dtype).unsqueeze(1)
    weights = keep.to(logprobs.dtype)

    ratio = torch.exp(logprobs - old_logprobs)
    clipped_ratio = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)
    per_token_policy = -torch.min(ratio * advantages, clipped_ratio * advantages)
    per_token_loss = per_token_policy

    use_kl = ref_logprobs is not None and beta != 0.0
    if use_kl:
        check_finite("ref_logprobs", ref_logprobs.detach()[keep])
        ref_logprobs = torch.where(keep, ref_logprobs.detach(), zero)
        per_token_kl = kl_k3(logprobs, ref_logprobs)
        per_token_loss = per_token_loss + beta * per_token_kl
    else:
        per_token_kl = torch.zeros_like(logprobs)

    if loss_type == "grpo":
        tokens_per_sequence = weights.sum(dim=1).clamp(min=1.0)
        loss = ((per_token_loss * weights).sum(dim=1) / tokens_per_sequence).mean()
    else:
        loss = (per_token_loss * weights).sum() / weights.sum().clamp(min=1.0)
    check_finite("loss", loss)

    def token_mean(values: torch.Tensor) -> torch.Tensor:
        return (values.detach().to(weights.dtype) * weights).sum() / weights.sum().clamp(min=1.0)

    low_clipped = (ratio < 1 - epsilon_low) & (advantages < 0)
    high_clipped = (ratio > 1 + epsilon_high) & (advantages > 0)
    return GRPOLossOutput(
        loss=loss,
        policy_loss=token_mean(per_token_policy),
        kl=token_mean(per_token_kl),
        clip_fraction=token_mean(low_clipped | high_clipped),
        low_clip_fraction=token_mean(low_clipped),
        high_clip_fraction=token_mean(high_clipped),
        ratio_mean=token_mean(ratio),
    )

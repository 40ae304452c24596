"""Group sampling for GRPO: G completions per prompt from the policy, with their log-probs.

For B prompts, :func:`sample_groups` returns ``B * G`` completions grouped by prompt (prompt
``i`` owns rows ``i*G .. i*G+G-1``, the layout ``group_advantages`` expects after a
``view(B, G)``). Generation is the policy's KV-cached batched sampler
(``VideoVLM.generate``, typed here by the small :class:`Policy` protocol so this maths
layer never imports the model layer); the "old" per-token log-probs, the policy's log-probs at
sampling time that the clipped ratio of every later optimisation pass divides by, are then
computed by teacher forcing the sampled ids, so they use exactly the computation of the
training passes. Nothing here builds a graph. The policy's train / eval mode is left as the
caller set it, so the old log-probs and the training passes see the same mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import torch

from marc.compression.base import CompressedVideo

T = TypeVar("T")


class Sampled(Protocol):
    """What a policy's ``generate`` returns: texts, token ids ``[N, L]`` and their mask."""

    texts: list[str]
    sequences: torch.Tensor
    mask: torch.Tensor


class Scored(Protocol):
    """What a policy's ``completion_logprobs`` returns: per-token log-probs ``[N, L]``."""

    logprobs: torch.Tensor


class Policy(Protocol):
    """The two calls group sampling needs from a policy (``marc.models.VideoVLM`` has both)."""

    def generate(
        self,
        videos: list[CompressedVideo],
        prompts: list[str],
        *,
        num_return_sequences: int,
        max_new_tokens: int,
        do_sample: bool,
        temperature: float,
        top_p: float,
        seed: int | None,
        generator: torch.Generator | None,
    ) -> Sampled: ...

    def completion_logprobs(
        self,
        videos: list[CompressedVideo],
        prompts: list[str],
        completions: torch.Tensor,
        *,
        add_eos: bool,
    ) -> Scored: ...


@dataclass
class Rollout:
    """``B * G`` sampled completions, grouped by prompt, with their masks and log-probs.

    ``mask`` is 1 on generated tokens up to and including the first end-of-sequence token
    and 0 on the padding after it; ``old_logprobs`` is 0 where the mask is 0, and None
    when the caller did not ask for it (one optimisation pass per rollout needs none).
    """

    texts: list[str]
    sequences: torch.Tensor  # [B*G, L] token ids
    mask: torch.Tensor  # [B*G, L] int64
    old_logprobs: torch.Tensor | None  # [B*G, L] float32
    lengths: torch.Tensor  # [B*G] number of completion tokens (EOS included)
    num_generations: int

    @property
    def num_prompts(self) -> int:
        """Number of groups B."""
        return len(self.texts) // self.num_generations

    def group_texts(self, index: int) -> list[str]:
        """The G completions of prompt ``index``."""
        start = index * self.num_generations
        return self.texts[start : start + self.num_generations]


def repeat_per_generation(items: Sequence[T], num_generations: int) -> list[T]:
    """Each item repeated ``num_generations`` times in a row: ``[a, b] -> [a, a, b, b]``."""
    return [item for item in items for _ in range(num_generations)]


@torch.no_grad()
def sample_groups(
    policy: Policy,
    videos: list[CompressedVideo],
    prompts: list[str],
    num_generations: int = 8,
    max_new_tokens: int = 48,
    temperature: float = 1.0,
    top_p: float = 0.95,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    compute_old_logprobs: bool = True,
) -> Rollout:
    """Sample ``num_generations`` completions per prompt and their sampling-time log-probs."""
    if num_generations < 1:
        raise ValueError(f"num_generations must be at least 1, got {num_generations}")
    if len(videos) != len(prompts):
        raise ValueError(f"got {len(videos)} videos but {len(prompts)} prompts")
    output = policy.generate(
        videos,
        prompts,
        num_return_sequences=num_generations,
        max_new_tokens=max_new_tokens,
        do_sample=True,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        generator=generator,
    )
    old_logprobs = None
    if compute_old_logprobs:
        # add_eos=False: the sampled ids already end with the EOS the policy chose (or are
        # cut at max_new_tokens); they are scored exactly as sampled.
        old_logprobs = policy.completion_logprobs(
            repeat_per_generation(videos, num_generations),
            repeat_per_generation(prompts, num_generations),
            output.sequences,
            add_eos=False,
        ).logprobs
    return Rollout(
        texts=output.texts,
        sequences=output.sequences,
        mask=output.mask,
        old_logprobs=old_logprobs,
        lengths=output.mask.sum(dim=1),
        num_generations=num_generations,
    )

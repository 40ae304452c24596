"""Group sampling: shapes, masks after EOS, and old log-probs equal to a fresh scoring."""

from __future__ import annotations

import pytest
import torch

from marc.compression import Budget, MemoryAwareMerge
from marc.models.vlm import VideoVLM
from marc.rl.grpo import completion_mask
from marc.rl.rollout import Rollout, repeat_per_generation, sample_groups

PROMPTS = ["What colour is the circle?", "How many objects are there?"]


@pytest.fixture(scope="module")
def policy() -> VideoVLM:
    """Tiny policy whose EOS logit is scaled up, so some completions end early."""
    vlm = VideoVLM.tiny(seed=0).eval()
    with torch.no_grad():
        vlm.model.get_input_embeddings().weight[vlm.eos_token_ids[0]] *= 40
    return vlm


@pytest.fixture(scope="module")
def videos(policy):
    generator = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (16, 3, 56, 56), dtype=torch.uint8, generator=generator)
    return [policy.compress(frames, MemoryAwareMerge(), Budget(frames=1)) for _ in PROMPTS]


@pytest.fixture(scope="module")
def rollout(policy, videos) -> Rollout:
    return sample_groups(policy, videos, PROMPTS, num_generations=4, max_new_tokens=10, seed=0)


def test_rollout_shapes(rollout):
    rows = len(PROMPTS) * 4
    assert rollout.num_generations == 4 and rollout.num_prompts == len(PROMPTS)
    assert len(rollout.texts) == rows
    assert rollout.sequences.shape[0] == rows and rollout.sequences.shape[1] <= 10
    assert rollout.mask.shape == rollout.sequences.shape == rollout.old_logprobs.shape
    assert torch.equal(rollout.lengths, rollout.mask.sum(dim=1))
    assert rollout.group_texts(1) == rollout.texts[4:8]
    assert not rollout.old_logprobs.requires_grad


def test_mask_ends_after_the_first_eos(policy, rollout):
    assert rollout.lengths.min() < rollout.sequences.shape[1], "no completion ended early"
    assert torch.equal(rollout.mask, completion_mask(rollout.sequences, policy.eos_token_ids))
    assert torch.all(rollout.old_logprobs[rollout.mask == 0] == 0)
    assert torch.all(rollout.old_logprobs[rollout.mask == 1] <= 0)


def test_old_logprobs_equal_a_fresh_scoring(policy, videos, rollout):
    fresh = policy.completion_logprobs(
        repeat_per_generation(videos, 4),
        repeat_per_generation(PROMPTS, 4),
        rollout.sequences,
        add_eos=False,
    )
    assert torch.equal(fresh.mask, rollout.mask)
    torch.testing.assert_close(fresh.logprobs, rollout.old_logprobs, atol=1e-5, rtol=1e-5)


def test_same_seed_same_rollout(policy, videos, rollout):
    again = sample_groups(policy, videos, PROMPTS, num_generations=4, max_new_tokens=10, seed=0)
    assert again.texts == rollout.texts
    assert torch.equal(again.sequences, rollout.sequences)


def test_old_logprobs_can_be_skipped(policy, videos):
    skipped = sample_groups(
        policy, videos, PROMPTS, num_generations=2, max_new_tokens=3, compute_old_logprobs=False
    )
    assert skipped.old_logprobs is None and len(skipped.texts) == 4


def test_repeat_per_generation():
    assert repeat_per_generation(["a", "b"], 3) == ["a", "a", "a", "b", "b", "b"]


def test_bad_arguments(policy, videos):
    with pytest.raises(ValueError, match="num_generations"):
        sample_groups(policy, videos, PROMPTS, num_generations=0)
    with pytest.raises(ValueError, match="videos"):
        sample_groups(policy, videos[:1], PROMPTS)

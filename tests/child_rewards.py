"""Rewards for test runs of C-GRPO in child processes (named by class path in their configs)."""

from __future__ import annotations

from marc.rl.rewards import Reward, RewardContext


class TextLengthReward(Reward):
    """Differs inside a group even for a random policy, so advantages and updates are not zero."""

    default_name = "text_length"

    def score(self, completions: list[str], answers: list[str], context: RewardContext):
        return [float(len(text) % 5) for text in completions]

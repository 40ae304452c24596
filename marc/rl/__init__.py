"""Reinforcement learning for C-GRPO: answer checking, rewards and the GRPO loss."""

"""Tests for the GRPO maths, with values worked out by hand."""

import math

import pytest
import torch

from marc.rl.grpo import (
    check_finite,
    completion_mask,
    group_advantages,
    grpo_loss,
    kl_k3,
    zero_advantage_fraction,
)


def test_group_advantages_half_right_group_is_plus_minus_one():
    advantages = group_advantages(torch.tensor([[1.0, 0.0, 1.0, 0.0]]))
    # mean 0.5, population std 0.5: +-0.5 / (0.5 + 1e-4)
    expected = 0.5 / (0.5 + 1e-4)
    assert torch.allclose(advantages, torch.tensor([[expected, -expected, expected, -expected]]))
    assert torch.allclose(advantages.abs(), torch.ones(1, 4), atol=1e-3)


def test_group_advantages_without_std_scaling():
    rewards = torch.tensor([[2.0, 0.0, 1.0, 1.0], [3.0, 1.0, 1.0, 3.0]])
    advantages = group_advantages(rewards, scale_std=False)
    assert torch.equal(advantages, torch.tensor([[1.0, -1.0, 0.0, 0.0], [1.0, -1.0, -1.0, 1.0]]))


def test_all_equal_groups_give_exact_zeros_and_are_counted():
    rewards = torch.tensor([[0.1, 0.1, 0.1], [1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    for scale_std in (True, False):
        advantages = group_advantages(rewards, scale_std=scale_std)
        assert torch.isfinite(advantages).all()
        assert torch.equal(advantages[[0, 1, 3]], torch.zeros(3, 3))
        assert (advantages[2] != 0).all()
    assert zero_advantage_fraction(rewards) == 0.75
    assert zero_advantage_fraction(torch.zeros(0, 4)) == 0.0


def test_group_of_one_has_zero_advantage():
    assert torch.equal(group_advantages(torch.tensor([[0.7], [0.2]])), torch.zeros(2, 1))


def test_group_advantages_rejects_bad_input():
    with pytest.raises(ValueError, match="num_prompts, G"):
        group_advantages(torch.zeros(4))
    with pytest.raises(FloatingPointError, match="rewards"):
        group_advantages(torch.tensor([[1.0, float("nan")]]))


def test_kl_k3_by_hand():
    logprobs = torch.tensor([-1.0, -1.0, -2.0])
    ref = torch.tensor([-1.0, -1.0 + math.log(2.0), -1.0])
    # d = ref - logp: 0 -> 0; log 2 -> 2 - log 2 - 1; 1 -> e - 2
    expected = torch.tensor([0.0, 1.0 - math.log(2.0), math.e - 2.0])
    assert torch.allclose(kl_k3(logprobs, ref), expected, atol=1e-6)
    assert (kl_k3(torch.randn(100), torch.randn(100)) >= 0).all()


def test_completion_mask():
    eos, pad = 2, 0
    tokens = torch.tensor(
        [
            [5, 6, 2, 7, 2],  # EOS at 2, junk after
            [5, 6, 7, 8, 9],  # no EOS: all ones
            [2, 0, 0, 0, 0],  # EOS first
            [5, 6, 0, 0, 0],  # cut without EOS, right-padded
        ]
    )
    expected = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]])
    mask = completion_mask(tokens, eos)
    assert mask.dtype == torch.int64
    assert torch.equal(mask, expected)
    expected[3] = torch.tensor([1, 1, 0, 0, 0])
    assert torch.equal(completion_mask(tokens, eos, pad_token_id=pad), expected)


def test_completion_mask_pad_equal_to_eos_and_several_eos_ids():
    tokens = torch.tensor([[5, 0, 0, 0], [5, 6, 3, 0]])
    assert torch.equal(
        completion_mask(tokens, eos_token_id=0, pad_token_id=0),
        torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]]),
    )
    assert torch.equal(
        completion_mask(tokens, eos_token_id=[0, 3]), torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0]])
    )


def _one_token(ratio: float, advantage: float, **kwargs):
    old = torch.zeros(1, 1)
    logprobs = torch.full((1, 1), math.log(ratio), requires_grad=True)
    out = grpo_loss(logprobs, old, None, torch.tensor([advantage]), torch.ones(1, 1), **kwargs)
    out.loss.backward()
    return out, logprobs.grad.item()


def test_ratio_above_range_with_positive_advantage_is_clipped():
    out, grad = _one_token(1.5, 2.0)
    assert out.loss.item() == pytest.approx(-1.2 * 2.0)
    assert grad == 0.0  # clipped: no push further
    assert out.clip_fraction.item() == 1.0 and out.high_clip_fraction.item() == 1.0
    assert out.ratio_mean.item() == pytest.approx(1.5)


def test_ratio_above_range_with_negative_advantage_is_not_clipped():
    out, grad = _one_token(1.5, -2.0)
    assert out.loss.item() == pytest.approx(1.5 * 2.0)
    assert grad == pytest.approx(1.5 * 2.0)  # d(-ratio * A)/d logp = -ratio * A
    assert out.clip_fraction.item() == 0.0


def test_ratio_below_range_with_negative_advantage_is_clipped():
    out, grad = _one_token(0.5, -1.0)
    assert out.loss.item() == pytest.approx(0.8)
    assert grad == 0.0
    assert out.low_clip_fraction.item() == 1.0 and out.high_clip_fraction.item() == 0.0


def test_asymmetric_clip_range():
    out, _ = _one_token(1.25, 1.0, epsilon_high=0.28)
    assert out.loss.item() == pytest.approx(-1.25)
    assert out.clip_fraction.item() == 0.0


def test_clip_fraction_counts_masked_tokens_only():
    logprobs = torch.log(torch.tensor([[1.5, 1.0, 1.5, 1.5], [1.5, 0.5, 1.0, 1.0]]))
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    advantages = torch.tensor([1.0, -1.0])
    out = grpo_loss(logprobs, torch.zeros(2, 4), None, advantages, mask)
    # Masked tokens: row 0 ratios 1.5, 1, 1.5 with A > 0 (two clipped); row 1 ratios 1.5,
    # 0.5 with A < 0 (0.5 clipped). 3 of 5.
    assert out.clip_fraction.item() == pytest.approx(3 / 5)
    assert out.high_clip_fraction.item() == pytest.approx(2 / 5)
    assert out.low_clip_fraction.item() == pytest.approx(1 / 5)


def test_loss_types_by_hand():
    # Ratio 1 everywhere: the policy loss per token is -A. Row 0 has 1 token, row 1 has 3.
    logprobs = torch.zeros(2, 3)
    mask = torch.tensor([[1, 0, 0], [1, 1, 1]])
    advantages = torch.tensor([1.0, -1.0])
    grpo = grpo_loss(logprobs, None, None, advantages, mask, loss_type="grpo")
    dapo = grpo_loss(logprobs, None, None, advantages, mask, loss_type="dapo")
    assert grpo.loss.item() == pytest.approx((-1.0 + 1.0) / 2)
    assert dapo.loss.item() == pytest.approx((-1.0 + 3.0) / 4)
    with pytest.raises(ValueError, match="loss_type"):
        grpo_loss(logprobs, None, None, advantages, mask, loss_type="bnpo")


def test_kl_term_by_hand():
    logprobs = torch.full((1, 2), -1.0)
    ref = torch.tensor([[-1.0, -1.0 + math.log(2.0)]])
    out = grpo_loss(logprobs, None, ref, torch.zeros(1), torch.ones(1, 2), beta=0.1)
    kl = (0.0 + 1.0 - math.log(2.0)) / 2
    assert out.kl.item() == pytest.approx(kl)
    assert out.loss.item() == pytest.approx(0.1 * kl)
    no_kl = grpo_loss(logprobs, None, ref, torch.zeros(1), torch.ones(1, 2), beta=0.0)
    assert no_kl.loss.item() == 0.0 and no_kl.kl.item() == 0.0


def test_gradients_flow_only_through_logprobs():
    torch.manual_seed(0)
    logprobs = torch.randn(3, 5, requires_grad=True)
    old = (logprobs.detach() + 0.1 * torch.randn(3, 5)).requires_grad_()
    ref = torch.randn(3, 5, requires_grad=True)
    advantages = torch.randn(3, requires_grad=True)
    mask = torch.ones(3, 5)
    out = grpo_loss(logprobs, old, ref, advantages, mask)
    out.loss.backward()
    assert logprobs.grad is not None and logprobs.grad.abs().sum() > 0
    assert old.grad is None and ref.grad is None and advantages.grad is None
    for name, value in out.metrics().items():
        assert not value.requires_grad, name


def test_masked_positions_are_ignored_even_when_non_finite():
    logprobs = torch.tensor([[-1.0, float("nan")], [-0.5, float("-inf")]], requires_grad=True)
    mask = torch.tensor([[1, 0], [1, 0]])
    out = grpo_loss(logprobs, logprobs.detach(), logprobs.detach(), torch.ones(2), mask)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert torch.isfinite(logprobs.grad).all()
    assert torch.equal(logprobs.grad[:, 1], torch.zeros(2))


@pytest.mark.parametrize("bad", ["logprobs", "old_logprobs", "ref_logprobs", "advantages"])
def test_non_finite_inputs_raise_naming_them(bad):
    inputs = {
        "logprobs": torch.zeros(2, 3),
        "old_logprobs": torch.zeros(2, 3),
        "ref_logprobs": torch.zeros(2, 3),
        "advantages": torch.ones(2),
    }
    inputs[bad] = inputs[bad].clone()
    inputs[bad].view(-1)[0] = float("nan")
    with pytest.raises(FloatingPointError, match=f"^{bad} "):
        grpo_loss(mask=torch.ones(2, 3), **inputs)


def test_overflowing_loss_raises():
    logprobs = torch.tensor([[100.0]])
    with pytest.raises(FloatingPointError, match="loss"):
        grpo_loss(logprobs, torch.zeros(1, 1), None, torch.tensor([-1.0]), torch.ones(1, 1))


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="advantages"):
        grpo_loss(torch.zeros(2, 3), None, None, torch.zeros(3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="mask"):
        grpo_loss(torch.zeros(2, 3), None, None, torch.zeros(2), torch.ones(2, 4))
    with pytest.raises(ValueError, match="ref_logprobs"):
        grpo_loss(torch.zeros(2, 3), None, torch.zeros(2, 4), torch.zeros(2), torch.ones(2, 3))


def test_check_finite():
    check_finite("x", torch.ones(3))
    with pytest.raises(FloatingPointError, match=r"x has 2 non-finite value\(s\)"):
        check_finite("x", torch.tensor([1.0, float("inf"), float("nan")]))

"""The token-level compressors' shared pieces: budget splits, per-frame picks, saliency."""

import pytest
import torch

from marc.compression.tokens import (
    allocate,
    keep_per_frame,
    kept_at,
    nearest_sums,
    saliency,
    span_ids,
)


def test_allocate_is_exact_proportional_and_breaks_ties_to_the_lowest_index():
    assert allocate([1, 1, 1], 10, [10, 10, 10]).tolist() == [4, 3, 3]
    assert allocate([1, 1, 1, 1], 2, [5] * 4).tolist() == [1, 1, 0, 0]
    assert allocate([1, 2, 1], 8, [8, 8, 8]).tolist() == [2, 4, 2]
    # Largest remainders: ideal shares 1.4, 2.8, 2.8 -> 1, 3, 3.
    assert allocate([1, 2, 2], 7, [9, 9, 9]).tolist() == [1, 3, 3]
    assert allocate([0, 0], 3, [2, 2]).tolist() == [2, 1]  # all-zero weights: equal shares
    assert allocate([5, 0], 0, [3, 3]).tolist() == [0, 0]


def test_allocate_shares_a_capped_excess_over_the_others():
    # Entry 0 would get 8 of 10 but holds 2: the other 8 are split 1:1.
    assert allocate([8, 1, 1], 10, [2, 9, 9]).tolist() == [2, 4, 4]
    # A zero-weight entry takes tokens only when the others are full.
    assert allocate([1, 0], 5, [3, 9]).tolist() == [3, 2]
    assert allocate([1, 1], 6, [3, 3]).tolist() == [3, 3]
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        k = int(torch.randint(1, 8, (1,), generator=gen))
        weights = torch.rand(k, generator=gen) * (torch.rand(k, generator=gen) > 0.3)
        caps = torch.randint(0, 6, (k,), generator=gen)
        total = int(torch.randint(0, int(caps.sum()) + 1, (1,), generator=gen))
        counts = allocate(weights, total, caps)
        assert int(counts.sum()) == total
        assert (counts >= 0).all() and (counts <= caps).all()


def test_allocate_rejects_impossible_splits():
    with pytest.raises(ValueError, match="cannot split 7"):
        allocate([1, 1], 7, [3, 3])
    with pytest.raises(ValueError, match="non-negative"):
        allocate([1, -1], 1, [3, 3])


def test_keep_per_frame_keeps_the_best_and_breaks_ties_to_the_lowest_index():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.9], [1.0, 1.0, 1.0, 1.0]])
    assert keep_per_frame(scores, [2, 3]).tolist() == [
        [False, True, False, True],
        [True, True, True, False],
    ]
    assert keep_per_frame(scores, [1, 0], largest=False).tolist() == [
        [True, False, False, False],
        [False, False, False, False],
    ]


def frame(m=12, d=32, seed=0):
    return torch.randn(1, m, d, generator=torch.Generator().manual_seed(seed))


def test_self_attention_saliency_is_attention_received():
    x = torch.cat([frame(seed=1), frame(seed=2)])
    s = saliency(x)
    assert s.shape == (2, 12)
    torch.testing.assert_close(s.sum(dim=1), torch.ones(2))
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(saliency(x[:, perm]), s[:, perm])


def test_a_high_norm_token_along_the_frame_mean_gets_the_top_score():
    x = frame()
    x[0, 5] = 8 * x[0].mean(dim=0) / x[0].mean(dim=0).norm() * x[0].norm(dim=-1).mean()
    for mode in ("self_attn", "mean_query", "norm"):
        assert int(saliency(x, mode).argmax()) == 5, mode


def test_the_diagonal_mask_keeps_large_norm_tokens_apart():
    """Unmasked, every high-norm token attends to itself and the scores are all 1/M."""
    s = saliency(frame() * 1e3)
    assert torch.isfinite(s).all()
    assert float(s.max() / s.min().clamp_min(1e-30)) > 2


def test_single_token_frames_have_full_saliency():
    assert saliency(torch.randn(3, 1, 4)).tolist() == [[1.0], [1.0], [1.0]]


def test_given_saliency_must_have_one_score_per_token():
    tokens = torch.randn(2, 4, 3)
    given = torch.ones(2, 4, dtype=torch.bfloat16)
    assert saliency(tokens, "self_attn", given).dtype == torch.float32
    with pytest.raises(ValueError, match=r"\[2, 4\]"):
        saliency(tokens, "self_attn", torch.ones(2, 3))
    with pytest.raises(ValueError, match="finite"):
        saliency(tokens, "norm", torch.full((2, 4), float("nan")))
    with pytest.raises(ValueError, match="saliency must be one of"):
        saliency(tokens, "cls")


def test_nearest_sums_assigns_each_token_to_its_most_similar_target():
    values = torch.tensor([[[1.0, 0.0], [2.0, 0.1], [0.0, 3.0], [0.1, 1.0]]])
    units = torch.nn.functional.normalize(values, dim=-1)
    targets = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]])
    sums, counts = nearest_sums(values, units, targets, valid=torch.tensor([[True, True, False]]))
    torch.testing.assert_close(sums, torch.tensor([[[3.0, 0.1], [0.1, 4.0], [0.0, 0.0]]]))
    assert counts.tolist() == [[2.0, 2.0, 0.0]]
    sums, counts = nearest_sums(values, units, targets, joined=torch.tensor([[1, 0, 1, 1]]).bool())
    assert counts.tolist() == [[1.0, 2.0, 0.0]]


def test_positions_come_from_flat_indices():
    out = kept_at(torch.arange(6.0).view(3, 2), torch.tensor([23, 0, 7]), (2, 3, 4), torch.float16)
    assert out.positions.tolist() == [[0, 0, 0], [0, 1, 3], [1, 2, 3]]
    assert out.tokens.dtype == torch.float16 and out.tokens[:, 0].tolist() == [2.0, 4.0, 0.0]
    assert span_ids([(0, 2), (2, 5)], 5).tolist() == [0, 0, 1, 1, 1]
    assert span_ids(None, 3).tolist() == [0, 0, 0]

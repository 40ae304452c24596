"""Baseline compressors: which groups they keep and how they combine them."""

import pytest
import torch

from marc.compression import Budget, RandomDrop, TemporalMeanPool, ToMe, UniformFrames
from marc.compression.baselines import chunk_bounds, uniform_indices


def numbered(t, hw=4, dim=3):
    """Tokens whose every value in group i is float(i), so kept groups are easy to read."""
    return torch.arange(t, dtype=torch.float32).view(t, 1, 1).expand(t, hw, dim).clone()


def group_values(tokens):
    """The per-group value of ``numbered`` tokens (or of their averages)."""
    return tokens[:, 0, 0].tolist()


def test_uniform_indices_are_bin_centres():
    assert uniform_indices(8, 2) == [2, 6]
    assert uniform_indices(8, 4) == [1, 3, 5, 7]
    assert uniform_indices(10, 3) == [1, 5, 8]
    assert uniform_indices(5, 1) == [2]
    assert uniform_indices(6, 6) == list(range(6))


def test_uniform_frames_keeps_bin_centres():
    out = UniformFrames()(numbered(32), (32, 2, 2), Budget(frames=4))
    assert group_values(out.tokens) == [4.0, 12.0, 20.0, 28.0]
    assert out.kept_fraction == pytest.approx(4 / 32)


def test_chunk_bounds_cover_time_in_near_equal_chunks():
    assert chunk_bounds(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert chunk_bounds(4, 4) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    for total in range(1, 30):
        for chunks in range(1, total + 1):
            bounds = chunk_bounds(total, chunks)
            sizes = [end - start for start, end in bounds]
            assert bounds[0][0] == 0 and bounds[-1][1] == total
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
            assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1


def test_temporal_mean_pool_averages_chunks():
    out = TemporalMeanPool()(numbered(10), (10, 2, 2), Budget(frames=3))
    assert group_values(out.tokens) == pytest.approx([1.0, 4.0, 7.5])
    assert out.grid == (3, 2, 2)


def test_random_drop_is_seeded_sorted_and_distinct():
    tokens = numbered(40)
    first = group_values(RandomDrop()(tokens, (40, 2, 2), Budget(frames=6)).tokens)
    again = group_values(RandomDrop(seed=0)(tokens, (40, 2, 2), Budget(frames=6)).tokens)
    other = group_values(RandomDrop(seed=1)(tokens, (40, 2, 2), Budget(frames=6)).tokens)
    assert first == again and first != other
    assert first == sorted(first) and len(set(first)) == 6


def test_tome_merges_by_size_weighted_average_in_time_order():
    # Groups 0, 1 point one way, group 2 another: round 1 (A = {0, 2}, B = {1}) merges 0 into 1.
    tokens = torch.tensor([[[1.0, 0.0]], [[1.0, 0.1]], [[0.0, 1.0]]])
    out = ToMe()(tokens, (3, 1, 1), Budget(frames=2))
    torch.testing.assert_close(out.tokens, torch.tensor([[[1.0, 0.05]], [[0.0, 1.0]]]))
    out = ToMe()(tokens, (3, 1, 1), Budget(frames=1))
    torch.testing.assert_close(out.tokens, torch.tensor([[[2.0 / 3.0, 1.1 / 3.0]]]))


def test_tome_output_is_in_time_order():
    scene_a, scene_b = torch.eye(2).view(2, 1, 2)
    gen = torch.Generator().manual_seed(0)
    tokens = torch.stack([scene_b] * 4 + [scene_a] * 4) + 1e-3 * torch.rand(8, 1, 2, generator=gen)
    for ratio in (0.5, 1.0):
        out = ToMe(merge_ratio=ratio)(tokens, (8, 1, 1), Budget(frames=2))
        assert out.tokens[0, 0, 1] > 0.99 and out.tokens[1, 0, 0] > 0.99  # scene B, then A


def test_tome_unusual_first_group_survives_unmixed():
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randn(1, 9, 16, generator=gen) + 1e-3 * torch.randn(8, 9, 16, generator=gen)
    tokens[0] = torch.randn(9, 16, generator=gen)
    out = ToMe()(tokens, (8, 3, 3), Budget(frames=2))
    assert torch.equal(out.tokens[0], tokens[0])


def test_tome_rejects_bad_ratio():
    for ratio in (0.0, 1.5):
        with pytest.raises(ValueError):
            ToMe(merge_ratio=ratio)

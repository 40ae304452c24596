"""MemoryAwareMerge: merge order, size-weighted averages, windows, and the paper's budget."""

import pytest
import torch

from marc.compression import Budget, MemoryAwareMerge


def three_groups():
    """g0 and g1 are nearly parallel, g2 is orthogonal to both: (g0, g1) merge first."""
    return torch.tensor([[[1.0, 0.0]], [[1.0, 0.1]], [[0.0, 1.0]]])


def test_hand_computed_single_merge():
    tokens, counts, members = MemoryAwareMerge().merge_groups(
        three_groups(), (3, 1, 1), Budget(frames=2)
    )
    torch.testing.assert_close(tokens, torch.tensor([[[1.0, 0.05]], [[0.0, 1.0]]]))
    assert counts.tolist() == [2, 1]
    assert members == [[0, 1], [2]]


def test_hand_computed_size_weighted_merge():
    merger = MemoryAwareMerge()
    tokens, counts, members = merger.merge_groups(three_groups(), (3, 1, 1), Budget(frames=1))
    # Size-weighted: (2 * [1, 0.05] + [0, 1]) / 3; a plain pairwise average would give [0.5, 0.525].
    torch.testing.assert_close(tokens, torch.tensor([[[2.0 / 3.0, 1.1 / 3.0]]]))
    assert counts.tolist() == [3] and members == [[0, 1, 2]]
    out = merger(three_groups(), (3, 1, 1), Budget(frames=1))
    torch.testing.assert_close(out.tokens, tokens)
    assert out.grid == (1, 1, 1) and out.kept_fraction == pytest.approx(1 / 3)


def test_members_partition_time_in_order():
    tokens = torch.randn(23, 4, 8, generator=torch.Generator().manual_seed(0))
    _, counts, members = MemoryAwareMerge().merge_groups(tokens, (23, 2, 2), Budget(frames=4))
    assert [i for group in members for i in group] == list(range(23))
    assert all(group == list(range(group[0], group[-1] + 1)) for group in members)
    assert counts.tolist() == [len(group) for group in members]


def test_output_is_the_mean_of_each_groups_members():
    tokens = torch.randn(17, 6, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    merged, _, members = MemoryAwareMerge(window=3).merge_groups(
        tokens, (17, 2, 3), Budget(tokens=18)
    )
    expected = torch.stack([tokens[group].mean(0) for group in members])
    torch.testing.assert_close(merged, expected)


def test_repeated_groups_merge_without_loss():
    group = torch.randn(1, 4, 32, generator=torch.Generator().manual_seed(2))
    for dtype in (torch.float32, torch.bfloat16):
        tokens = group.to(dtype).repeat(8, 1, 1)
        merged, counts, _ = MemoryAwareMerge().merge_groups(tokens, (8, 2, 2), Budget(frames=3))
        assert torch.equal(merged, group.to(dtype).expand(3, -1, -1))
        assert counts.sum().item() == 8


def test_exact_ties_go_to_the_earliest_pair():
    tokens = torch.randn(1, 4, 32, generator=torch.Generator().manual_seed(3)).repeat(6, 1, 1)
    _, _, members = MemoryAwareMerge(window=6).merge_groups(tokens, (6, 2, 2), Budget(frames=2))
    assert members == [[0, 1, 2, 3, 4], [5]]


def odd_one_out(position, groups=8, seed=4):
    """``groups`` nearly identical groups except one unrelated group at ``position``."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(1, 9, 16, generator=gen)
    tokens = base + 1e-3 * torch.randn(groups, 9, 16, generator=gen)
    tokens[position] = torch.randn(9, 16, generator=gen)
    return tokens


# Only adjacent groups merge, so an unusual group in the middle needs three outputs to stay
# apart (the runs before and after it); at either end two suffice. The local stage must
# leave that room inside the unusual group's window too, hence local_keep=3.
@pytest.mark.parametrize("position, groups", [(0, 2), (7, 2), (3, 3), (5, 3)])
@pytest.mark.parametrize(
    "merger",
    [MemoryAwareMerge(window=8), MemoryAwareMerge(window=4, local_keep=3)],
    ids=["one-window", "local-keep-3"],
)
def test_unusual_group_survives_unmixed(position, groups, merger):
    tokens = odd_one_out(position)
    merged, _, members = merger.merge_groups(tokens, (8, 3, 3), Budget(frames=groups))
    assert len(members) == groups
    assert [position] in members
    assert torch.equal(merged[members.index([position])], tokens[position])


def test_default_local_stage_reduces_each_window_first():
    # With window 4 and local_keep 1, stage 1 alone brings 8 groups to 2, one per window,
    # so even an unusual group is merged into its window.
    _, _, members = MemoryAwareMerge().merge_groups(odd_one_out(3), (8, 3, 3), Budget(frames=2))
    assert members == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_local_stage_does_not_cross_window_borders():
    a, b, c = torch.eye(3).unsqueeze(1)
    # Groups 1 and 2 are identical but in different windows of 2.
    tokens = torch.stack([a, b, b, c])
    _, _, members = MemoryAwareMerge(window=2).merge_groups(tokens, (4, 1, 1), Budget(frames=2))
    assert members == [[0, 1], [2, 3]]
    # Without a local stage, the identical pair merges first.
    _, _, members = MemoryAwareMerge(window=2, local_keep=2).merge_groups(
        tokens, (4, 1, 1), Budget(frames=3)
    )
    assert members == [[0], [1, 2], [3]]


def test_early_stop_merges_the_most_redundant_window():
    a, b, c = torch.eye(3).unsqueeze(1)
    near_c = c + 0.01 * a
    # Window 0 holds dissimilar groups, window 1 a near-duplicate pair.
    tokens = torch.stack([a, b, c, near_c])
    _, _, members = MemoryAwareMerge(window=2).merge_groups(tokens, (4, 1, 1), Budget(frames=3))
    assert members == [[0], [1], [2, 3]]


def test_global_stage_merges_across_windows():
    tokens = odd_one_out(0, groups=16)
    _, counts, members = MemoryAwareMerge(window=4).merge_groups(
        tokens, (16, 3, 3), Budget(frames=2)
    )
    assert len(members) == 2 and counts.sum().item() == 16
    assert members[0] == [0, 1, 2, 3]  # the odd group's window, kept apart from the rest
    assert members[1] == list(range(4, 16))


def test_paper_one_frame_budget():
    # 64 frames at 112 px -> 32 temporal groups of 8 x 8 merged tokens (2048 tokens).
    grid = (32, 8, 8)
    tokens = torch.randn(32, 64, 16, generator=torch.Generator().manual_seed(5))
    out = MemoryAwareMerge()(tokens, grid, Budget(frames=1))
    assert out.grid == (1, 8, 8) and out.num_tokens == 64
    assert out.kept_fraction == pytest.approx(64 / 2048)
    assert 1 - out.kept_fraction >= 0.95


def test_gradient_reaches_every_merged_group():
    tokens = three_groups().requires_grad_(True)
    MemoryAwareMerge()(tokens, (3, 1, 1), Budget(frames=1)).tokens.sum().backward()
    torch.testing.assert_close(tokens.grad, torch.full((3, 1, 2), 1.0 / 3.0))


def test_similarity_is_computed_without_grad_graph_growth():
    tokens = torch.randn(8, 4, 8, requires_grad=True)
    out = MemoryAwareMerge()(tokens, (8, 2, 2), Budget(frames=1))
    assert out.tokens.requires_grad
    with torch.no_grad():
        assert not MemoryAwareMerge()(tokens, (8, 2, 2), Budget(frames=1)).tokens.requires_grad


@pytest.mark.parametrize("kwargs", [{"window": 0}, {"local_keep": 0}])
def test_bad_constructor_args(kwargs):
    with pytest.raises(ValueError):
        MemoryAwareMerge(**kwargs)

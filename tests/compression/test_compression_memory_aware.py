"""MemoryAwareMerge: merge order, the pairwise and size-weighted rules, windows, segments and
the paper's budget."""

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


def test_hand_computed_pairwise_merge():
    merger = MemoryAwareMerge()
    tokens, counts, members = merger.merge_groups(three_groups(), (3, 1, 1), Budget(frames=1))
    # The paper's rule: ((g0 + g1) / 2 + g2) / 2 = [0.5, 0.525]; g2, merged last, weighs 1/2.
    torch.testing.assert_close(tokens, torch.tensor([[[0.5, 0.525]]]))
    assert counts.tolist() == [3] and members == [[0, 1, 2]]
    out = merger(three_groups(), (3, 1, 1), Budget(frames=1))
    torch.testing.assert_close(out.tokens, tokens)
    assert out.grid == (1, 1, 1) and out.kept_fraction == pytest.approx(1 / 3)


def test_hand_computed_size_weighted_merge():
    merger = MemoryAwareMerge(merge="size_weighted")
    tokens, counts, members = merger.merge_groups(three_groups(), (3, 1, 1), Budget(frames=1))
    # (2 * [1, 0.05] + [0, 1]) / 3: every original group weighs the same.
    torch.testing.assert_close(tokens, torch.tensor([[[2.0 / 3.0, 1.1 / 3.0]]]))
    assert counts.tolist() == [3] and members == [[0, 1, 2]]


def test_one_frame_pairwise_differs_from_the_mean_and_size_weighted_does_not():
    tokens = torch.randn(16, 4, 8, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    pairwise = MemoryAwareMerge()(tokens, (16, 2, 2), Budget(frames=1)).tokens
    weighted = MemoryAwareMerge(merge="size_weighted")(tokens, (16, 2, 2), Budget(frames=1)).tokens
    torch.testing.assert_close(weighted[0], tokens.mean(0))
    assert (pairwise[0] - tokens.mean(0)).abs().max() > 1e-3


def test_members_partition_time_in_order():
    tokens = torch.randn(23, 4, 8, generator=torch.Generator().manual_seed(0))
    _, counts, members = MemoryAwareMerge().merge_groups(tokens, (23, 2, 2), Budget(frames=4))
    assert [i for group in members for i in group] == list(range(23))
    assert all(group == list(range(group[0], group[-1] + 1)) for group in members)
    assert counts.tolist() == [len(group) for group in members]


def test_size_weighted_output_is_the_mean_of_each_groups_members():
    tokens = torch.randn(17, 6, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    merged, _, members = MemoryAwareMerge(window=3, merge="size_weighted").merge_groups(
        tokens, (17, 2, 3), Budget(tokens=18)
    )
    expected = torch.stack([tokens[group].mean(0) for group in members])
    torch.testing.assert_close(merged, expected)


@pytest.mark.parametrize("merge", ["pairwise", "size_weighted"])
def test_repeated_groups_merge_without_loss(merge):
    group = torch.randn(1, 4, 32, generator=torch.Generator().manual_seed(2))
    for dtype in (torch.float32, torch.bfloat16):
        tokens = group.to(dtype).repeat(8, 1, 1)
        merged, counts, _ = MemoryAwareMerge(merge=merge).merge_groups(
            tokens, (8, 2, 2), Budget(frames=3)
        )
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
# leave that room (local_ratio 0.5: it stops at 4 of the 8 groups).
@pytest.mark.parametrize("position, groups", [(0, 2), (7, 2), (3, 3), (5, 3)])
@pytest.mark.parametrize(
    "merger",
    [MemoryAwareMerge(window=8), MemoryAwareMerge(window=4, local_ratio=0.5)],
    ids=["one-window", "local-ratio-0.5"],
)
def test_unusual_group_survives_unmixed(position, groups, merger):
    tokens = odd_one_out(position)
    merged, _, members = merger.merge_groups(tokens, (8, 3, 3), Budget(frames=groups))
    assert len(members) == groups
    assert [position] in members
    assert torch.equal(merged[members.index([position])], tokens[position])


def test_default_local_stage_reduces_each_window_first():
    # With window 4 and local_ratio 0.25, stage 1 alone brings 8 groups to 2, one per
    # window, so even an unusual group is merged into its window.
    _, _, members = MemoryAwareMerge().merge_groups(odd_one_out(3), (8, 3, 3), Budget(frames=2))
    assert members == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_local_stage_does_not_cross_window_borders():
    a, b, c = torch.eye(3).unsqueeze(1)
    # Groups 1 and 2 are identical but in different windows of 2.
    tokens = torch.stack([a, b, b, c])
    _, _, members = MemoryAwareMerge(window=2).merge_groups(tokens, (4, 1, 1), Budget(frames=2))
    assert members == [[0, 1], [2, 3]]
    # Without a local stage (windows of one group), the identical pair merges first.
    _, _, members = MemoryAwareMerge(window=1).merge_groups(tokens, (4, 1, 1), Budget(frames=3))
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
    # ((g0 + g1) / 2 + g2) / 2: weights 1/4, 1/4, 1/2.
    expected = torch.tensor([0.25, 0.25, 0.5]).view(3, 1, 1).expand(3, 1, 2)
    torch.testing.assert_close(tokens.grad, expected)


def test_similarity_is_computed_without_grad_graph_growth():
    tokens = torch.randn(8, 4, 8, requires_grad=True)
    out = MemoryAwareMerge()(tokens, (8, 2, 2), Budget(frames=1))
    assert out.tokens.requires_grad
    with torch.no_grad():
        assert not MemoryAwareMerge()(tokens, (8, 2, 2), Budget(frames=1)).tokens.requires_grad


@pytest.mark.parametrize(
    "kwargs", [{"window": 0}, {"local_ratio": 0.0}, {"local_ratio": 1.5}, {"merge": "mean"}]
)
def test_bad_constructor_args(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        MemoryAwareMerge(**kwargs)


def test_windows_start_at_each_segment_and_never_cross_it():
    a, b, c = torch.eye(3).unsqueeze(1)
    # Groups 2 and 3 are identical but belong to two segments; without segments the window
    # [0, 4) would merge them first.
    tokens = torch.stack([a, b, c, c, a, b])
    _, _, members = MemoryAwareMerge(window=4).merge_groups(tokens, (6, 1, 1), Budget(frames=2))
    assert [3] not in members and any(2 in m and 3 in m for m in members)
    _, _, members = MemoryAwareMerge(window=4).merge_groups(
        tokens, (6, 1, 1), Budget(frames=2), segments=[(0, 3), (3, 6)]
    )
    assert members == [[0, 1, 2], [3, 4, 5]]


def test_stage_one_reduces_each_segment_to_its_ratio_first():
    # Two segments of 8 nearly identical groups and 4 distinct ones: with local_ratio 0.5
    # each keeps half its groups after stage 1, so at a budget of 6 the distinct segment
    # (4 -> 2) is merged as much as the redundant one (8 -> 4).
    gen = torch.Generator().manual_seed(8)
    redundant = torch.randn(1, 4, 16, generator=gen) + 1e-3 * torch.randn(8, 4, 16, generator=gen)
    distinct = torch.randn(4, 4, 16, generator=gen)
    tokens = torch.cat([redundant, distinct])
    _, _, members = MemoryAwareMerge(window=8, local_ratio=0.5).merge_groups(
        tokens, (12, 2, 2), Budget(frames=6), segments=[(0, 8), (8, 12)]
    )
    assert sum(1 for m in members if m[0] >= 8) == 2
    assert sum(1 for m in members if m[0] < 8) == 4


@pytest.mark.parametrize("seed", range(6))
def test_with_one_budget_group_per_segment_no_group_mixes_two_segments(seed):
    gen = torch.Generator().manual_seed(seed)
    t = 20
    cuts = sorted(torch.randperm(t - 1, generator=gen)[:4].add(1).tolist())
    segments = list(zip([0, *cuts], [*cuts, t]))
    tokens = torch.randn(t, 4, 8, generator=gen)
    for window in (1, 3, 4):
        _, _, members = MemoryAwareMerge(window=window).merge_groups(
            tokens, (t, 2, 2), Budget(frames=len(segments)), segments=segments
        )
        assert members == [list(range(start, end)) for start, end in segments]


def test_fewer_budget_groups_than_segments_merge_across_segments():
    tokens = torch.randn(9, 4, 8, generator=torch.Generator().manual_seed(9))
    segments = [(0, 3), (3, 6), (6, 9)]
    _, counts, members = MemoryAwareMerge().merge_groups(
        tokens, (9, 2, 2), Budget(frames=2), segments=segments
    )
    assert len(members) == 2 and counts.sum().item() == 9
    # Segments are merged whole: each output group is a union of segments.
    assert sorted(len(m) for m in members) == [3, 6]


def test_forward_passes_segments_and_checks_them():
    tokens = torch.randn(6, 4, 8, generator=torch.Generator().manual_seed(10))
    merger = MemoryAwareMerge(window=1)
    out = merger(tokens, (6, 2, 2), Budget(frames=2), segments=[(0, 2), (2, 6)])
    torch.testing.assert_close(out.tokens[0], 0.5 * (tokens[0] + tokens[1]))
    with pytest.raises(ValueError, match=r"segment 1 \(3, 6\) overlaps"):
        merger(tokens, (6, 2, 2), Budget(frames=2), segments=[(0, 4), (3, 6)])

"""Token-level ToMe: the most similar pairs merge, into size-weighted means."""

import pytest
import torch

from marc.compression import Budget, TokenToMe

GRID = (4, 2, 4)  # even W: A and B are the even and odd columns


def paired_video(seed=0, d=16):
    """Every even-place token has an exact duplicate at the next (odd) place."""
    t, h, w = GRID
    gen = torch.Generator().manual_seed(seed)
    unique = torch.randn(t * h * w // 2, d, generator=gen)
    return unique.repeat_interleave(2, dim=0).view(t, h * w, d), unique


@pytest.mark.parametrize("global_from", [4096, 1])
def test_identical_tokens_merge_losslessly(global_from):
    tokens, unique = paired_video()
    compressor = TokenToMe(global_from=global_from)
    sums, sizes, index, owner = compressor.merge(tokens, GRID, 16)
    assert owner.tolist() == torch.arange(16).repeat_interleave(2).tolist()
    assert sizes.tolist() == [2.0] * 16
    assert index.tolist() == list(range(1, 32, 2))  # the B (odd) places survive
    out = compressor(tokens, GRID, Budget(tokens=16))
    assert torch.equal(out.tokens, unique)
    assert out.positions[:, 2].tolist() == [1, 3] * 8


@pytest.mark.parametrize("count", [1, 3, 10, 31])
def test_merged_tokens_are_size_weighted_means(count):
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randn(*GRID[:1], 8, 16, generator=gen)
    sums, sizes, index, owner = TokenToMe(merge_ratio=0.7).merge(tokens, GRID, count)
    assert torch.equal(torch.bincount(owner, minlength=count).float(), sizes)
    out = TokenToMe(merge_ratio=0.7)(tokens, GRID, Budget(tokens=count))
    flat = tokens.flatten(0, 1)
    for k in range(count):
        members = (owner == k).nonzero().squeeze(1)
        assert int(index[k]) in members.tolist()  # a merged token sits at one of its own
        torch.testing.assert_close(out.tokens[k], flat[members].mean(0))


def test_the_most_similar_pairs_merge_first():
    gen = torch.Generator().manual_seed(2)
    tokens = torch.randn(1, 8, 32, generator=gen)
    tokens[0, 5] = tokens[0, 2] + 0.01 * torch.randn(32, generator=gen)  # A place 2 ~ B place 5
    out = TokenToMe()(tokens, (1, 2, 4), Budget(tokens=7))
    flat = (out.positions[:, 1] * 4 + out.positions[:, 2]).tolist()
    assert flat == [0, 1, 3, 4, 5, 6, 7]  # 2 merged into 5
    torch.testing.assert_close(out.tokens[flat.index(5)], (tokens[0, 2] + tokens[0, 5]) / 2)


def test_merges_stay_inside_segments():
    gen = torch.Generator().manual_seed(3)
    # Groups alike across the border, so unrestricted matching would mix the segments.
    tokens = torch.randn(1, 8, 16, generator=gen) + 0.01 * torch.randn(4, 8, 16, generator=gen)
    segments = [(0, 2), (2, 4)]
    segment = torch.arange(32) // 16
    for count in (2, 5, 9):
        _, _, index, owner = TokenToMe().merge(tokens, GRID, count, segments)
        for k in range(count):
            assert segment[owner == k].unique().tolist() == [int(segment[index[k]])]
    _, _, index, owner = TokenToMe().merge(tokens, GRID, 5)
    assert any(len(segment[owner == k].unique()) == 2 for k in range(5))


def test_a_segment_without_partners_merges_across_its_border():
    tokens = torch.randn(2, 1, 4, generator=torch.Generator().manual_seed(4))
    out = TokenToMe()(tokens, (2, 1, 1), Budget(tokens=1), segments=[(0, 1), (1, 2)])
    torch.testing.assert_close(out.tokens[0], tokens.flatten(0, 1).mean(0))


def test_local_rounds_only_match_adjacent_groups():
    """Above ``global_from`` tokens an A token looks only at its own and adjacent groups."""
    gen = torch.Generator().manual_seed(5)
    tokens = torch.randn(4, 2, 8, generator=gen)
    tokens[3, 1] = tokens[0, 0]  # identical, but three groups apart
    tokens[1, 1] = tokens[1, 0] + 1e-3 * torch.randn(8, generator=gen)  # nearly, in one group
    local = TokenToMe(merge_ratio=0.25, global_from=1)(tokens, (4, 1, 2), Budget(tokens=7))
    assert [0, 0, 0] in local.positions.tolist() and [1, 0, 0] not in local.positions.tolist()
    whole = TokenToMe(merge_ratio=0.25)(tokens, (4, 1, 2), Budget(tokens=7))
    assert [0, 0, 0] not in whole.positions.tolist() and [1, 0, 0] in whole.positions.tolist()
    assert torch.equal(whole.tokens[-1], tokens[3, 1])

"""DyCoke's TTM: tokens repeated from the reference frame are pruned first."""

import torch

from marc.compression import Budget, DyCoke


def kept_by_frame(out, t, w):
    """The flat in-frame indices kept in each frame."""
    return [
        sorted(
            (
                out.positions[out.positions[:, 0] == f, 1] * w
                + out.positions[out.positions[:, 0] == f, 2]
            ).tolist()
        )
        for f in range(t)
    ]


def test_reference_frames_follow_the_official_windows():
    reference, pivot = DyCoke.references(10, None)
    assert reference.tolist() == [-1, 0, 0, 2, 0, 4, 4, 6, 4, 8]
    assert pivot.nonzero().squeeze(1).tolist() == [0, 4, 8]
    # Windows restart at each segment: nothing refers across a border.
    reference, pivot = DyCoke.references(7, [(0, 2), (2, 7)])
    assert reference.tolist() == [-1, 0, -1, 2, 2, 4, 2]
    assert pivot.nonzero().squeeze(1).tolist() == [0, 2, 6]


def test_a_token_repeated_from_the_previous_frame_is_pruned_first():
    gen = torch.Generator().manual_seed(0)
    t, m, d = 4, 16, 32
    tokens = torch.randn(t, m, d, generator=gen)
    # Frame 1 repeats frame 0 at positions 0..5 exactly; frame 3 repeats frame 2 at 8..13.
    tokens[1, :6] = tokens[0, :6]
    tokens[3, 8:14] = tokens[2, 8:14]
    # 1 pivot (16) + 10 for each of frames 1..3: every repeated token must go first.
    out = DyCoke()(tokens, (t, 4, 4), Budget(tokens=16 + 30))
    kept = kept_by_frame(out, t, 4)
    assert kept[0] == list(range(16))
    assert kept[1] == list(range(6, 16))
    assert kept[3] == list(range(8)) + [14, 15]
    assert len(kept[2]) == 10


def test_changed_tokens_are_kept_against_the_right_reference():
    """g1, g2 refer to g0 and g3 to g2 (the brief's case: g3 = g2 with changes)."""
    gen = torch.Generator().manual_seed(1)
    g0 = torch.randn(16, 32, generator=gen)
    g1 = g0.clone()
    g1[[3, 7]] = torch.randn(2, 32, generator=gen)
    g2 = g0.clone()
    g2[[5, 11]] = -g0[[5, 11]]
    g3 = g2.clone()
    g3[[3, 9]] = torch.randn(2, 32, generator=gen)
    tokens = torch.stack([g0, g1, g2, g3])
    out = DyCoke()(tokens, (4, 4, 4), Budget(tokens=16 + 6))
    assert kept_by_frame(out, 4, 4)[1:] == [[3, 7], [5, 11], [3, 9]]
    # With a segment border before group 2, group 2 is a pivot and kept whole.
    out = DyCoke()(tokens, (4, 4, 4), Budget(tokens=32 + 2), segments=[(0, 2), (2, 4)])
    kept = kept_by_frame(out, 4, 4)
    assert kept[0] == kept[2] == list(range(16))
    assert len(kept[1]) + len(kept[3]) == 2


def test_below_one_whole_pivot_each_only_pivots_keep_tokens():
    gen = torch.Generator().manual_seed(2)
    tokens = torch.randn(9, 4, 16, generator=gen)
    # Pivots 0, 4, 8 (12 tokens): a budget of 6 keeps 2 from each pivot.
    tokens[4, 1:] = tokens[0, 1:]  # pivot 4 repeats pivot 0 except at position 0
    out = DyCoke()(tokens, (9, 2, 2), Budget(tokens=6))
    assert torch.bincount(out.positions[:, 0], minlength=9).tolist() == [2, 0, 0, 0, 2, 0, 0, 0, 2]
    assert 0 in kept_by_frame(out, 9, 2)[4]

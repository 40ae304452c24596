"""VidCom²: unique frames get more of the budget; distinctive tokens are the ones kept."""

import torch

from marc.compression import Budget, VidCom2


def redundant_video(t=8, m=64, d=256, unique=5, seed=0):
    """Frames ``base + 0.3 noise``, except frame ``unique`` (if any), which is fresh random."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(m, d, generator=gen)
    tokens = base + 0.3 * torch.randn(t, m, d, generator=gen)
    if unique is not None:
        tokens[unique] = torch.randn(m, d, generator=gen)
    return tokens


def counts_per_frame(out, t):
    return torch.bincount(out.positions[:, 0], minlength=t)


def test_a_unique_frame_gets_more_of_the_budget():
    tokens = redundant_video()
    out = VidCom2()(tokens, (8, 8, 8), Budget(tokens=128))
    counts = counts_per_frame(out, 8)
    others = torch.cat([counts[:5], counts[6:]])
    assert int(counts.sum()) == 128
    assert counts[5] >= 1.5 * others.median()
    assert int(others.max() - others.min()) <= 1
    uniqueness, _ = VidCom2().scores(tokens)
    assert int(uniqueness.argmax()) == 5


def test_without_a_unique_frame_the_budget_is_even():
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randn(64, 256, generator=gen) + 0.3 * torch.randn(8, 64, 256, generator=gen)
    counts = counts_per_frame(VidCom2(tau=10.0)(tokens, (8, 8, 8), Budget(tokens=128)), 8)
    assert counts.tolist() == [16] * 8


def test_distinctive_tokens_are_kept():
    gen = torch.Generator().manual_seed(2)
    # Tokens share a direction (as visual tokens do), on the first 192 channels only.
    tokens = torch.zeros(8, 64, 256)
    common = torch.randn(192, generator=gen)
    tokens[..., :192] = common + 0.5 * torch.randn(8, 64, 192, generator=gen)
    planted = [3, 17, 40]
    # Tokens orthogonal to every other: they live on channels where all the others are 0.
    tokens[2, planted] = 0
    tokens[2, planted, 192:] = torch.randn(3, 64, generator=gen)
    out = VidCom2()(tokens, (8, 8, 8), Budget(tokens=64))
    kept = out.positions[out.positions[:, 0] == 2]
    assert len(kept) < 16
    assert set(planted) <= set((kept[:, 1] * 8 + kept[:, 2]).tolist())


def test_fewer_tokens_than_frames_go_to_the_most_unique_frames():
    tokens = redundant_video(t=8, m=4, d=64)
    out = VidCom2()(tokens, (8, 2, 2), Budget(tokens=3))
    uniqueness, _ = VidCom2().scores(tokens)
    assert set(out.positions[:, 0].tolist()) == set(
        uniqueness.argsort(descending=True)[:3].tolist()
    )
    assert 5 in out.positions[:, 0].tolist()


def test_every_frame_keeps_a_token_when_the_budget_allows():
    tokens = redundant_video(t=8, m=64, d=64)
    counts = counts_per_frame(VidCom2()(tokens, (8, 8, 8), Budget(tokens=9)), 8)
    assert (counts >= 1).all() and int(counts.sum()) == 9


def test_per_segment_budgets_follow_segment_lengths():
    tokens = redundant_video(t=8, m=16, d=64)
    segments = [(0, 2), (2, 8)]
    out = VidCom2(per_segment=True)(tokens, (8, 4, 4), Budget(tokens=32), segments=segments)
    counts = counts_per_frame(out, 8)
    assert int(counts[:2].sum()) == 8 and int(counts[2:].sum()) == 24
    # Ignored by default: the same result with or without segments.
    plain = VidCom2()(tokens, (8, 4, 4), Budget(tokens=32))
    assert torch.equal(
        plain.positions, VidCom2()(tokens, (8, 4, 4), Budget(tokens=32), segments).positions
    )

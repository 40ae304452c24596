"""FastVID: segments follow hard cuts; salient tokens and merged density-peak anchors."""

import pytest
import torch

from marc.compression import Budget, FastVID

GRID = (12, 4, 4)


def three_scenes(seed=0, m=16, d=32):
    """12 groups: 3 scenes of 4 near-identical groups each, the scenes unrelated."""
    gen = torch.Generator().manual_seed(seed)
    scenes = [torch.randn(m, d, generator=gen) for _ in range(3)]
    return torch.cat([scene + 0.01 * torch.randn(4, m, d, generator=gen) for scene in scenes])


def test_segments_follow_hard_cuts():
    tokens = three_scenes()
    assert FastVID(min_segments=3).segmentation(tokens) == [(0, 4), (4, 8), (8, 12)]
    assert FastVID(min_segments=1).segmentation(tokens) == [(0, 4), (4, 8), (8, 12)]
    # DySeg's default asks for 8 segments: the hard cuts are among its cuts.
    spans = FastVID().segmentation(tokens)
    assert len(spans) == 8
    assert {4, 8} <= {start for start, _ in spans}


def test_every_scene_gets_tokens_from_its_own_frames():
    tokens = three_scenes()
    out = FastVID(min_segments=3)(tokens, GRID, Budget(frames=1))
    frames = out.positions[:, 0]
    counts = [int(((frames >= s) & (frames < s + 4)).sum()) for s in (0, 4, 8)]
    assert counts == [6, 5, 5]  # 16 tokens, split by segment length, remainder to the first
    # Near-duplicate groups collapse into the last of each run: only it keeps tokens.
    assert set(frames.tolist()) == {3, 7, 11}


def test_given_segments_are_forced_cuts():
    tokens = three_scenes()
    segments = [(0, 5), (5, 12)]
    spans = FastVID(min_segments=3).segmentation(tokens, segments)
    assert spans == [(0, 4), (4, 5), (5, 8), (8, 12)]
    assert FastVID(dyseg=False).segmentation(tokens, segments) == segments
    assert FastVID(dyseg=False).segmentation(tokens) == [(0, 12)]
    # Forced borders count towards min_segments.
    assert len(FastVID(min_segments=5, cut_similarity=-1.0).segmentation(tokens, segments)) == 5


def test_segment_budgets_follow_segment_lengths():
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randn(10, 4, 16, generator=gen)
    segments = [(0, 2), (2, 10)]
    out = FastVID(dyseg=False)(tokens, (10, 2, 2), Budget(tokens=10), segments=segments)
    frames = out.positions[:, 0]
    assert int((frames < 2).sum()) == 2 and int((frames >= 2).sum()) == 8


def test_salient_tokens_are_the_most_attended_and_unmodified():
    gen = torch.Generator().manual_seed(2)
    tokens = torch.randn(1, 16, 8, generator=gen)
    scores = torch.zeros(1, 16)
    scores[0, [3, 9, 12]] = torch.tensor([3.0, 2.0, 1.0])
    # 5 tokens: 2 anchors (floor(0.4 * 5)), 3 salient.
    out = FastVID().compress(tokens, (1, 4, 4), Budget(tokens=5), saliency_scores=scores)
    flat = (out.positions[:, 1] * 4 + out.positions[:, 2]).tolist()
    assert len(flat) == 5 and {3, 9, 12} <= set(flat)
    for p in (3, 9, 12):
        assert torch.equal(out.tokens[flat.index(p)], tokens[0, p])


@pytest.mark.parametrize("beta", [0.6, 0.1])
def test_anchors_absorb_the_other_non_salient_tokens(beta):
    gen = torch.Generator().manual_seed(3)
    tokens = torch.randn(1, 6, 8, generator=gen)
    scores = torch.zeros(1, 6)
    scores[0, 0] = 1.0
    # 2 tokens: the salient token 0 and one anchor that absorbs the other 4.
    out = FastVID(anchor_weight=beta).compress(
        tokens, (1, 2, 3), Budget(tokens=2), saliency_scores=scores
    )
    flat = (out.positions[:, 1] * 3 + out.positions[:, 2]).tolist()
    assert flat[0] == 0 and torch.equal(out.tokens[0], tokens[0, 0])
    anchor = flat[1]
    others = [p for p in range(1, 6) if p != anchor]
    weight = max(1 / (len(others) + 1), beta)
    expected = weight * tokens[0, anchor] + (1 - weight) * tokens[0, others].mean(0)
    torch.testing.assert_close(out.tokens[1], expected)


def test_density_peaks_pick_one_anchor_per_cluster():
    gen = torch.Generator().manual_seed(4)
    d = 16
    centres = torch.randn(2, d, generator=gen)
    frame = torch.cat(
        [
            centres[0] + 0.01 * torch.randn(20, d, generator=gen),
            centres[1] + 0.01 * torch.randn(20, d, generator=gen),
            3 * torch.randn(5, d, generator=gen),
        ]
    )
    order = torch.randperm(45, generator=gen)
    frame = frame[order]
    cluster = torch.cat([torch.zeros(20), torch.ones(20), torch.full((5,), 2.0)])[order]
    candidates = torch.ones(1, 45, dtype=torch.bool)
    anchors = FastVID().density_peaks(frame.unsqueeze(0), candidates, torch.tensor([2]))
    assert sorted(cluster[anchors[0]].tolist()) == [0.0, 1.0]
    # Salient tokens are never anchors.
    candidates[0, cluster == 0] = False
    anchors = FastVID().density_peaks(frame.unsqueeze(0), candidates, torch.tensor([2]))
    assert 0.0 not in cluster[anchors[0]].tolist() and int(anchors.sum()) == 2


def test_plan_spends_the_share_on_valid_frames_first():
    compressor = FastVID()
    # 5 frames, all near-duplicates: one valid frame (the last).
    salient, anchors = compressor.plan(torch.ones(4), 10, 16)
    assert anchors.tolist() == [0, 0, 0, 0, 4] and salient.tolist() == [0, 0, 0, 0, 6]
    # A share larger than the valid frame holds spills evenly onto the duplicates.
    salient, anchors = compressor.plan(torch.ones(4), 40, 16)
    assert anchors.tolist() == [0, 0, 0, 0, 8]
    assert salient.tolist() == [6, 6, 6, 6, 8]
    salient, anchors = compressor.plan(torch.ones(4), 39, 16)
    assert salient.tolist() == [5, 6, 6, 6, 8]  # remainders to the latest
    # Distinct frames: anchors on every 4th valid frame counted back from the last.
    salient, anchors = compressor.plan(torch.zeros(4), 30, 16)
    assert anchors.tolist() == [6, 0, 0, 0, 6]
    assert salient.tolist() == [4, 4, 4, 3, 3]

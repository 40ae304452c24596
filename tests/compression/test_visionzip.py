"""VisionZip: the most attended tokens are kept; the rest are merged into context tokens."""

import pytest
import torch

from marc.compression import Budget, VisionZip
from marc.compression.tokens import saliency


def in_frame(out, f, w):
    rows = out.positions[:, 0] == f
    return (out.positions[rows, 1] * w + out.positions[rows, 2]).tolist(), out.tokens[rows]


def planted_video(seed=0, t=2, m=64, d=64, planted=(5, 20, 33, 47, 60)):
    """Random frames with a few high-norm tokens along the frame mean: the most attended."""
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randn(t, m, d, generator=gen) + 0.5 * torch.randn(d, generator=gen)
    for f in range(t):
        direction = tokens[f].mean(dim=0) / tokens[f].mean(dim=0).norm()
        tokens[f, list(planted)] = 10 * direction * tokens[f].norm(dim=-1).mean()
        tokens[f, list(planted)] += 0.1 * torch.randn(len(planted), d, generator=gen)
    return tokens


@pytest.mark.parametrize("mode", ["self_attn", "norm", "mean_query"])
def test_the_most_attended_tokens_are_kept_as_dominant(mode):
    planted = [5, 20, 33, 47, 60]
    tokens = planted_video(planted=planted)
    assert set(saliency(tokens, mode)[0].topk(5).indices.tolist()) == set(planted)
    # 6 kept per frame: 5 dominant + 1 contextual (round(6 * 10/64) = 1).
    out = VisionZip(saliency=mode)(tokens, (2, 8, 8), Budget(tokens=12))
    for f in range(2):
        positions, values = in_frame(out, f, 8)
        dominant = [p for p in positions if p in planted]
        assert dominant == planted
        for p in planted:  # dominant tokens are unmodified
            assert torch.equal(values[positions.index(p)], tokens[f, p])


def test_context_tokens_are_means_of_the_tokens_assigned_to_them():
    gen = torch.Generator().manual_seed(3)
    m, d = 16, 32
    # One frame: 4 dominant tokens (large), the other 12 in 3 tight clusters of 4 tokens.
    centres = torch.randn(3, d, generator=gen) * 3
    frame = torch.zeros(m, d)
    dominant = [0, 5, 10, 15]
    rest = [p for p in range(m) if p not in dominant]
    # The targets are every 4th remaining token (step = 12 // 3): rest[0], rest[4], rest[8].
    cluster = torch.tensor([i // 4 for i in range(12)])
    frame[rest] = centres[cluster] + 0.05 * torch.randn(12, d, generator=gen)
    frame[dominant] = 30 * frame[rest].mean(0) / frame[rest].mean(0).norm()
    frame[dominant] += torch.randn(4, d, generator=gen)
    tokens = frame.unsqueeze(0)
    scores = torch.zeros(1, m)
    scores[0, dominant] = 1.0  # the encoder's attention, passed in
    compressor = VisionZip(contextual_ratio=3 / 7)
    out = compressor.compress(tokens, (1, 4, 4), Budget(tokens=7), saliency_scores=scores)
    positions, values = in_frame(out, 0, 4)
    targets = [rest[0], rest[4], rest[8]]
    assert positions == sorted(dominant + targets)
    for k, target in enumerate(targets):
        members = [rest[i] for i in range(12) if cluster[i] == k]
        torch.testing.assert_close(values[positions.index(target)], frame[members].mean(0))
    official = VisionZip(contextual_ratio=3 / 7, context_merge="target_plus_mean")
    out = official.compress(tokens, (1, 4, 4), Budget(tokens=7), saliency_scores=scores)
    positions, values = in_frame(out, 0, 4)
    for k, target in enumerate(targets):
        joined = [rest[i] for i in range(12) if cluster[i] == k and rest[i] != target]
        expected = frame[target] + frame[joined].mean(0)
        torch.testing.assert_close(values[positions.index(target)], expected)


def test_frames_share_the_budget_equally():
    tokens = planted_video(t=5, m=16, d=16, planted=(1,))
    out = VisionZip()(tokens, (5, 4, 4), Budget(tokens=23))
    assert torch.bincount(out.positions[:, 0], minlength=5).tolist() == [5, 5, 5, 4, 4]


def test_video_scope_ranks_dominant_tokens_over_the_whole_video():
    tokens = planted_video(t=3, m=16, d=16, planted=(2,))
    tokens[1, 2] *= 100  # the one clearly dominant token of the video under "norm"
    out = VisionZip(scope="video", saliency="norm", contextual_ratio=0.5)
    kept = out(tokens, (3, 4, 4), Budget(tokens=2), segments=[(0, 2), (2, 3)])
    # One dominant token (frame 1, position 2) and one contextual token in the longer segment.
    positions = kept.positions.tolist()
    assert [1, 0, 2] in positions and len(positions) == 2
    assert kept.positions[:, 0].max() <= 1


def test_saliency_scores_must_fit_the_video():
    tokens = planted_video(t=2, m=16, d=8, planted=(1,))
    with pytest.raises(ValueError, match="saliency"):
        VisionZip().compress(tokens, (2, 4, 4), Budget(tokens=3), saliency_scores=torch.ones(2, 15))

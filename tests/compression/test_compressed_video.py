"""CompressedVideo in both forms: token positions, flat tokens, and errors that name shapes."""

from __future__ import annotations

import pytest
import torch

from marc.compression.base import CompressedVideo, grid_positions, kept_tokens


def test_grid_shaped_video_positions_are_its_grid_in_reading_order():
    tokens = torch.randn(2, 6, 4)
    video = CompressedVideo(tokens, (2, 2, 3), 1.0)
    assert not video.is_token_level and video.num_tokens == 12
    assert torch.equal(video.flat_tokens(), tokens.reshape(12, 4))
    positions = video.token_positions()
    assert positions.dtype == torch.long and positions.shape == (12, 3)
    assert positions[:4].tolist() == [[0, 0, 0], [0, 0, 1], [0, 0, 2], [0, 1, 0]]
    assert positions[6].tolist() == [1, 0, 0]


def test_token_level_video_keeps_its_positions_and_order():
    positions = torch.tensor([[1, 0, 1], [0, 1, 0]], dtype=torch.int32)
    tokens = torch.randn(2, 4)
    video = CompressedVideo(tokens, (2, 2, 2), 0.25, positions=positions)
    assert video.is_token_level and video.num_tokens == 2
    assert torch.equal(video.flat_tokens(), tokens)
    assert video.token_positions().dtype == torch.long
    assert video.token_positions().tolist() == positions.tolist()
    # kept_tokens puts them in reading order, each token with its own position.
    ordered = kept_tokens(tokens, positions, (2, 2, 2))
    assert ordered.positions.tolist() == [[0, 1, 0], [1, 0, 1]]
    assert torch.equal(ordered.tokens, tokens.flip(0))


@pytest.mark.parametrize(
    "positions,message",
    [
        (
            torch.zeros(3, 2, dtype=torch.long),
            r"\[N, 3\] tensor of \(t, h, w\), got shape \(3, 2\)",
        ),
        (torch.zeros(3, dtype=torch.long), r"got shape \(3,\)"),
        (torch.zeros(3, 3), "integer tensor, got torch.float32"),
        (
            torch.tensor([[0, 0, 0], [1, 1, 1], [4, 0, 0]]),
            r"positions of shape \(3, 3\): row 2 \[4, 0, 0\] lies outside the grid \(4, 2, 2\)",
        ),
        (torch.tensor([[0, 0, 0], [0, -1, 0], [0, 0, 0]]), r"shape \(3, 3\): row 1 \[0, -1, 0\]"),
        (torch.tensor([[0, 0, 0], [0, 0, 2], [0, 0, 0]]), r"row 1 \[0, 0, 2\] lies outside"),
    ],
)
def test_bad_positions_raise_naming_their_shape(positions, message):
    with pytest.raises(ValueError, match=message):
        CompressedVideo(torch.randn(3, 8), (4, 2, 2), 0.2, positions=positions)


def test_tokens_that_do_not_fit_their_form_raise_naming_their_shape():
    positions = grid_positions((1, 2, 2))
    with pytest.raises(ValueError, match=r"N = 4 positions, got shape \(1, 4, 8\)"):
        CompressedVideo(torch.randn(1, 4, 8), (1, 2, 2), 1.0, positions=positions)
    with pytest.raises(ValueError, match=r"N = 4 positions, got shape \(3, 8\)"):
        CompressedVideo(torch.randn(3, 8), (1, 2, 2), 1.0, positions=positions)
    with pytest.raises(ValueError, match=r"tokens of shape \(4, 8\) do not match grid \(1, 2, 2\)"):
        CompressedVideo(torch.randn(4, 8), (1, 2, 2), 1.0)

"""A compressed video and an uncompressed video that really holds its content: same logits."""

from __future__ import annotations

import torch

from marc.compression.base import CompressedVideo

from .conftest import COMPLETION, QUESTION, merge_all_groups, random_frames


def uncompressed_logits(vlm, frames: torch.Tensor, batch: dict) -> torch.Tensor:
    """Logits of transformers' own path: pixels in, the model computes features and positions."""
    pixel_values, grid_thw = vlm.pixel_inputs(frames)
    vlm.model.model.rope_deltas = None
    return vlm.model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        mm_token_type_ids=batch["mm_token_type_ids"],
        pixel_values_videos=pixel_values,
        video_grid_thw=grid_thw,
        use_cache=False,
    ).logits


@torch.no_grad()
def test_merged_identical_groups_equal_the_single_group_video(vlm):
    clip = random_frames(2, 112, 112, seed=1)  # one temporal group, grid (1, 4, 4)
    tokens, grid = vlm.encode_video(clip.repeat(4, 1, 1, 1))  # four identical groups
    assert grid == (4, 4, 4)
    compressed = merge_all_groups(tokens, grid)
    batch = vlm.prepare_inputs([compressed], [QUESTION], [COMPLETION])
    assert batch["video_grid_thw"].tolist() == [[1, 8, 8]]
    logits = vlm(batch, use_cache=False).logits
    torch.testing.assert_close(logits, uncompressed_logits(vlm, clip, batch), atol=1e-5, rtol=0)
    # The 3-D positions matter: 1-D positions give different logits.
    flat = dict(batch, position_ids=None, mm_token_type_ids=None)
    assert (vlm(flat, use_cache=False).logits - logits).abs().max() > 1e-3


@torch.no_grad()
def test_pairwise_merge_equals_the_two_group_video(vlm):
    first, second = random_frames(2, 56, 84, seed=2), random_frames(2, 56, 84, seed=3)
    video = torch.cat([first, first, second, second])  # groups X X Y Y
    tokens, grid = vlm.encode_video(video)
    merged = tokens.view(2, 2, *tokens.shape[1:]).mean(1)  # groups X Y
    compressed = CompressedVideo(merged, (2, grid[1], grid[2]), 0.5)
    batch = vlm.prepare_inputs([compressed], [QUESTION], [COMPLETION])
    logits = vlm(batch, use_cache=False).logits
    expected = uncompressed_logits(vlm, torch.cat([first, second]), batch)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)

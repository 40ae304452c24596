"""Pixel patchification, vision encoding and the batch layout built by VideoVLM."""

from __future__ import annotations

import pytest
import torch
from transformers import Qwen2VLVideoProcessor

from marc.compression import Budget

from .conftest import COMPLETION, QUESTION, keep_all, random_frames, random_video


@pytest.mark.parametrize("num_frames,height,width", [(4, 56, 84), (5, 28, 56)])
def test_pixel_inputs_equal_official_processor(vlm, num_frames, height, width):
    frames = random_frames(num_frames, height, width, seed=num_frames)
    processor = Qwen2VLVideoProcessor(
        size={"shortest_edge": 28 * 28, "longest_edge": 1024 * 28 * 28}, do_resize=False
    )
    expected = processor(videos=[frames], return_tensors="pt", cap_pixels_per_frame=False)
    pixel_values, grid_thw = vlm.pixel_inputs(frames)
    assert torch.equal(grid_thw, expected["video_grid_thw"])
    assert torch.equal(pixel_values, expected["pixel_values_videos"])


def test_pixel_inputs_rejects_sizes_off_the_28_px_grid(vlm):
    with pytest.raises(ValueError, match="multiples of 28"):
        vlm.pixel_inputs(random_frames(2, 56, 50))


def test_encode_video_is_time_major(vlm):
    frames = random_frames(6, 56, 84)
    with torch.no_grad():
        tokens, grid = vlm.encode_video(frames)
        second_group, _ = vlm.encode_video(frames[2:4])
    assert grid == (3, 2, 3) and tokens.shape == (3, 6, 128)
    # Each temporal group goes through the vision tower on its own (per-group attention).
    torch.testing.assert_close(tokens[1], second_group[0], atol=1e-4, rtol=1e-4)


def test_prepare_inputs_layout(vlm):
    videos = [random_video(1, 2, 3), random_video(2, 2, 2)]
    batch = vlm.prepare_inputs(videos, [QUESTION, "how many objects ?"], [COMPLETION, "up"])
    ids, prompt_length = batch["input_ids"], batch["prompt_length"]
    assert (ids == vlm.video_token_id).sum(1).tolist() == [6, 8]
    assert torch.equal(batch["mm_token_type_ids"] == 2, ids == vlm.video_token_id)
    assert batch["video_grid_thw"].tolist() == [[1, 4, 6], [2, 4, 4]]
    assert batch["mm_encoder_outputs"]["video"].pooler_output[1].shape == (8, 128)
    # Left-padded prompts end together; completions start at column P and end with EOS.
    assert (batch["attention_mask"][:, prompt_length - 1] == 1).all()
    assert batch["attention_mask"][1, 0] == 0
    short = batch["completion_mask"][1].nonzero().flatten().tolist()
    assert short == [prompt_length, prompt_length + 1]
    assert ids[1, prompt_length + 1] == vlm.tokenizer.eos_token_id
    assert batch["attention_mask"][1, prompt_length + 2 :].sum() == 0


def test_positions_are_3d_for_the_compressed_grid(vlm):
    batch = vlm.prepare_inputs([random_video(1, 2, 3)], [QUESTION])
    positions, video = batch["position_ids"][:, 0], batch["mm_token_type_ids"][0] == 2
    assert positions.shape[0] == 3
    assert not torch.equal(positions[1], positions[2])  # height and width axes differ
    assert positions[0, video].unique().numel() == 1  # one temporal group
    one_d = torch.arange(positions.shape[1])
    assert not torch.equal(positions[0], one_d)
    # Text after the video continues from max(h, w) past its start, as transformers places it.
    start = positions[0, video][0]
    assert positions[0, video.nonzero().max() + 1] == start + 3


def test_prompt_must_hold_one_video_placeholder(vlm):
    video = random_video(1)
    prompt = vlm.build_prompt(QUESTION) + vlm.video_token
    with pytest.raises(ValueError, match="exactly one"):
        vlm.prepare_inputs([video], [prompt])
    with pytest.raises(ValueError, match="2 videos but 1 prompts"):
        vlm.prepare_inputs([video, video], [QUESTION])


def test_tiny_prompt_is_short_and_fully_known(vlm):
    ids = vlm.tokenizer(vlm.build_prompt(QUESTION))["input_ids"]
    assert vlm.tokenizer.unk_token_id not in ids
    assert ids.count(vlm.video_token_id) == 1 and len(ids) < 48


def test_a_batch_may_hold_more_videos_than_its_prompts_have_tokens(vlm):
    videos = [random_video(1, 1, 1, seed=i) for i in range(3)]
    batch = vlm.prepare_inputs(videos, ["a"] * 3)
    many = vlm.prepare_inputs(videos * 40, ["a"] * 120)
    assert many["input_ids"].shape[1] < 120  # more videos than positions per sequence
    assert torch.equal(many["position_ids"][:, :3], batch["position_ids"])
    assert torch.equal(many["position_ids"][:, 117:], batch["position_ids"])


def test_clip_spans_reach_the_compressor_as_temporal_groups(vlm):
    seen = []

    def recording(tokens, grid, budget, segments=None):
        seen.append((grid, segments))
        return keep_all(tokens, grid, budget)

    frames = random_frames(10)
    vlm.compress(frames, recording, Budget(frames=1), segments=[(0, 4), (4, 10)])
    assert seen == [((5, 2, 2), [(0, 2), (2, 5)])]
    vlm.compress(frames, recording, Budget(frames=1))
    assert seen[-1][1] is None


def test_a_clip_starting_inside_a_temporal_group_is_refused(vlm):
    with pytest.raises(ValueError, match="segment 1 starts at frame 3.*pad each clip"):
        vlm.group_segments([(0, 3), (3, 10)], 10)
    # The last clip may end on an odd frame: the vision tower pads the video itself.
    assert vlm.group_segments([(0, 4), (4, 9)], 9) == [(0, 2), (2, 5)]


def test_a_text_only_batch_drops_the_video_block(vlm):
    inputs = vlm.prepare_inputs([None, None], [QUESTION, QUESTION + " Options: A. red"])
    ids = inputs["input_ids"]
    for token in (vlm.video_token_id, vlm.vision_start_id, vlm.vision_end_id):
        assert not bool((ids == token).any())
    assert "mm_encoder_outputs" not in inputs
    # Text positions count up on all three axes, from the first real token of each row.
    row = inputs["position_ids"][:, 0][:, inputs["attention_mask"][0].bool()]
    assert torch.equal(row, torch.arange(row.shape[1]).expand(3, -1))
    out = vlm.generate([None], [QUESTION], max_new_tokens=3, do_sample=False)
    assert out.sequences.shape[0] == 1
    with pytest.raises(ValueError, match="all videos or all text-only"):
        vlm.prepare_inputs([None, random_video(1)], [QUESTION, QUESTION])

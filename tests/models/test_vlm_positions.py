"""M-RoPE positions of grid-shaped and token-level compressed videos (marc.models.positions)."""

from __future__ import annotations

import pytest
import torch

from marc.compression.base import CompressedVideo, grid_positions
from marc.models.positions import mrope_position_ids

from .conftest import COMPLETION, QUESTION, random_video

SHORT_QUESTION = "how many objects ?"
STEPS = 6


def as_token_level(video: CompressedVideo) -> CompressedVideo:
    """The same grid-shaped video as tokens [N, D] at the explicit positions of its grid."""
    return CompressedVideo(
        video.tokens.flatten(0, 1), video.grid, 1.0, positions=grid_positions(video.grid)
    )


def token_subset(grid, positions: list[tuple[int, int, int]], seed: int = 0) -> CompressedVideo:
    """Random tokens at the given (t, h, w) of ``grid``, in the order given."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randn(len(positions), 128, generator=generator)
    t, h, w = grid
    return CompressedVideo(tokens, grid, len(positions) / (t * h * w), torch.tensor(positions))


# Seven tokens of a (4, 2, 2) grid, deliberately not in time-major order.
SCATTERED = [(2, 1, 0), (0, 0, 1), (3, 1, 1), (0, 1, 0), (1, 0, 0), (3, 0, 1), (2, 0, 0)]


@pytest.mark.parametrize(
    "grids", [[(1, 2, 3), (2, 2, 2)], [(32, 2, 2), (1, 1, 1)], [(4, 1, 3), (3, 3, 2)]]
)
def test_positions_of_grid_videos_equal_get_rope_index(vlm, grids):
    videos = [random_video(*grid, seed=i) for i, grid in enumerate(grids)]
    batch = vlm.prepare_inputs(videos, [QUESTION, SHORT_QUESTION], [COMPLETION, "up"])
    expected, _ = vlm.model.model.get_rope_index(
        batch["input_ids"],
        mm_token_type_ids=batch["mm_token_type_ids"],
        video_grid_thw=batch["video_grid_thw"],
        attention_mask=batch["attention_mask"],
        second_per_grid_ts=[1] * len(videos),
    )
    assert torch.equal(batch["position_ids"], expected)


@pytest.mark.parametrize("grids", [[(1, 2, 3), (1, 2, 2)], [(3, 2, 2), (2, 1, 3)]])
@torch.no_grad()
def test_full_grid_as_explicit_positions_equals_the_grid_path(vlm, grids):
    grid_videos = [random_video(*grid, seed=i + 1) for i, grid in enumerate(grids)]
    token_videos = [as_token_level(v) for v in grid_videos]
    prompts, completions = [QUESTION, SHORT_QUESTION], [COMPLETION, "<answer> A </answer>"]
    by_grid = vlm.prepare_inputs(grid_videos, prompts, completions)
    by_tokens = vlm.prepare_inputs(token_videos, prompts, completions)
    assert by_grid["attention_mask"][1, 0] == 0  # the second prompt is left-padded
    assert by_tokens["video_grid_thw"] is None
    assert torch.equal(by_tokens["position_ids"], by_grid["position_ids"])
    logits = vlm(by_tokens, use_cache=False).logits
    torch.testing.assert_close(logits, vlm(by_grid, use_cache=False).logits, atol=1e-5, rtol=0)
    # The positions reach the model: the same tokens at other positions score differently.
    moved = [
        CompressedVideo(v.tokens, v.grid, 1.0, positions=v.positions.flip(0)) for v in token_videos
    ]
    other = vlm(vlm.prepare_inputs(moved, prompts, completions), use_cache=False).logits
    assert (other - logits).abs().max() > 1e-3


@torch.no_grad()
def test_token_subset_equals_hand_built_positions(vlm):
    grid = (4, 2, 2)
    video = token_subset(grid, SCATTERED, seed=3)
    batch = vlm.prepare_inputs([video], [QUESTION], [COMPLETION])
    logits = vlm(batch, use_cache=False).logits

    # The same sequence built by hand: text, one placeholder per token, text, completion.
    prompt = vlm.tokenizer(vlm.build_prompt(QUESTION), add_special_tokens=False)["input_ids"]
    at = prompt.index(vlm.video_token_id)
    before, after = prompt[:at], prompt[at + 1 :]
    completion = vlm.tokenizer(COMPLETION, add_special_tokens=False)["input_ids"]
    after = after + completion + [vlm.tokenizer.eos_token_id]
    n = len(SCATTERED)
    ids = torch.tensor([before + [vlm.video_token_id] * n + after])
    # The rule, written out: text before the video counts 0..s-1 on all three axes; token
    # (t, h, w) sits at (s + t * tokens_per_second, s + h, s + w) (one second per group);
    # the text after continues at s + max(H, W) on all three axes.
    s, tokens_per_second = len(before), vlm.model.config.vision_config.tokens_per_second
    _, height, width = grid
    columns = [[i, i, i] for i in range(s)]
    columns += [[s + t * tokens_per_second, s + h, s + w] for t, h, w in SCATTERED]
    columns += [[s + max(height, width) + k] * 3 for k in range(len(after))]
    position_ids = torch.tensor(columns).T.unsqueeze(1)  # [3, 1, L]
    # Features go straight into the embeddings, bypassing transformers' placeholder scatter.
    embeds = vlm.model.get_input_embeddings()(ids).clone()
    embeds[0, s : s + n] = video.tokens
    vlm.model.model.rope_deltas = None
    expected = vlm.model(
        inputs_embeds=embeds,
        attention_mask=torch.ones_like(ids),
        position_ids=position_ids,
        use_cache=False,
    ).logits
    assert torch.equal(batch["input_ids"], ids)
    assert torch.equal(batch["position_ids"], position_ids)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)


@torch.no_grad()
def argmax_without_cache(vlm, video, prompt: str, steps: int) -> list[int]:
    """Reference decoder: a full forward of the growing sequence per token, no KV cache."""
    tokens: list[int] = []
    for _ in range(steps):
        batch = vlm.prepare_inputs([video], [prompt], [tokens], add_eos=False)
        logits = vlm(batch, use_cache=False).logits[0, -1]
        logits[vlm.banned_token_ids + vlm.eos_token_ids] = -float("inf")
        tokens.append(int(logits.argmax()))
    return tokens


def test_greedy_generation_with_token_level_videos_equals_full_forwards(vlm):
    # The first video's temporal ids (t = 31) run past the end of its prompt.
    videos = [
        token_subset((32, 2, 2), [(0, 0, 0), (9, 1, 0), (31, 0, 1), (31, 1, 1), (20, 0, 0)], 1),
        token_subset((2, 2, 3), [(1, 0, 2), (0, 1, 1), (1, 1, 0)], 2),
    ]
    prompts = [QUESTION, SHORT_QUESTION]
    out = vlm.generate(
        videos,
        prompts,
        num_return_sequences=2,
        max_new_tokens=STEPS,
        min_new_tokens=STEPS,
        do_sample=False,
    )
    assert out.sequences.shape == (4, STEPS) and out.mask.sum() == 4 * STEPS
    for i, (video, prompt) in enumerate(zip(videos, prompts)):
        expected = argmax_without_cache(vlm, video, prompt, STEPS)
        assert out.sequences[2 * i].tolist() == expected
        assert out.sequences[2 * i + 1].tolist() == expected


@torch.no_grad()
def test_mixed_batch_rows_match_their_single_runs(vlm):
    videos = [random_video(2, 2, 3, seed=4), token_subset((4, 2, 2), SCATTERED, seed=5)]
    prompts = [SHORT_QUESTION, QUESTION]
    completions = [COMPLETION + " one two", "<answer> A </answer>"]
    batch = vlm.prepare_inputs(videos, prompts, completions)
    assert batch["video_grid_thw"] is None
    both = vlm.completion_logprobs(videos, prompts, completions)
    for i in range(2):
        alone_batch = vlm.prepare_inputs(
            videos[i : i + 1], prompts[i : i + 1], completions[i : i + 1]
        )
        kept = batch["attention_mask"][i].bool()
        assert torch.equal(batch["position_ids"][:, i, kept], alone_batch["position_ids"][:, 0])
        alone = vlm.completion_logprobs(
            videos[i : i + 1], prompts[i : i + 1], completions[i : i + 1]
        )
        length = alone.mask.shape[1]
        torch.testing.assert_close(both.logprobs[i, :length], alone.logprobs[0], atol=1e-5, rtol=0)
        assert both.mask[i, :length].tolist() == alone.mask[0].tolist()
        assert both.mask[i, length:].sum() == 0


def test_a_row_whose_placeholders_do_not_match_its_video_is_rejected():
    video = token_subset((4, 2, 2), SCATTERED)
    types = torch.tensor([[0, 0, 2, 2, 2, 0]])
    with pytest.raises(ValueError, match="row 0: expected one run of 7 video placeholders"):
        mrope_position_ids(types, torch.ones_like(types), [video], 2)
    split = torch.tensor([[0] + [2] * 3 + [0] + [2] * 4 + [0]])
    with pytest.raises(ValueError, match="found 7 placeholders between columns 1-8"):
        mrope_position_ids(split, torch.ones_like(split), [video], 2)

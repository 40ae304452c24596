"""Generation: greedy decoding agrees with full forwards and with transformers' generate."""

from __future__ import annotations

import pytest
import torch

from .conftest import QUESTION, random_video

STEPS = 8


@torch.no_grad()
def argmax_without_cache(vlm, video, question: str, steps: int) -> list[int]:
    """Reference decoder: a full forward per token, positions recomputed by transformers."""
    batch = vlm.prepare_inputs([video], [question])
    ids, types = batch["input_ids"], batch["mm_token_type_ids"]
    tokens = []
    for _ in range(steps):
        vlm.model.model.rope_deltas = None
        logits = vlm.model(
            input_ids=ids,
            mm_token_type_ids=types,
            video_grid_thw=batch["video_grid_thw"],
            mm_encoder_outputs=dict(batch["mm_encoder_outputs"]),
            use_cache=False,
        ).logits[0, -1]
        logits[vlm.banned_token_ids + vlm.eos_token_ids] = -float("inf")
        token = logits.argmax()
        tokens.append(token.item())
        ids = torch.cat([ids, token.view(1, 1)], dim=1)
        types = torch.cat([types, types.new_zeros(1, 1)], dim=1)
    return tokens


# (32, 2, 2): the video's temporal positions run past the text that follows it.
@pytest.mark.parametrize("grid", [(1, 2, 2), (3, 2, 3), (32, 2, 2)])
def test_greedy_generate_equals_step_by_step_argmax(vlm, grid):
    video = random_video(*grid, seed=grid[0])
    out = vlm.generate(
        [video], [QUESTION], max_new_tokens=STEPS, min_new_tokens=STEPS, do_sample=False
    )
    assert out.sequences[0].tolist() == argmax_without_cache(vlm, video, QUESTION, STEPS)
    assert out.mask.sum() == STEPS


@torch.no_grad()
def test_greedy_generate_equals_transformers_generate(vlm):
    video = random_video(32, 2, 2, seed=5)
    out = vlm.generate(
        [video], [QUESTION], max_new_tokens=STEPS, min_new_tokens=STEPS, do_sample=False
    )
    batch = vlm.prepare_inputs([video], [QUESTION])
    vlm.model.model.rope_deltas = None
    reference = vlm.model.generate(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        mm_token_type_ids=batch["mm_token_type_ids"],
        video_grid_thw=batch["video_grid_thw"],
        mm_encoder_outputs=dict(batch["mm_encoder_outputs"]),
        max_new_tokens=STEPS,
        min_new_tokens=STEPS,
        do_sample=False,
        suppress_tokens=vlm.banned_token_ids,
        pad_token_id=vlm.pad_token_id,
    )
    assert out.sequences[0].tolist() == reference[0, batch["input_ids"].shape[1] :].tolist()


def test_batched_greedy_generation_matches_single(vlm):
    videos = [random_video(1, 2, 2, seed=1), random_video(4, 2, 3, seed=2)]
    prompts = ["how many objects ?", QUESTION]
    kwargs = {"max_new_tokens": STEPS, "min_new_tokens": STEPS, "do_sample": False}
    both = vlm.generate(videos, prompts, **kwargs)
    for i in range(2):
        alone = vlm.generate([videos[i]], [prompts[i]], **kwargs)
        assert both.sequences[i].tolist() == alone.sequences[0].tolist()


def test_sampling_is_reproducible_grouped_and_masked(vlm):
    videos = [random_video(1, seed=1), random_video(2, seed=2)]
    prompts = [QUESTION, "how many objects ?"]
    eos = vlm.tokenizer.eos_token_id
    # The first seed whose sample ends some rows early, so the EOS path is exercised.
    for seed in range(3, 60):
        out = vlm.generate(videos, prompts, num_return_sequences=4, max_new_tokens=24, seed=seed)
        if (out.sequences == eos).any():
            break
    again = vlm.generate(videos, prompts, num_return_sequences=4, max_new_tokens=24, seed=seed)
    other = vlm.generate(videos, prompts, num_return_sequences=4, max_new_tokens=24, seed=seed + 1)
    assert torch.equal(out.sequences, again.sequences) and out.texts == again.texts
    assert not torch.equal(out.sequences, other.sequences)
    assert out.sequences.shape[0] == len(out.texts) == 8 and out.mask.shape == out.sequences.shape
    generated = out.sequences[out.mask.bool()]
    assert not torch.isin(generated, torch.tensor(vlm.banned_token_ids)).any()
    ended = 0
    for row, mask, text in zip(out.sequences.tolist(), out.mask.tolist(), out.texts):
        length = row.index(eos) + 1 if eos in row else len(row)
        ended += eos in row
        assert mask == [1] * length + [0] * (len(row) - length)
        assert all(t == vlm.pad_token_id for t in row[length:])
        kept = [t for t in row[:length] if t != eos]
        assert text == vlm.tokenizer.decode(kept, skip_special_tokens=True).strip()
    assert ended > 0


def test_top_p_keeps_only_the_nucleus(vlm):
    logits = torch.tensor([[4.0, 3.0, 0.0, -1.0]])
    generator = torch.Generator().manual_seed(0)
    picks = {vlm._pick(logits, True, 1.0, 0.5, generator).item() for _ in range(50)}
    assert picks == {0}
    picks = {vlm._pick(logits, True, 1.0, 0.9, generator).item() for _ in range(200)}
    assert picks == {0, 1}

"""Teacher-forced completion log-probabilities, their mask and the SFT loss."""

from __future__ import annotations

import torch

from .conftest import COMPLETION, QUESTION, random_video


@torch.no_grad()
def test_logprobs_match_full_forward(vlm):
    video = random_video(2, 2, 3)
    result = vlm.completion_logprobs([video], [QUESTION], [COMPLETION], return_logits=True)
    batch = vlm.prepare_inputs([video], [QUESTION], [COMPLETION])
    logits = vlm(batch, use_cache=False).logits.float()
    start = batch["prompt_length"]
    targets = batch["input_ids"][0, start:]
    expected = logits[0, start - 1 : -1].log_softmax(-1).gather(-1, targets[:, None]).squeeze(-1)
    torch.testing.assert_close(result.logprobs[0], expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(result.logits[0].float(), logits[0, start - 1 : -1])
    # Completion tokens plus the appended EOS.
    assert result.mask[0].tolist() == [1] * len(targets)
    assert targets[-1] == vlm.tokenizer.eos_token_id


@torch.no_grad()
def test_logprobs_do_not_depend_on_batch_padding(vlm):
    short = (random_video(1, 2, 2, seed=1), "how many objects ?", "<answer> A </answer>")
    long = (random_video(3, 2, 3, seed=2), QUESTION, COMPLETION + " one two three")
    alone = vlm.completion_logprobs([short[0]], [short[1]], [short[2]])
    for order in ([short, long], [long, short]):
        videos, prompts, completions = zip(*order)
        batched = vlm.completion_logprobs(list(videos), list(prompts), list(completions))
        row = 0 if order[0] is short else 1
        length = alone.mask.shape[1]
        torch.testing.assert_close(
            batched.logprobs[row, :length], alone.logprobs[0], atol=1e-5, rtol=0
        )
        assert batched.mask[row, :length].tolist() == alone.mask[0].tolist()
        assert batched.mask[row, length:].sum() == 0


@torch.no_grad()
def test_mask_stops_after_the_first_eos(vlm):
    eos, word = vlm.tokenizer.eos_token_id, vlm.tokenizer.convert_tokens_to_ids("red")
    ids = torch.tensor([[word, word, eos, word, word], [word, word, word, word, word]])
    video = random_video(1)
    result = vlm.completion_logprobs([video, video], [QUESTION, QUESTION], ids)
    assert result.mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert (result.logprobs[0, 3:] == 0).all() and (result.logprobs[1] < 0).all()


def test_generated_ids_score_with_the_generation_mask(vlm):
    video = random_video(2, seed=4)
    out = vlm.generate([video], [QUESTION], num_return_sequences=3, max_new_tokens=12, seed=0)
    scored = vlm.completion_logprobs([video] * 3, [QUESTION] * 3, out.sequences)
    assert torch.equal(scored.mask, out.mask)


def test_sft_loss_is_masked_cross_entropy_and_trains_visual_tokens(vlm):
    video = random_video(2, 2, 2, seed=6)
    video.tokens.requires_grad_(True)
    loss = vlm.sft_loss([video], [QUESTION], [COMPLETION])
    logprobs, mask, _ = vlm.completion_logprobs([video], [QUESTION], [COMPLETION])
    torch.testing.assert_close(loss, -(logprobs.sum() / mask.sum()))
    loss.backward()
    assert video.tokens.grad is not None and video.tokens.grad.abs().sum() > 0
    assert vlm.model.lm_head.weight.grad is not None
    vlm.model.zero_grad(set_to_none=True)

"""Saving a VideoVLM and loading it back, offline, gives the same model."""

from __future__ import annotations

import torch

from marc.compression.base import Budget
from marc.models.vlm import VideoVLM

from .conftest import COMPLETION, QUESTION, keep_all, random_video


def test_save_then_from_pretrained_gives_same_outputs(vlm, tmp_path):
    vlm.save_pretrained(tmp_path)
    loaded = VideoVLM.from_pretrained(tmp_path).eval()
    assert loaded.frame_size == vlm.frame_size and loaded.system_prompt == vlm.system_prompt
    assert loaded.tokenizer(COMPLETION)["input_ids"] == vlm.tokenizer(COMPLETION)["input_ids"]
    video = random_video(2, 2, 3)
    with torch.no_grad():
        expected = vlm.completion_logprobs([video], [QUESTION], [COMPLETION]).logprobs
        actual = loaded.completion_logprobs([video], [QUESTION], [COMPLETION]).logprobs
    torch.testing.assert_close(actual, expected, atol=0, rtol=0)
    kwargs = {"max_new_tokens": 6, "do_sample": True, "seed": 0}
    assert (
        loaded.generate([video], [QUESTION], **kwargs).texts
        == vlm.generate([video], [QUESTION], **kwargs).texts
    )


def test_from_pretrained_in_bfloat16(tmp_path):
    VideoVLM.tiny(seed=1).save_pretrained(tmp_path)
    loaded = VideoVLM.from_pretrained(tmp_path, torch_dtype=torch.bfloat16)
    assert loaded.dtype == torch.bfloat16 and loaded.processor is None
    frames = torch.randint(0, 256, (2, 3, 56, 56), dtype=torch.uint8)
    with torch.no_grad():
        video = loaded.compress(frames, keep_all, Budget(frames=1))
        out = loaded.generate([video], [QUESTION], max_new_tokens=4, min_new_tokens=4, seed=0)
        scored = loaded.completion_logprobs([video], [QUESTION], out.sequences)
    assert video.tokens.dtype == torch.bfloat16 and out.sequences.shape == (1, 4)
    assert torch.isfinite(scored.logprobs).all()

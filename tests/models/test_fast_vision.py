"""marc.models.fast_vision: the batched window attention and matmul patch embedding give
the same visual tokens and gradients as transformers' own vision tower."""

import copy

import pytest
import torch

from marc.models.fast_vision import ATTENTION_NAME, PatchMatmul
from marc.models.vlm import VideoVLM


def _plain_copy(vlm: VideoVLM):
    """The same weights with transformers' own attention and patch embedding."""
    model = copy.deepcopy(vlm.model)
    model.model.visual.config._attn_implementation = "sdpa"
    model.model.visual.patch_embed.proj.__class__ = torch.nn.Conv3d
    return model


def _encode(model, vlm, frames):
    pixels, grid_thw = vlm.pixel_inputs(frames)
    return model.model.get_video_features(pixels, grid_thw).pooler_output[0]


@pytest.mark.parametrize(
    ("frame_size", "frames"), [(56, 9), (140, 4)], ids=["equal-windows", "unequal"]
)
def test_same_tokens_and_gradients_as_transformers(frame_size, frames):
    vlm = VideoVLM.tiny(seed=0)
    assert vlm.model.model.visual.config._attn_implementation == ATTENTION_NAME
    assert type(vlm.model.model.visual.patch_embed.proj) is PatchMatmul
    plain = _plain_copy(vlm)
    video = torch.randint(0, 256, (frames, 3, frame_size, frame_size), dtype=torch.uint8)
    fast, reference = _encode(vlm.model, vlm, video), _encode(plain, vlm, video)
    torch.testing.assert_close(fast, reference, atol=1e-5, rtol=1e-5)
    fast.pow(2).sum().backward()
    reference.pow(2).sum().backward()
    for name in ("patch_embed.proj.weight", "blocks.0.attn.qkv.weight"):
        got = vlm.model.model.visual.get_parameter(name).grad
        want = plain.model.visual.get_parameter(name).grad
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_the_saved_model_is_transformers_own(tmp_path):
    vlm = VideoVLM.tiny(seed=0)
    vlm.save_pretrained(tmp_path)
    config = (tmp_path / "config.json").read_text()
    assert ATTENTION_NAME not in config
    loaded = VideoVLM.from_pretrained(tmp_path)
    assert loaded.model.model.visual.config._attn_implementation == ATTENTION_NAME
    assert set(loaded.model.state_dict()) == set(vlm.model.state_dict())


def test_the_vision_attention_goes_through_the_chunked_implementation():
    from transformers import AttentionInterface

    from marc.models import fast_vision

    calls = []

    def counting(*args, **kwargs):
        calls.append(kwargs["cu_seq_lens_q"].numel() - 1)
        return fast_vision.chunked_attention(*args, **kwargs)

    AttentionInterface.register(ATTENTION_NAME, counting)
    try:
        vlm = VideoVLM.tiny(seed=0)
        vlm.encode_video(torch.randint(0, 256, (8, 3, 56, 56), dtype=torch.uint8))
    finally:
        AttentionInterface.register(ATTENTION_NAME, fast_vision.chunked_attention)
    # One call per block (2 blocks), each over every window of the video at once.
    assert len(calls) == 2 and all(windows >= 4 for windows in calls)

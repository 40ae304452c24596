"""A Qwen2.5-VL checkpoint in the hub's layout loads offline, prompts with its own chat
template and vision tokens, and a folder missing a piece fails naming it."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from marc.compression.base import Budget
from marc.models.checkpoint import CheckpointError
from marc.models.folder import ModelFolderError
from marc.models.vlm import DEFAULT_SYSTEM_PROMPT, VideoVLM

from .conftest import keep_all, random_frames

QUESTION = "What colour comes first? Options: A. red B. green"


@pytest.fixture(scope="module")
def loaded(qwen_checkpoint_dir) -> VideoVLM:
    return VideoVLM.from_pretrained(qwen_checkpoint_dir).eval()


def test_the_hub_layout_loads_every_weight_offline(qwen_checkpoint_dir, loaded):
    names = sorted(p.name for p in qwen_checkpoint_dir.iterdir())
    assert "model.safetensors.index.json" in names and "video_preprocessor_config.json" not in names
    index = json.loads((qwen_checkpoint_dir / "model.safetensors.index.json").read_text())
    assert any(k.startswith("visual.") for k in index["weight_map"])  # the hub's key layout
    state = loaded.model.state_dict()
    from safetensors.torch import load_file

    shard = load_file(qwen_checkpoint_dir / "model-00001-of-00002.safetensors")
    for key, value in shard.items():
        new = (
            key.replace("visual.", "model.visual.", 1)
            if key.startswith("visual.")
            else key.replace("model.", "model.language_model.", 1)
        )
        assert torch.equal(state[new], value), key
    assert loaded.dtype == torch.bfloat16  # the checkpoint's own dtype, as the 3B's
    assert type(loaded.tokenizer).__name__ == "Qwen2Tokenizer"
    assert type(loaded.processor).__name__ == "Qwen2_5_VLProcessor"
    assert loaded.eos_token_ids == [
        loaded.tokenizer.convert_tokens_to_ids("<|im_end|>"),
        loaded.pad_token_id,
    ]


def test_prompts_use_the_checkpoints_chat_template_and_vision_tokens(loaded):
    prompt = loaded.build_prompt(QUESTION)
    assert prompt == (
        f"<|im_start|>system\n{DEFAULT_SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n"
        f"<|vision_start|><|video_pad|><|vision_end|>{QUESTION}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    with torch.no_grad():
        video = loaded.compress(random_frames(4), keep_all, Budget(frames=8))
    inputs = loaded.prepare_inputs([video], [QUESTION])
    ids = inputs["input_ids"][0].tolist()
    config = loaded.model.config
    assert ids.count(config.video_token_id) == video.num_tokens == 8
    start = ids.index(config.vision_start_token_id)
    assert ids[start + 1 : start + 9] == [config.video_token_id] * 8
    assert ids[start + 9] == config.vision_end_token_id


def test_it_generates_and_scores_with_a_compressed_video(loaded):
    with torch.no_grad():
        video = loaded.compress(random_frames(4), keep_all, Budget(frames=1))
        out = loaded.generate([video], [QUESTION], max_new_tokens=5, seed=0)
        scored = loaded.completion_logprobs([video], [QUESTION], ["<answer> A </answer>"])
    # Ids past the tokenizer (the embedding is padded to a multiple of 64) are never drawn.
    assert int(out.sequences.max()) < len(loaded.tokenizer)
    assert torch.isfinite(scored.logprobs).all() and scored.mask.sum() > 0


def test_a_saved_copy_loads_back_the_same(loaded, tmp_path):
    loaded.save_pretrained(tmp_path)
    again = VideoVLM.from_pretrained(tmp_path).eval()
    assert again.build_prompt(QUESTION) == loaded.build_prompt(QUESTION)
    video = random_video_for(loaded)
    with torch.no_grad():
        a = loaded.completion_logprobs([video], [QUESTION], ["<answer> B </answer>"]).logprobs
        b = again.completion_logprobs([video], [QUESTION], ["<answer> B </answer>"]).logprobs
    torch.testing.assert_close(a, b, atol=0, rtol=0)


def random_video_for(vlm: VideoVLM):
    with torch.no_grad():
        return vlm.compress(random_frames(2), keep_all, Budget(frames=1))


def test_a_video_preprocessor_config_loads_too(qwen_checkpoint_writer, tmp_path):
    folder = qwen_checkpoint_writer(tmp_path / "newer", video_preprocessor=True)
    vlm = VideoVLM.from_pretrained(folder)
    assert type(vlm.processor.video_processor).__name__ == "Qwen2VLVideoProcessor"


def _copy(folder, tmp_path, name):
    copy = tmp_path / name
    shutil.copytree(folder, copy)
    return copy


def test_a_folder_without_a_tokenizer_is_named(qwen_checkpoint_dir, tmp_path):
    copy = _copy(qwen_checkpoint_dir, tmp_path, "no_tokenizer")
    for name in ("tokenizer.json", "vocab.json", "merges.txt"):
        (copy / name).unlink()
    with pytest.raises(
        CheckpointError, match=r"no_tokenizer: no tokenizer: expected tokenizer.json"
    ):
        VideoVLM.from_pretrained(copy)


def test_a_tokenizer_without_vision_tokens_is_named(qwen_checkpoint_dir, tmp_path):
    copy = _copy(qwen_checkpoint_dir, tmp_path, "no_vision_tokens")
    vision = {
        "<|vision_start|>",
        "<|vision_end|>",
        "<|vision_pad|>",
        "<|image_pad|>",
        "<|video_pad|>",
    }
    tokenizer = json.loads((copy / "tokenizer.json").read_text())
    tokenizer["added_tokens"] = [t for t in tokenizer["added_tokens"] if t["content"] not in vision]
    (copy / "tokenizer.json").write_text(json.dumps(tokenizer))
    settings = json.loads((copy / "tokenizer_config.json").read_text())
    settings["added_tokens_decoder"] = {
        k: v for k, v in settings["added_tokens_decoder"].items() if v["content"] not in vision
    }
    settings["additional_special_tokens"] = [
        t for t in settings["additional_special_tokens"] if t not in vision
    ]
    (copy / "tokenizer_config.json").write_text(json.dumps(settings))
    with pytest.raises(
        CheckpointError,
        match=r"no_vision_tokens: the tokenizer has no vision token <\|video_pad\|>",
    ):
        VideoVLM.from_pretrained(copy)


@pytest.mark.parametrize("model_type", ["qwen2_vl", "llama", None])
def test_a_config_that_is_not_qwen2_5_vl_is_named(qwen_checkpoint_dir, tmp_path, model_type):
    copy = _copy(qwen_checkpoint_dir, tmp_path, f"not_{model_type}")
    config = json.loads((copy / "config.json").read_text())
    if model_type is None:
        (copy / "config.json").unlink()
        with pytest.raises(ModelFolderError, match=r"no config.json"):
            VideoVLM.from_pretrained(copy)
        return
    else:
        config["model_type"] = model_type
        (copy / "config.json").write_text(json.dumps(config))
        match = (
            rf"not_{model_type}: config.json describes model_type '{model_type}'.*not Qwen2.5-VL"
        )
    with pytest.raises(CheckpointError, match=match):
        VideoVLM.from_pretrained(copy)

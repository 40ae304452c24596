"""Shared fixtures: a small generated event-video dataset, made once per test session, and a
guard that fails any test reaching the network from this process."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from marc.data.synthetic import GeneratorConfig, generate_dataset


@pytest.fixture(scope="session")
def tiny_dataset_config() -> GeneratorConfig:
    """Generator options of the small dataset the tests share."""
    return GeneratorConfig(num_videos=10, seed=3)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory, tiny_dataset_config):
    """Root folder of a generated dataset of 10 videos (train 7, val 1, test 2)."""
    root = tmp_path_factory.mktemp("synthetic")
    generate_dataset(root, tiny_dataset_config)
    return root


@pytest.fixture(scope="session")
def short_clips_dataset(tmp_path_factory):
    """Root of a generated dataset of 4 videos of 16 frames at 56 px (fast VLM tests)."""
    root = tmp_path_factory.mktemp("short_clips")
    generate_dataset(root, GeneratorConfig(num_videos=4, num_frames=16, frame_size=56))
    return root


@pytest.fixture(scope="session")
def tiny_vlm_dir(tmp_path_factory):
    """A random-init tiny VideoVLM saved with save_pretrained (a stand-in teacher/student)."""
    from marc.models.vlm import VideoVLM

    path = tmp_path_factory.mktemp("tiny_vlm") / "model"
    VideoVLM.tiny(seed=0).save_pretrained(path)
    return path


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and a shared CPU punishes them."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


class NetworkAccessError(RuntimeError):
    """A test of this process tried to reach a host other than this machine."""


def _is_local(host) -> bool:
    if host in (None, "", "localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False  # a host name other than localhost: a DNS look-up on the network


@pytest.fixture(autouse=True, scope="session")
def network_attempts():
    """Every non-loopback connection or name look-up raises NetworkAccessError and is recorded
    here: nothing in marc may download at run time unless asked to (docs/RELIABILITY.md).
    Child processes (the DDP and command-line tests) are not covered."""
    attempts: list[str] = []
    connect, getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def guarded_connect(self, address, *args, **kwargs):
        host = address[0] if isinstance(address, tuple) else None
        if self.family != socket.AF_UNIX and not _is_local(host):
            attempts.append(f"connect {address}")
            raise NetworkAccessError(f"a test tried to connect to {address}")
        return connect(self, address, *args, **kwargs)

    def guarded_getaddrinfo(host, *args, **kwargs):
        if not _is_local(host.decode() if isinstance(host, bytes) else host):
            attempts.append(f"getaddrinfo {host}")
            raise NetworkAccessError(f"a test tried to look up {host}")
        return getaddrinfo(host, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", guarded_connect)
        patch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
        yield attempts


def _video_r1_rows() -> list[dict]:
    """Video-R1-260k style rows: every problem type, video and image rows."""
    mc = ["A. red", "B. green", "C. blue", "D. grey"]
    return [
        {"problem_id": 1, "problem": "What colour comes first?", "data_type": "video",
         "problem_type": "multiple choice", "options": mc, "process": "<think>red first</think>",
         "solution": "<answer>A</answer>", "path": "./videos/clip_a.mp4", "data_source": "test"},
        {"problem_id": 2, "problem": "How many colours are shown?", "data_type": "video",
         "problem_type": "numerical", "options": [], "process": "<think>two</think>",
         "solution": "<answer>2</answer>", "path": "./videos/clip_b.mp4", "data_source": "test"},
        {"problem_id": 3, "problem": "What is written?", "data_type": "image",
         "problem_type": "OCR", "options": [], "process": "<think>letters</think>",
         "solution": "<answer>open now</answer>", "path": "./images/sign.png", "data_source": "test"},
        {"problem_id": 4, "problem": "Describe the video.", "data_type": "video",
         "problem_type": "free-form", "options": [], "process": "<think>colours</think>",
         "solution": "<answer>a red screen turns blue</answer>", "path": "./videos/clip_c.mp4",
         "data_source": "test"},
        {"problem_id": 5, "problem": "How many seconds does the red part last?",
         "data_type": "video", "problem_type": "regression", "options": [],
         "process": "<think>about three</think>", "solution": "<answer>3.0</answer>",
         "path": "./videos/clip_a.mp4", "data_source": "test"},
        {"problem_id": 6, "problem": "Which colour fills the picture?", "data_type": "image",
         "problem_type": "multiple choice", "options": mc, "process": "<think>green</think>",
         "solution": "<answer>B</answer>", "path": "./images/green.jpg", "data_source": "test"},
    ]  # fmt: skip


def write_video_r1_dataset(root):
    """A folder laid out like Video-R1's data: videos/, images/ and a JSON array file.

    Videos are 48 frames at 8 fps (6 s, 56 px) with a hard cut from one colour to another
    (plus noise); images are a 70x50 PNG and a 64x64 JPEG.
    """
    import json

    import numpy as np
    from PIL import Image

    from marc.data.synthetic import write_mp4

    rng = np.random.default_rng(0)
    colours = {"clip_a": [(200, 30, 30), (30, 30, 200)], "clip_b": [(30, 200, 30), (90, 90, 90)],
               "clip_c": [(200, 30, 30), (30, 30, 200)]}  # fmt: skip
    for name, (first, second) in colours.items():
        frames = np.empty((48, 56, 56, 3), np.uint8)
        frames[:24], frames[24:] = first, second
        noise = rng.integers(-12, 13, frames.shape)
        write_mp4(root / f"videos/{name}.mp4", np.clip(frames + noise, 0, 255).astype(np.uint8), 8)
    (root / "images").mkdir(parents=True, exist_ok=True)
    sign = np.full((50, 70, 3), 240, np.uint8)
    sign[20:30, 10:60] = 20
    Image.fromarray(sign).save(root / "images/sign.png")
    Image.fromarray(np.full((64, 64, 3), (30, 200, 30), np.uint8)).save(root / "images/green.jpg")
    rows = _video_r1_rows()
    (root / "Video-R1-test.json").write_text(json.dumps(rows, indent=2))
    return root / "Video-R1-test.json"


@pytest.fixture(scope="session")
def video_r1_dataset(tmp_path_factory):
    """Root of a small Video-R1-schema folder; its annotations are ``Video-R1-test.json``."""
    root = tmp_path_factory.mktemp("video_r1")
    write_video_r1_dataset(root)
    return root


def write_tiny_dual_encoder(path, kind: str = "siglip", text_projection: int | None = None):
    """A randomly initialised SigLIP or CLIP saved with save_pretrained, with its tokenizer
    (a byte-level BPE trained here, as a fast tokenizer) and image processor.

    ``text_projection`` (SigLIP) gives the text tower another output size than the vision
    tower's 32, a broken dual encoder.
    """
    import torch
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        PreTrainedTokenizerFast,
        SiglipConfig,
        SiglipImageProcessor,
        SiglipModel,
    )

    corpus = ["a red square moves left", "what colour comes first", "how many cars pass"] * 10
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.normalizer = normalizers.Lowercase()
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<pad>", "<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer)
    end = ("</s>", bpe.token_to_id("</s>"))
    bpe.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[end])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, pad_token="<pad>", unk_token="<unk>", bos_token="<s>",
        eos_token="</s>", model_max_length=16,
    )  # fmt: skip
    ids = {
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=16, **ids)  # fmt: skip
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, image_size=32, patch_size=8)  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if kind == "siglip":
            text["projection_size"] = text_projection or 32
            model = SiglipModel(SiglipConfig(text_config=text, vision_config=vision))
            processor = SiglipImageProcessor(size={"height": 32, "width": 32})
        else:
            model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=24))
            processor = CLIPImageProcessor(
                size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
            )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    processor.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_siglip_dir(tmp_path_factory):
    """A tiny random SigLIP folder (both towers 32-d), tokenizer and image processor."""
    return write_tiny_dual_encoder(tmp_path_factory.mktemp("siglip") / "model", "siglip")


@pytest.fixture(scope="session")
def dual_encoder_writer():
    """``write_tiny_dual_encoder`` for tests that need other layouts or broken towers."""
    return write_tiny_dual_encoder


# Qwen2.5-VL's chat template, verbatim from the hub's chat_template.json.
QWEN_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture "
    "{{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video "
    "{{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Qwen2's added tokens in their hub order (the first 14 special), after the BPE vocabulary.
QWEN_ADDED_TOKENS = [
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
    ("<|object_ref_start|>", True), ("<|object_ref_end|>", True), ("<|box_start|>", True),
    ("<|box_end|>", True), ("<|quad_start|>", True), ("<|quad_end|>", True),
    ("<|vision_start|>", True), ("<|vision_end|>", True), ("<|vision_pad|>", True),
    ("<|image_pad|>", True), ("<|video_pad|>", True), ("<tool_call>", False),
    ("</tool_call>", False), ("<|fim_prefix|>", False), ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False), ("<|fim_pad|>", False), ("<|repo_name|>", False),
    ("<|file_sep|>", False),
]  # fmt: skip
QWEN_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _qwen_bpe_files(folder, corpus: list[str]) -> dict:
    """A byte-level BPE trained here with Qwen2's pipeline, written as the hub's tokenizer
    files (tokenizer.json, vocab.json, merges.txt); returns the added tokens' ids."""
    import json

    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        trainers,
    )

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])  # fmt: skip
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    bpe.train_from_iterator(corpus, trainer)
    model = json.loads(bpe.to_str())["model"]
    vocab = model["vocab"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    # The hub's vocab.json and merges.txt beside tokenizer.json.
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    bpe.add_tokens([AddedToken(t, special=s, normalized=False) for t, s in QWEN_ADDED_TOKENS])
    bpe.save(str(folder / "tokenizer.json"))
    return {token: bpe.token_to_id(token) for token, _ in QWEN_ADDED_TOKENS}


def write_qwen_checkpoint(folder, video_preprocessor: bool = False, seed: int = 0):
    """A small Qwen2.5-VL folder laid out as the hub's Qwen/Qwen2.5-VL-3B-Instruct.

    Files: config.json (the hub's 4.4x-era flat form), two safetensors shards in the hub's
    key layout (``model.layers.*``, ``visual.*``; no lm_head, tied) with
    model.safetensors.index.json, a byte-level BPE tokenizer trained here (tokenizer.json,
    vocab.json, merges.txt) with Qwen's 22 added tokens after it, tokenizer_config.json
    (Qwen2Tokenizer, its special tokens and chat template), chat_template.json,
    preprocessor_config.json and generation_config.json. The hub's 3B has no
    video_preprocessor_config.json; ``video_preprocessor`` writes one too, as checkpoints
    saved by newer transformers have.
    """
    import json
    from pathlib import Path

    import torch
    from safetensors.torch import save_file
    from transformers import Qwen2_5_VLForConditionalGeneration

    from marc.models.tiny import tiny_qwen2_5_vl_config
    from marc.vocabulary import vocabulary

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    words = " ".join(vocabulary())
    corpus = [row["problem"] + " " + " ".join(row["options"]) for row in _video_r1_rows()]
    corpus += [words, "<think> reasoning </think> <answer> B </answer> 0123456789 . , %"] * 3
    ids = _qwen_bpe_files(folder, corpus)
    vocab_size = -(-(max(ids.values()) + 1) // 64) * 64  # padded like the hub's 151936
    tiny = tiny_qwen2_5_vl_config(
        vocab_size,
        video_token_id=ids["<|video_pad|>"],
        image_token_id=ids["<|image_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        initializer_range=0.2,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(tiny)
    state = {}
    for key, value in model.state_dict().items():
        if key == "lm_head.weight":
            continue  # tied to the embeddings: the hub's files have no lm_head
        key = key.replace("model.language_model.", "model.").replace("model.visual.", "visual.")
        state[key] = value.to(torch.bfloat16).contiguous()
    keys = sorted(state)
    shards = {"model-00001-of-00002.safetensors": keys[: len(keys) // 2],
              "model-00002-of-00002.safetensors": keys[len(keys) // 2 :]}  # fmt: skip
    for name, part in shards.items():
        save_file({k: state[k] for k in part}, folder / name, metadata={"format": "pt"})
    index = {
        "metadata": {"total_size": sum(v.numel() * v.element_size() for v in state.values())},
        "weight_map": {k: name for name, part in shards.items() for k in part},
    }
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    text, vision = tiny.text_config, tiny.vision_config
    config = {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "attention_dropout": 0.0,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "vision_token_id": ids["<|vision_pad|>"],
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "hidden_act": "silu",
        "hidden_size": text.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": text.intermediate_size,
        "max_position_embeddings": text.max_position_embeddings,
        "max_window_layers": 70,
        "model_type": "qwen2_5_vl",
        "num_attention_heads": text.num_attention_heads,
        "num_hidden_layers": text.num_hidden_layers,
        "num_key_value_heads": text.num_key_value_heads,
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0,
        "sliding_window": 32768,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.41.2",
        "use_cache": True,
        "use_sliding_window": False,
        "vision_config": {
            "depth": vision.depth,
            "hidden_act": "silu",
            "hidden_size": vision.hidden_size,
            "intermediate_size": vision.intermediate_size,
            "num_heads": vision.num_heads,
            "in_chans": 3,
            "out_hidden_size": vision.out_hidden_size,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "spatial_patch_size": 14,
            "window_size": 112,
            "fullatt_block_indexes": list(vision.fullatt_block_indexes),
            "tokens_per_second": 2,
            "temporal_patch_size": 2,
        },
        "rope_scaling": {
            "type": "mrope",
            "mrope_section": list(text.rope_parameters["mrope_section"]),
        },
        "vocab_size": vocab_size,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    generation = {
        "bos_token_id": ids["<|endoftext|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "do_sample": True,
        "eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]],
        "repetition_penalty": 1.05,
        "temperature": 1e-06,
        "transformers_version": "4.49.0",
    }
    (folder / "generation_config.json").write_text(json.dumps(generation, indent=2))
    decoder = {
        str(ids[token]): {"content": token, "lstrip": False, "normalized": False,
                          "rstrip": False, "single_word": False, "special": special}
        for token, special in QWEN_ADDED_TOKENS
    }  # fmt: skip
    tokenizer_config = {
        "add_prefix_space": False,
        "added_tokens_decoder": decoder,
        "additional_special_tokens": [t for t, s in QWEN_ADDED_TOKENS[1:14]],
        "bos_token": None,
        "chat_template": QWEN_CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 131072,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    (folder / "chat_template.json").write_text(json.dumps({"chat_template": QWEN_CHAT_TEMPLATE}))
    processor = {
        "min_pixels": 3136,
        "max_pixels": 12845056,
        "patch_size": 14,
        "temporal_patch_size": 2,
        "merge_size": 2,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": "Qwen2_5_VLProcessor",
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(processor, indent=2))
    if video_preprocessor:
        video = {**processor, "video_processor_type": "Qwen2VLVideoProcessor"}
        video.pop("image_processor_type")
        (folder / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2))
    return folder


@pytest.fixture(scope="session")
def qwen_checkpoint_dir(tmp_path_factory):
    """A small Qwen2.5-VL checkpoint in the hub's Qwen2.5-VL-3B-Instruct layout."""
    return write_qwen_checkpoint(tmp_path_factory.mktemp("qwen") / "Qwen2.5-VL-3B-Instruct")


@pytest.fixture(scope="session")
def qwen_checkpoint_writer():
    """``write_qwen_checkpoint``, for variants (another seed, a video preprocessor config)."""
    return write_qwen_checkpoint

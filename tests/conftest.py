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

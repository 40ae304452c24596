"""Shared fixtures: a small generated event-video dataset, made once per test session."""

from __future__ import annotations

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

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


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and a shared CPU punishes them."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)

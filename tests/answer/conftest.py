"""Fixtures of the answering tests: a saved tiny retriever next to the shared tiny model."""

from __future__ import annotations

import pytest
import torch

from marc.retrieval.encoders import ClipEncoder, QueryEncoder
from marc.retrieval.retriever import VisualMemoryRetriever
from marc.retrieval.segment import ContentChangeSegmenter


@pytest.fixture(scope="session")
def tiny_retriever_dir(tmp_path_factory):
    """An untrained retriever (content-change segmenter, relation head) saved to a folder."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ask") / "retriever"
    VisualMemoryRetriever(
        ContentChangeSegmenter(),
        ClipEncoder(embed_dim=16, image_size=56),
        QueryEncoder(embed_dim=16, max_offset=1),
        k=1,
    ).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def videos(short_clips_dataset):
    """Two generated videos of 16 frames (56 px)."""
    return sorted((short_clips_dataset / "videos").glob("*.mp4"))[:2]

"""Fixtures of the report tests: stage exports and a retriever laid out as make demo does."""

from __future__ import annotations

import shutil

import pytest
import torch

from marc.retrieval.encoders import ClipEncoder, QueryEncoder
from marc.retrieval.retriever import VisualMemoryRetriever
from marc.retrieval.segment import ContentChangeSegmenter


def untrained_retriever(folder):
    """An untrained retriever (seeded, 8-d embeddings, k=2) saved to ``folder``."""
    torch.manual_seed(0)
    retriever = VisualMemoryRetriever(
        ContentChangeSegmenter(),
        ClipEncoder(embed_dim=8, image_size=56),
        QueryEncoder(embed_dim=8),
        k=2,
    )
    retriever.save_pretrained(folder)
    return folder


def make_artifacts(root, model_dir):
    """Copies of one tiny model as the three stage exports, and an untrained retriever."""
    for stage in ("teacher", "warmup", "cgrpo"):
        shutil.copytree(model_dir, root / stage / "model")
    untrained_retriever(root / "retriever")
    return root


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, tiny_vlm_dir):
    """An ``artifacts/`` folder shared by a test module."""
    return make_artifacts(tmp_path_factory.mktemp("report") / "artifacts", tiny_vlm_dir)

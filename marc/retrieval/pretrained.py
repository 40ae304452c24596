"""Save and load a whole Visual Memory Retriever: encoders, segmenter, k and clip memory.

Layout of a retriever folder (written to a temporary folder, then renamed into place)::

    retriever.json        how to rebuild the encoders and segmenter, k, max_clip_frames
    clip_encoder.pt       state dict (tensors only; loaded with weights_only=True)
    query_encoder.pt      state dict
    memory/               VideoMemory.save output (hnswlib index + JSON metadata)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from marc.io import replace_dir, staging_dir
from marc.retrieval.encoders import ClipEncoder, QueryEncoder
from marc.retrieval.memory import VideoMemory
from marc.retrieval.segment import ContentChangeSegmenter, FixedWindowSegmenter, Segmenter

CONFIG_FILE = "retriever.json"
SEGMENTERS = {
    "ContentChangeSegmenter": ContentChangeSegmenter,
    "FixedWindowSegmenter": FixedWindowSegmenter,
}


def segmenter_config(segmenter: Segmenter) -> dict:
    """JSON description of a segmenter (its class and constructor arguments)."""
    name = type(segmenter).__name__
    if name not in SEGMENTERS:
        raise ValueError(f"cannot save segmenter {name}; known: {sorted(SEGMENTERS)}")
    return {"class": name, "args": dict(segmenter.init_config)}


def save_retriever(retriever, directory: str | os.PathLike) -> Path:
    """Write ``retriever`` (a ``VisualMemoryRetriever``) to ``directory`` atomically."""
    target = Path(directory)
    staging = staging_dir(target)
    staging.mkdir()
    config = {
        # The weights are in the state dict: never fetch timm's pretrained ones on load.
        "clip_encoder": {**retriever.clip_encoder.init_config, "pretrained": False},
        "query_encoder": dict(retriever.query_encoder.init_config),
        "segmenter": segmenter_config(retriever.segmenter),
        "k": retriever.k,
        "max_clip_frames": retriever.max_clip_frames,
    }
    (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    torch.save(retriever.clip_encoder.state_dict(), staging / "clip_encoder.pt")
    torch.save(retriever.query_encoder.state_dict(), staging / "query_encoder.pt")
    retriever.memory.save(staging / "memory")
    replace_dir(staging, target)
    return target


def load_retriever(directory: str | os.PathLike, k: int | None = None):
    """Rebuild a ``VisualMemoryRetriever`` saved by :func:`save_retriever`."""
    from marc.retrieval.retriever import VisualMemoryRetriever

    directory = Path(directory)
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f"not a saved retriever (no {CONFIG_FILE}): {directory}")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"corrupt retriever config {config_path}: {exc}") from exc
    clip_encoder = ClipEncoder(**config["clip_encoder"])
    query_encoder = QueryEncoder(**config["query_encoder"])
    for module, name in ((clip_encoder, "clip_encoder.pt"), (query_encoder, "query_encoder.pt")):
        path = directory / name
        if not path.is_file():
            raise FileNotFoundError(f"saved retriever is missing {path}")
        module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        module.eval()
    segmenter_spec = config["segmenter"]
    segmenter = SEGMENTERS[segmenter_spec["class"]](**segmenter_spec["args"])
    return VisualMemoryRetriever(
        segmenter,
        clip_encoder,
        query_encoder,
        memory=VideoMemory.load(directory / "memory"),
        k=config["k"] if k is None else k,
        max_clip_frames=config["max_clip_frames"],
    )

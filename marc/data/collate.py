"""Batching for variable-length videos and text: lists, not padded tensors."""

from __future__ import annotations

import torch

VIDEO_KEYS = ("video", "retrieved_video")


def collate_video_qa(samples: list[dict | None]) -> dict:
    """Batch sample dicts: each key becomes a list; skipped samples (None) are counted.

    Videos keep their own lengths (a list of ``[T_i, C, H, W]`` tensors) because the VLM
    encodes every video separately and compression makes lengths differ anyway.
    """
    kept = [s for s in samples if s is not None]
    batch: dict = {"num_skipped": len(samples) - len(kept), "batch_size": len(kept)}
    if not kept:
        return batch
    for key in kept[0]:
        batch[key] = [s[key] for s in kept]
    batch["video_lengths"] = torch.tensor([s["video"].shape[0] for s in kept])
    return batch


def select_rows(batch: dict, rows: list[int]) -> dict:
    """The batch of only the samples at ``rows`` (in that order), in the same layout."""
    size = batch["batch_size"]
    selected: dict = {"num_skipped": 0, "batch_size": len(rows)}
    for key, value in batch.items():
        if key in selected:
            continue
        if isinstance(value, list) and len(value) == size:
            selected[key] = [value[i] for i in rows]
        elif isinstance(value, torch.Tensor) and value.ndim and len(value) == size:
            selected[key] = value[rows]
        else:
            selected[key] = value
    return selected

"""The random-number generators of every process, saved in checkpoints and set on resume.

Lightning checkpoints hold the model, optimizers, schedulers, loops and loader positions,
not the global generators of torch (CPU and CUDA), numpy and Python. A stage stores those
of every process (``StageModule.on_save_checkpoint``, gathered with :func:`every_rank` to
the rank that writes the file) and each process takes its own back on resume, so anything
drawn from them after a checkpoint (dropout, a user's augmentation) is drawn again as in
the uninterrupted run.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


def collect_rng_states() -> dict[str, Any]:
    """This process's generator states (torch CPU, every CUDA device, numpy, Python).

    Only tensors and plain Python values, so a checkpoint holding them still loads with
    ``torch.load(weights_only=True)`` (Lightning's default).
    """
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [
            kind,
            torch.from_numpy(keys.astype(np.int64)),
            position,
            has_gauss,
            cached_gaussian,
        ],
        "python": random.getstate(),
    }


def set_rng_states(states: dict[str, Any]) -> None:
    """Set the generators to ``states`` (from :func:`collect_rng_states`)."""
    torch.set_rng_state(states["torch"])
    if states.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    kind, keys, position, has_gauss, cached_gaussian = states["numpy"]
    np.random.set_state(
        (kind, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian)
    )
    random.setstate(states["python"])


def every_rank(value: Any) -> list[Any]:
    """``value`` of each process, indexed by global rank (a collective under several)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered

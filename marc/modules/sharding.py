"""What a stage does differently when its model is sharded (FSDP, DeepSpeed ZeRO-3).

- :func:`fsdp_root`: the FSDP-wrapped root module, whose ``clip_grad_norm_`` takes the norm
  over every shard (``torch.nn.utils.clip_grad_norm_``, which Lightning's precision
  plugins use, would clip each rank's shard by its own norm; Lightning refuses it).
- :func:`full_vlm_state_dict`: the whole VLM's weights for an export, gathered from the
  shards (a collective: every rank calls it); None when each rank holds the whole model.

The configs that shard are under ``configs/qwen2_5_vl_3b/``; what is wrapped, what is
checkpointed and what never is (the frozen C-GRPO reference, the teacher) is in
docs/DESIGN.md and tested in ``tests/test_sharded_configs.py``.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy
from torch.distributed.fsdp import FullyShardedDataParallel

# The VLM's weights in a stage's state dict: ``vlm.model.<HF key>`` (DeepSpeed may put its
# own wrapper's prefix in front).
VLM_PREFIX = "vlm.model."


def fsdp_root(trainer: L.Trainer | None) -> FullyShardedDataParallel | None:
    """The trainer's FSDP-wrapped root module, None when the model is not FSDP-sharded."""
    strategy = getattr(trainer, "strategy", None)
    model = getattr(strategy, "model", None) if isinstance(strategy, FSDPStrategy) else None
    return model if isinstance(model, FullyShardedDataParallel) else None


def vlm_weights(state_dict: dict[str, Any]) -> dict[str, Any]:
    """The VLM's entries of a stage's state dict, keyed as its Hugging Face model keys them."""
    weights = {}
    for key, value in state_dict.items():
        _, found, rest = key.partition(VLM_PREFIX)
        if found:
            weights[rest] = value
    return weights


def full_vlm_state_dict(trainer: L.Trainer | None) -> dict[str, torch.Tensor] | None:
    """The VLM's full weights gathered from a sharded run (rank 0; other ranks get {}).

    FSDP: Lightning's full state dict (``state_dict_type: full``: gathered to rank 0 and
    offloaded to the CPU). DeepSpeed ZeRO-3: the engine's consolidated 16-bit weights
    (needs ``stage3_gather_16bit_weights_on_model_save`` in its config). Otherwise None:
    every rank holds the whole model and saves its own.
    """
    strategy = getattr(trainer, "strategy", None)
    if isinstance(strategy, FSDPStrategy):
        state = strategy.lightning_module_state_dict()
    elif isinstance(strategy, DeepSpeedStrategy) and strategy.zero_stage_3:
        state = strategy.deepspeed_engine._zero3_consolidated_16bit_state_dict()
    else:
        return None
    return vlm_weights(state or {})

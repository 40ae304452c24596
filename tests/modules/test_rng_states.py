"""Checkpoints hold every process's generator states; a resumed fit takes its own back."""

from __future__ import annotations

import io
import random
from types import SimpleNamespace

import numpy as np
import torch

from marc.modules.base import RNG_STATES_KEY, StageModule


def draws() -> tuple:
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]


def module_in(fn: str) -> StageModule:
    module = StageModule()
    module._trainer = SimpleNamespace(state=SimpleNamespace(fn=fn), global_rank=0)
    return module


def test_a_resumed_fit_draws_what_the_interrupted_run_would_have_drawn():
    checkpoint: dict = {}
    module_in("fit").on_save_checkpoint(checkpoint)
    expected = draws()
    # The saved states are plain values and tensors: weights_only loading accepts them.
    torch.save(checkpoint, buffer := io.BytesIO())
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    draws()  # the generators move on
    module_in("fit").on_load_checkpoint(loaded)
    assert draws() == expected
    assert len(loaded[RNG_STATES_KEY]) == 1  # one process


def test_loading_weights_outside_fit_leaves_the_generators_alone():
    checkpoint: dict = {}
    module_in("fit").on_save_checkpoint(checkpoint)
    draws()
    state = torch.get_rng_state()
    module_in("test").on_load_checkpoint(checkpoint)
    StageModule().on_load_checkpoint(checkpoint)  # load_from_checkpoint: no trainer
    assert torch.equal(torch.get_rng_state(), state)

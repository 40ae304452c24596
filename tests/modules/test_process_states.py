"""Checkpoints hold every process's generator states and counts; a resumed fit takes its own
back."""

from __future__ import annotations

import io
import random
from types import SimpleNamespace

import numpy as np
import torch

from marc.modules.base import PROCESS_STATES_KEY, StageModule


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
    assert len(loaded[PROCESS_STATES_KEY]) == 1  # one process


def test_a_resumed_fit_continues_the_epoch_counts_and_the_non_finite_streak():
    saved = module_in("fit")
    saved._epoch_counts = {"samples": 6, "skipped": 1}
    saved.nonfinite.record(True, float("nan"), 3)
    checkpoint: dict = {}
    saved.on_save_checkpoint(checkpoint)
    resumed = module_in("fit")
    resumed.on_load_checkpoint(checkpoint)
    assert resumed._epoch_counts == {"samples": 6, "skipped": 1}
    assert (resumed.nonfinite.skipped, resumed.nonfinite.in_a_row) == (1, 1)


def test_loading_weights_outside_fit_leaves_the_generators_alone():
    checkpoint: dict = {}
    module_in("fit").on_save_checkpoint(checkpoint)
    draws()
    state = torch.get_rng_state()
    module_in("test").on_load_checkpoint(checkpoint)
    StageModule().on_load_checkpoint(checkpoint)  # load_from_checkpoint: no trainer
    assert torch.equal(torch.get_rng_state(), state)

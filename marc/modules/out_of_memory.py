"""Out-of-memory errors that name the setting to lower.

A too-large batch fails deep inside a forward pass with "CUDA out of memory" or, on the
CPU, "DefaultCPUAllocator: can't allocate memory". :func:`names_memory_settings` wraps a
stage's step so the error says which settings set the step's size (``data.batch_size`` for
training, ``data.eval_batch_size`` for evaluation, ``model.num_generations`` for C-GRPO's
rollouts) and their current values; the original error is chained. ``StageModule.backward``
does the same for the backward pass of automatic optimisation, which runs after the step.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

_CPU_MESSAGES = ("out of memory", "can't allocate memory", "not enough memory")


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocation failure (CUDA, MPS or the CPU allocator)."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and any(m in str(error) for m in _CPU_MESSAGES)


def with_hint(error: RuntimeError, module, split: str, where: str) -> torch.OutOfMemoryError:
    """``error`` as a ``torch.OutOfMemoryError`` naming ``module.memory_settings(split)``."""
    settings = " or ".join(f"{name} (now {value})" for name, value in module.memory_settings(split))
    return torch.OutOfMemoryError(
        f"out of memory in {where}: lower {settings}. {type(error).__name__}: {error}"
    )


def names_memory_settings(split: str) -> Callable:
    """Decorate a stage's ``training_step`` (``split="train"``), ``validation_step`` or
    ``test_step``: an out-of-memory error is raised again as ``torch.OutOfMemoryError``
    naming the settings of ``module.memory_settings(split)``."""

    def decorate(step: Callable) -> Callable:
        @functools.wraps(step)
        def wrapper(module, batch, *args, **kwargs):
            try:
                return step(module, batch, *args, **kwargs)
            except RuntimeError as error:
                if not is_out_of_memory(error):
                    raise
                size = batch.get("batch_size") if isinstance(batch, dict) else None
                where = f"a {split} step of {size} questions"
                raise with_hint(error, module, split, where) from error

        return wrapper

    return decorate

"""Peak tensor memory a call allocates beyond what was allocated before it, CPU or CUDA.

CUDA: ``torch.cuda.max_memory_allocated`` after a reset, minus what was allocated before.
CPU: torch's allocator has no peak counter, so the call runs under ``torch.profiler`` with
``profile_memory=True``, which records every allocation and free of torch's CPU allocator
in order; the largest running sum of those records is the call's own peak. The process's
peak RSS would not do: it holds the weights, the interpreter and libraries, and pages the
C allocator keeps after frees (a warm-up call can hide the next call's peak entirely);
``tracemalloc`` sees only Python's allocator, not torch's tensors.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile


def peak_tensor_bytes(fn: Callable[[], object], device: torch.device) -> int:
    """Peak bytes of tensors ``fn()`` allocates on ``device`` beyond those alive before it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return peak_of_records(
        (event.start_ns(), event.nbytes())
        for event in prof.profiler.kineto_results.events()
        if event.name() == "[memory]" and event.device_type() == DeviceType.CPU
    )


def peak_of_records(records) -> int:
    """The largest running sum of ``(time, bytes)`` records (frees are negative), from 0."""
    live = peak = 0
    for _, nbytes in sorted(records):
        live += nbytes
        peak = max(peak, live)
    return peak

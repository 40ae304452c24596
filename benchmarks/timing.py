"""Interleaved timing of the settings a benchmark compares, on a machine others share.

A load change (another job, frequency scaling) shifts whatever runs during it, so settings
timed one after the other can swing their ratio far (``efficiency.py --quick`` once gave
0.4x and 1.6x for the same generation). Here every round times each setting once, in a
shuffled order, and rounds repeat until each compared pair's per-round ratio is stable:
its interquartile range relative to its median is at most ``target_spread`` (or a round
or time limit is reached). A pair is reported as the ratio of the two medians, with the
quartiles of the per-round ratios as its spread.

Which clock: ``wall`` (``time.perf_counter``) is what a user waits for, and the only one
that sees GPU work; ``cpu`` (``time.process_time``, this process's CPU seconds) leaves out
the time other jobs on a shared machine take from it, so on the CPU, with one torch
thread, per-round ratios vary far less (``efficiency.py --quick`` under a load of 7 on 2
cores: generation 0.19 relative IQR on the wall clock, 0.015 on the CPU clock, for the
same 1.6x). With several threads CPU seconds add up over threads and are no longer a
latency. :func:`default_clock` picks ``cpu`` for one thread on a CPU, else ``wall``.

The benchmarks import it as a sibling module (``from timing import ...``): they run as
scripts, ``python benchmarks/NAME.py``.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def default_clock(device_type: str, threads: int) -> str:
    """``cpu`` for one-thread work on the CPU, else ``wall`` (CPU time misses GPU work, and
    sums over threads)."""
    return "cpu" if device_type == "cpu" and threads == 1 else "wall"


@dataclass
class Ratio:
    """How many times longer ``numerator`` takes than ``denominator``, with its spread."""

    value: float  # median(numerator) / median(denominator)
    q1: float  # quartiles and median of the per-round ratios numerator_i / denominator_i
    q3: float
    round_median: float
    rounds: int

    @property
    def spread(self) -> float:
        """Interquartile range of the per-round ratios relative to their median."""
        return (self.q3 - self.q1) / self.round_median if self.round_median else float("inf")

    def as_dict(self, name: str, digits: int = 3) -> dict[str, float | int]:
        """``{name: value, name_q1, name_q3, name_spread}`` for a benchmark's JSON line."""
        return {
            name: round(self.value, digits),
            f"{name}_q1": round(self.q1, digits),
            f"{name}_q3": round(self.q3, digits),
            f"{name}_spread": round(self.spread, digits),
        }


@dataclass
class Timings:
    """Seconds of every round for each setting, in the order the rounds ran."""

    seconds: dict[str, list[float]] = field(default_factory=dict)
    converged: bool = False

    @property
    def rounds(self) -> int:
        return min((len(v) for v in self.seconds.values()), default=0)

    def median(self, name: str) -> float:
        return statistics.median(self.seconds[name])

    def ratio(self, numerator: str, denominator: str) -> Ratio:
        """``numerator``'s median time over ``denominator``'s, and its per-round spread."""
        per_round = [a / b for a, b in zip(self.seconds[numerator], self.seconds[denominator])]
        q1, q3 = quartiles(per_round)
        value = self.median(numerator) / self.median(denominator)
        return Ratio(value, q1, q3, statistics.median(per_round), len(per_round))


def quartiles(values: list[float]) -> tuple[float, float]:
    """First and third quartile (inclusive method; one value is its own quartiles)."""
    if len(values) < 2:
        return values[0], values[0]
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q3


def interleaved(
    calls: dict[str, Callable[[], object]],
    pairs: list[tuple[str, str]],
    min_rounds: int = 5,
    max_rounds: int = 30,
    target_spread: float = 0.1,
    time_limit_s: float | None = None,
    warmup: int = 1,
    synchronize: Callable[[], None] = lambda: None,
    seed: int = 0,
    clock: Callable[[], float] = time.perf_counter,
) -> Timings:
    """Time ``calls`` in interleaved rounds until every pair's ratio is stable.

    Args:
        calls: the settings, each a function of no argument that does the measured work.
        pairs: ``(numerator, denominator)`` names whose ratio must settle.
        min_rounds / max_rounds: rounds at least and at most.
        target_spread: stop once every pair's ``Ratio.spread`` is at most this.
        time_limit_s: stop after this much time (at ``min_rounds`` at least).
        warmup: untimed calls of each setting first (allocations, caches).
        synchronize: called around each timed call (e.g. ``torch.cuda.synchronize``).
        seed: of the order shuffles, so two runs interleave alike.
        clock: the timer (tests pass a fake one).
    """
    if not 1 <= min_rounds <= max_rounds:
        raise ValueError(f"need 1 <= min_rounds <= max_rounds, got {min_rounds}, {max_rounds}")
    for name in {n for pair in pairs for n in pair}:
        if name not in calls:
            raise ValueError(f"pair names {name!r}, which is not one of {sorted(calls)}")
    for _ in range(warmup):
        for call in calls.values():
            call()
    order = list(calls)
    shuffle = random.Random(seed).shuffle
    timings = Timings({name: [] for name in calls})
    start = clock()
    while timings.rounds < max_rounds:
        shuffle(order)  # no setting always runs first, or right after the same one
        for name in order:
            synchronize()
            begin = clock()
            calls[name]()
            synchronize()
            timings.seconds[name].append(clock() - begin)
        if timings.rounds < min_rounds:
            continue
        if all(timings.ratio(a, b).spread <= target_spread for a, b in pairs):
            timings.converged = True
            break
        if time_limit_s is not None and clock() - start >= time_limit_s:
            break
    return timings

"""The benchmarks' helpers: interleaved timing (ratio of medians, spread, stop rules) and
the peak tensor memory of a call."""

from __future__ import annotations

import pytest
import torch

from benchmarks.tensor_memory import peak_of_records, peak_tensor_bytes
from benchmarks.timing import Timings, interleaved, quartiles


class FakeClock:
    """A clock the fake settings below advance by the seconds their work takes."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def settings(clock: FakeClock, costs: dict[str, list[float]]) -> dict:
    """Settings whose n-th call takes ``costs[name][n % len]`` seconds on ``clock``."""
    counts = dict.fromkeys(costs, 0)

    def call(name):
        def run():
            clock.now += costs[name][counts[name] % len(costs[name])]
            counts[name] += 1

        return run

    return {name: call(name) for name in costs}


def test_the_ratio_is_of_medians_and_the_spread_of_per_round_ratios():
    timings = Timings({"slow": [2.0, 4.0, 6.0], "fast": [1.0, 1.0, 2.0]})
    ratio = timings.ratio("slow", "fast")
    assert ratio.value == pytest.approx(4.0 / 1.0)
    assert (ratio.q1, ratio.q3) == quartiles([2.0, 4.0, 3.0])
    assert ratio.spread == pytest.approx((ratio.q3 - ratio.q1) / 3.0)
    assert ratio.as_dict("speedup")["speedup"] == 4.0


def test_steady_settings_stop_at_the_minimum_of_rounds():
    clock = FakeClock()
    calls = settings(clock, {"a": [0.3], "b": [0.1]})
    timings = interleaved(calls, [("a", "b")], min_rounds=4, max_rounds=50, clock=clock)
    assert timings.converged and timings.rounds == 4
    assert timings.ratio("a", "b").value == pytest.approx(3.0)
    assert timings.ratio("a", "b").spread == pytest.approx(0.0)


def test_noisy_settings_repeat_up_to_the_maximum():
    clock = FakeClock()
    calls = settings(clock, {"a": [0.3, 0.9, 0.2, 1.5, 0.4], "b": [0.1]})
    timings = interleaved(calls, [("a", "b")], min_rounds=3, max_rounds=12, clock=clock)
    assert not timings.converged and timings.rounds == 12


def test_the_time_limit_stops_after_the_minimum():
    clock = FakeClock()
    calls = settings(clock, {"a": [0.3, 0.9], "b": [0.1]})
    timings = interleaved(
        calls, [("a", "b")], min_rounds=3, max_rounds=100, time_limit_s=2.0, clock=clock
    )
    assert 3 <= timings.rounds < 100 and not timings.converged


def test_a_load_change_hits_both_settings_of_a_round_alike():
    """Work that slows down halfway (another job starts) leaves the interleaved ratio."""
    clock = FakeClock()
    state = {"calls": 0}

    def work(seconds):
        def run():
            state["calls"] += 1
            clock.now += seconds * (3.0 if state["calls"] > 10 else 1.0)

        return run

    calls = {"a": work(0.2), "b": work(0.1)}
    timings = interleaved(calls, [("a", "b")], min_rounds=10, max_rounds=10, warmup=0, clock=clock)
    assert timings.ratio("a", "b").value == pytest.approx(2.0, rel=0.01)


def test_every_setting_runs_first_in_some_round():
    firsts = []
    clock = FakeClock()

    def run(name):
        def call():
            if len(order) % 3 == 0:
                firsts.append(name)
            order.append(name)
            clock.now += 0.1

        return call

    order: list[str] = []
    interleaved({n: run(n) for n in "abc"}, [("a", "b")], 12, 12, warmup=0, clock=clock)
    assert set(firsts) == {"a", "b", "c"}


def test_pairs_must_name_settings():
    with pytest.raises(ValueError, match="'c'"):
        interleaved({"a": lambda: None, "b": lambda: None}, [("a", "c")])


def test_the_peak_is_the_largest_running_sum_of_allocations_and_frees():
    assert peak_of_records([(0, 4), (1, 8), (2, -4), (3, 2), (4, -8)]) == 12
    assert peak_of_records([(1, -5), (0, 5)]) == 5  # ordered by time, not as given
    assert peak_of_records([]) == 0


def test_peak_tensor_memory_of_a_cpu_call_leaves_out_what_existed_before():
    weights = torch.ones(1000, 1000)  # 4 MB alive before: not counted

    def work():
        first = torch.empty(1000, 1000)  # 4 MB
        second = torch.empty(2000, 1000)  # 8 MB, both alive: the peak
        del first
        return weights[:, :10] + 1, second  # 40 kB more, after the peak

    assert peak_tensor_bytes(work, torch.device("cpu")) == 12_000_000

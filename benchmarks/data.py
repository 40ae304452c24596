"""Decode throughput of the embedded default: frames/s without and with the frame cache.

Generates the default dataset (or a smaller one with --quick) into a temporary folder,
then reads every training sample through ``VideoQADataset``, decoding every time and with
the in-memory cache (filled by the warm-up pass), one pass of each per round in
interleaved rounds until their ratio is stable (``benchmarks/timing.py``; wall clock: the
decoder may use threads of its own). Throughputs are frames over the median pass time; the
cache's speedup is the ratio of medians with the quartiles of the per-round ratios.
Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from timing import CLOCKS, interleaved

from marc.data.datamodule import VideoQADataModule
from marc.data.synthetic import GeneratorConfig, generate_dataset


def read_all(dataset) -> int:
    """Serve every sample once; returns the number of frames served."""
    return sum(dataset[index]["video"].shape[0] for index in range(len(dataset)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="12 videos instead of the default")
    parser.add_argument("--min-rounds", type=int, default=3)
    parser.add_argument("--max-rounds", type=int, default=10)
    parser.add_argument("--target-spread", type=float, default=0.1)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    args = parser.parse_args()
    cfg = GeneratorConfig(num_videos=12) if args.quick else GeneratorConfig()
    with tempfile.TemporaryDirectory() as root:
        generate_start = time.perf_counter()
        generate_dataset(root, cfg)
        generate_s = time.perf_counter() - generate_start
        # cache_frames=False: the generated default is cached unless told otherwise.
        plain = VideoQADataModule(data_root=root, cache_frames=False).dataset("train")
        cached = VideoQADataModule(data_root=root, cache_frames=True).dataset("train")
        frames = read_all(plain)
        timings = interleaved(
            {"decode": lambda: read_all(plain), "cached": lambda: read_all(cached)},
            [("decode", "cached")],
            min_rounds=args.min_rounds,
            max_rounds=args.max_rounds,
            target_spread=args.target_spread,
            clock=CLOCKS[args.clock],
        )
    speedup = timings.ratio("decode", "cached")
    print(
        json.dumps(
            {
                "benchmark": "data",
                "videos": cfg.num_videos,
                "questions": len(plain),
                "generate_s": round(generate_s, 3),
                "decode_fps": round(frames / timings.median("decode"), 1),
                "cached_fps": round(frames / timings.median("cached"), 1),
                **speedup.as_dict("cache_speedup", 2),
                "rounds": timings.rounds,
                "ratio_settled": timings.converged,
                "clock": args.clock,
            }
        )
    )


if __name__ == "__main__":
    main()

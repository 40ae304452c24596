"""Time every token compressor on one video's visual tokens on CPU.

Default: grid (32, 16, 16) (64 frames at 448 px), D = 2048, float32, one-frame budget;
``--quick`` uses a small grid for a smoke run. Prints one line per compressor, then, as the
last line, one JSON object: per-compressor median milliseconds, kept fraction and time
relative to Identity and to UniformFrames.

    .venv/bin/python benchmarks/compression.py [--quick] [--runs 5] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from marc.compression import (
    Budget,
    Identity,
    MemoryAwareMerge,
    RandomDrop,
    TemporalMeanPool,
    TokenCompressor,
    ToMe,
    UniformFrames,
)

FULL = {"grid": (32, 16, 16), "dim": 2048}
QUICK = {"grid": (8, 4, 4), "dim": 256}


def compressors() -> dict[str, TokenCompressor]:
    """Every compressor under test, with its default settings."""
    return {
        "Identity": Identity(),
        "UniformFrames": UniformFrames(),
        "RandomDrop": RandomDrop(),
        "TemporalMeanPool": TemporalMeanPool(),
        "ToMe": ToMe(),
        "MemoryAwareMerge": MemoryAwareMerge(),
    }


def median_ms(
    compressor: TokenCompressor, tokens: torch.Tensor, grid, budget: Budget, runs: int
) -> float:
    """Median wall time of one call in milliseconds, after one warm-up call."""
    compressor(tokens, grid, budget)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        compressor(tokens, grid, budget)
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def main() -> None:
    """Parse arguments, time each compressor and print the JSON summary last."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small grid for a smoke run")
    parser.add_argument("--runs", type=int, default=5, help="timed calls per compressor")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    setup = QUICK if args.quick else FULL
    grid, dim = setup["grid"], setup["dim"]
    t, h, w = grid
    tokens = torch.randn(t, h * w, dim, generator=torch.Generator().manual_seed(0))
    budget = Budget(frames=1)

    results = {}
    with torch.inference_mode():
        for name, compressor in compressors().items():
            ms = median_ms(compressor, tokens, grid, budget, args.runs)
            out = compressor(tokens, grid, budget)
            results[name] = {"ms": round(ms, 3), "kept_fraction": round(out.kept_fraction, 6)}
            print(f"{name:>17}: {ms:9.3f} ms  kept {out.kept_fraction:.4f}  grid {out.grid}")
    for entry in results.values():
        entry["x_identity"] = round(entry["ms"] / max(results["Identity"]["ms"], 1e-6), 1)
        entry["x_uniform_frames"] = round(
            entry["ms"] / max(results["UniformFrames"]["ms"], 1e-6), 1
        )
    summary = {
        "grid": list(grid),
        "dim": dim,
        "dtype": "float32",
        "budget": "frames=1",
        "runs": args.runs,
        "threads": torch.get_num_threads(),
        "compressors": results,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

"""Benchmark VideoMemory: hnsw against exact search on clustered vectors.

For each size, both backends index the same clustered float32 vectors (gaussian clusters
around random centres, cosine space). The hnsw ``ef`` is chosen on a separate set of tuning
queries as the smallest candidate reaching the target recall@10; recall@10 against exact
search and the query time ratio exact / hnsw are then measured on the evaluation queries,
with the same thread count for both: the two searches are timed in interleaved rounds
until their ratio is stable (``benchmarks/timing.py``; garbage collection paused during
each search, as timeit does), and the speedup is the ratio of medians with the quartiles
of the per-round ratios. The last line printed is one JSON object.

    python benchmarks/memory.py            # 1e5 and 1e6 items: 5-10 min on 2 cores, ~5 GB RAM
    python benchmarks/memory.py --quick    # 2e4 items, under a minute
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import time

import numpy as np
import torch
from timing import CLOCKS, default_clock, interleaved

from marc.retrieval.memory import VideoMemory


def clustered_vectors(
    rng: np.random.Generator, centres: np.ndarray, n: int, spread: float
) -> np.ndarray:
    """``n`` float32 vectors, each a random centre plus gaussian noise of scale ``spread``."""
    owner = rng.integers(len(centres), size=n)
    noise = rng.standard_normal((n, centres.shape[1]), dtype=np.float32)
    return centres[owner] + spread * noise


def build(vectors: np.ndarray, backend: str, args: argparse.Namespace) -> tuple[VideoMemory, float]:
    """A memory of ``vectors`` and its build time in seconds (added in batches, like indexing)."""
    memory = VideoMemory(
        vectors.shape[1],
        backend=backend,
        space="cosine",
        M=args.M,
        ef_construction=args.ef_construction,
        ef=args.ef_candidates[0],
        initial_capacity=args.initial_capacity,
        num_threads=args.threads,
    )
    metadata = [
        {"video_id": f"video_{i // 64:06d}", "clip_index": i % 64} for i in range(len(vectors))
    ]
    start = time.perf_counter()
    for lo in range(0, len(vectors), args.add_batch):
        memory.add(vectors[lo : lo + args.add_batch], metadata[lo : lo + args.add_batch])
    return memory, time.perf_counter() - start


def search_ids(memory: VideoMemory, queries: np.ndarray, k: int) -> np.ndarray:
    """Result ids ``[Q, k]`` of ``memory.search``, garbage collection paused meanwhile."""
    # As timeit does: a collection of the millions of metadata objects held by the memories
    # would otherwise land inside whichever search happens to trigger it.
    gc.disable()
    try:
        results = memory.search(queries, k)
    finally:
        gc.enable()
    return np.array([[r.id for r in row] for row in results])


def timed_search(memory: VideoMemory, queries: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    """Result ids of one search and its wall time (the ef sweep; not the compared timing)."""
    gc.collect()
    start = time.perf_counter()
    found = search_ids(memory, queries, k)
    return found, time.perf_counter() - start


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of the true top-k ids that were found."""
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def run_size(n: int, rng: np.random.Generator, centres: np.ndarray, args) -> dict:
    """Build both backends on ``n`` vectors, tune ef, and measure recall and speed."""
    vectors = clustered_vectors(rng, centres, n, args.spread)
    tuning = clustered_vectors(rng, centres, args.tuning_queries, args.spread)
    queries = clustered_vectors(rng, centres, args.queries, args.spread)
    k = args.k

    exact, exact_build_s = build(vectors, "exact", args)
    hnsw, build_s = build(vectors, "hnsw", args)
    del vectors
    tuning_truth, _ = timed_search(exact, tuning, k)
    sweep = []
    chosen = None
    for ef in args.ef_candidates:
        hnsw.ef = ef
        found, seconds = timed_search(hnsw, tuning, k)
        sweep.append(
            {"ef": ef, "tuning_recall_at_10": recall_at_k(found, tuning_truth), "s": seconds}
        )
        if chosen is None and sweep[-1]["tuning_recall_at_10"] >= args.target_recall:
            chosen = ef
    chosen = chosen if chosen is not None else args.ef_candidates[-1]
    hnsw.ef = chosen

    truth = search_ids(exact, queries, k)
    found = search_ids(hnsw, queries, k)
    gc.collect()
    gc.disable()  # for the whole timing, as timeit does (see search_ids)
    try:
        timings = interleaved(
            {"exact": lambda: exact.search(queries, k), "hnsw": lambda: hnsw.search(queries, k)},
            [("exact", "hnsw")],
            min_rounds=args.min_rounds,
            max_rounds=args.max_rounds,
            target_spread=args.target_spread,
            clock=CLOCKS[args.clock],
        )
    finally:
        gc.enable()
    exact_s, hnsw_s = timings.median("exact"), timings.median("hnsw")
    speedup = timings.ratio("exact", "hnsw")
    result = {
        "n": n,
        "dim": centres.shape[1],
        "queries": len(queries),
        "ef": chosen,
        "M": args.M,
        "ef_construction": args.ef_construction,
        "recall_at_10": round(recall_at_k(found, truth), 4),
        "hnsw_query_ms": round(1000 * hnsw_s / len(queries), 4),
        "exact_query_ms": round(1000 * exact_s / len(queries), 4),
        **speedup.as_dict("speedup_vs_exact", 2),
        "rounds": timings.rounds,
        "ratio_settled": timings.converged,
        "build_s": round(build_s, 2),
        "exact_build_s": round(exact_build_s, 2),
        "ef_sweep": [{**s, "s": round(s["s"], 4)} for s in sweep],
    }
    print(json.dumps(result), flush=True)
    return result


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and print its JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2e4 items only, under a minute")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--spread", type=float, default=0.5, help="noise scale around a centre")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--tuning-queries", type=int, default=500)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--M", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=200)
    parser.add_argument(
        "--ef-candidates", type=int, nargs="+", default=[32, 64, 96, 128, 192, 256, 384, 512]
    )
    parser.add_argument(
        "--target-recall",
        type=float,
        default=0.995,
        help="recall@10 the tuning queries must reach (a margin above the 0.99 goal)",
    )
    parser.add_argument("--threads", type=int, default=2, help="hnswlib and torch threads")
    parser.add_argument("--add-batch", type=int, default=50_000)
    parser.add_argument("--min-rounds", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--max-rounds", type=int, default=20)
    parser.add_argument("--target-spread", type=float, default=0.05)
    parser.add_argument(
        "--clock", choices=sorted(CLOCKS), default=None, help="default: cpu for 1 thread, else wall"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes = [20_000]
    args.initial_capacity = 1024
    args.clock = args.clock or default_clock("cpu", args.threads)
    torch.set_num_threads(args.threads)

    rng = np.random.default_rng(args.seed)
    centres = rng.standard_normal((args.clusters, args.dim), dtype=np.float32)
    per_size = [run_size(n, rng, centres, args) for n in sorted(args.sizes)]
    largest = per_size[-1]
    summary = {
        "benchmark": "memory",
        **{
            key: largest[key]
            for key in (
                "n",
                "dim",
                "recall_at_10",
                "speedup_vs_exact",
                "speedup_vs_exact_q1",
                "speedup_vs_exact_q3",
                "build_s",
            )
        },
        "ef": largest["ef"],
        "M": args.M,
        "ef_construction": args.ef_construction,
        "threads": args.threads,
        "clusters": args.clusters,
        "spread": args.spread,
        "queries": args.queries,
        "clock": args.clock,
        "machine": f"{platform.machine()} {torch.get_num_threads()} torch threads",
        "sizes": [{k: v for k, v in r.items() if k != "ef_sweep"} for r in per_size],
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()

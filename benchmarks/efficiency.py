"""Full versus compressed video input for the same Qwen2.5-VL, measured side by side.

Both configurations use the same video encoded once by the vision tower; "full" hands every
visual token to the language model (Identity), "compressed" first merges them with MARC's
MemoryAwareMerge to a one-frame budget. Measured: visual tokens; LM prefill latency (prompt
forward up to the first token's logits) and generation latency for a fixed number of greedy
new tokens (``min_new_tokens`` = ``max_new_tokens``, prefill included), timed in interleaved
rounds (``benchmarks/timing.py``) until each full/compressed ratio is stable, reported as the
ratio of medians with the quartiles of the per-round ratios; and the language model's peak
memory: the tensor memory one prefill and one generation allocate beyond the weights and the
encoded video (``benchmarks/tensor_memory.py``: torch's allocation records on the CPU,
``max_memory_allocated`` on a GPU). Prints one line per configuration, then one JSON object.

    .venv/bin/python benchmarks/efficiency.py --quick          # tiny model, CPU, < 1 min
    .venv/bin/python benchmarks/efficiency.py                  # tiny model, more rounds
    .venv/bin/python benchmarks/efficiency.py --model qwen2.5-vl-3b   # exact 3B, random bf16
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch
from tensor_memory import peak_tensor_bytes
from timing import CLOCKS, default_clock, interleaved

from marc.compression import Budget, Identity, MemoryAwareMerge
from marc.models.tiny import qwen2_5_vl_3b_config
from marc.models.vlm import DEFAULT_SYSTEM_PROMPT, VideoVLM
from marc.vocabulary import QWEN2_5_VL_TOKEN_IDS, build_tiny_tokenizer

QUESTION = (
    "What colour is the circle in the event with the black plain background? "
    "Options: A. red B. blue C. green D. white"
)
DEFAULTS = {"tiny": {"size": 112}, "qwen2.5-vl-3b": {"size": 448}}


def build_model(name: str, device: torch.device) -> VideoVLM:
    """The tiny seeded model in float32, or the exact 3B architecture with random bf16 weights."""
    if name == "tiny":
        return VideoVLM.tiny(seed=0).to(device).eval()
    # The word-level tokenizer with Qwen's control-token ids stands in for the real one,
    # so no tokenizer files are needed; prompt lengths stay realistic.
    tokenizer = build_tiny_tokenizer(QWEN2_5_VL_TOKEN_IDS)
    torch.manual_seed(0)
    vlm = VideoVLM.from_config(
        qwen2_5_vl_3b_config(),
        tokenizer,
        dtype=torch.bfloat16,
        device=device,
        frame_size=DEFAULTS[name]["size"],
        system_prompt=DEFAULT_SYSTEM_PROMPT,
    )
    return vlm.eval()


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so wall-clock times are real."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def prepare(args: argparse.Namespace, vlm: VideoVLM, configs: tuple[str, ...]) -> dict:
    """Encode one seeded video and build the visual input of each configuration, timed."""
    device = vlm.device
    generator = torch.Generator().manual_seed(0)
    shape = (args.frames, 3, args.size, args.size)
    frames = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator).to(device)
    synchronize(device)
    start = time.perf_counter()
    tokens, grid = vlm.encode_video(frames)
    synchronize(device)
    prepared = {"encode_s": time.perf_counter() - start}
    compressors = {"full": Identity(), "compressed": MemoryAwareMerge()}
    for config in configs:
        start = time.perf_counter()
        prepared[config] = compressors[config](tokens, grid, Budget(frames=args.budget_frames))
        synchronize(device)
        prepared[f"{config}_compress_s"] = time.perf_counter() - start
    return prepared


def runners(args: argparse.Namespace, vlm: VideoVLM, video) -> dict[str, Callable[[], object]]:
    """The two measured calls for one visual input: LM prefill and fixed-length generation."""

    def prefill():
        return vlm(vlm.prepare_inputs([video], [QUESTION]), use_cache=True, logits_to_keep=1)

    def generate():
        n = args.new_tokens
        return vlm.generate(
            [video], [QUESTION], max_new_tokens=n, min_new_tokens=n, do_sample=False
        )

    return {"prefill": prefill, "generate": generate}


CONFIGS = ("full", "compressed")


@torch.no_grad()
def measure_latency(args: argparse.Namespace, vlm: VideoVLM, prepared: dict) -> dict:
    """Median latencies and full/compressed ratios, the settings timed in interleaved rounds."""
    calls = {
        f"{name}_{config}": call
        for config in CONFIGS
        for name, call in runners(args, vlm, prepared[config]).items()
    }
    pairs = [(f"{name}_full", f"{name}_compressed") for name in ("prefill", "generate")]
    device = vlm.device
    timings = interleaved(
        calls,
        pairs,
        min_rounds=args.min_rounds,
        max_rounds=args.max_rounds,
        target_spread=args.target_spread,
        time_limit_s=args.time_limit,
        synchronize=lambda: synchronize(device),
        clock=CLOCKS[args.clock],
    )
    result: dict = {"rounds": timings.rounds, "ratios_settled": timings.converged}
    for name in ("prefill", "generate"):
        for config in CONFIGS:
            result[f"{name}_s_{config}"] = timings.median(f"{name}_{config}")
        ratio = timings.ratio(f"{name}_full", f"{name}_compressed")
        result.update(ratio.as_dict(f"{name}_speedup"))
    return result


@torch.no_grad()
def measure_memory(args: argparse.Namespace, vlm: VideoVLM, video) -> float:
    """MB of tensors the LM allocates in one prefill and in one generation (the larger)."""
    calls = runners(args, vlm, video)
    for call in calls.values():  # warm-up, as for the latencies
        call()
    return max(peak_tensor_bytes(call, vlm.device) for call in calls.values()) / 2**20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (``--quick`` sets a small smoke-run setup)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(DEFAULTS), default="tiny")
    parser.add_argument("--quick", action="store_true", help="tiny model, fewer rounds, < 1 min")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--size", type=int, default=None, help="frame side in px (multiple of 28)")
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--min-rounds", type=int, default=10, help="interleaved rounds at least")
    parser.add_argument("--max-rounds", type=int, default=60, help="and at most")
    parser.add_argument(
        "--target-spread",
        type=float,
        default=0.05,
        help="stop when each ratio's per-round IQR / median is at most this",
    )
    parser.add_argument("--time-limit", type=float, default=None, help="seconds of rounds")
    parser.add_argument("--budget-frames", type=int, default=1)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default on the CPU: 1, which keeps a shared machine's noise out)",
    )
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default=None,
        help="default: cpu for one CPU thread, else wall",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.model, args.min_rounds, args.max_rounds = "tiny", 7, 25
        args.target_spread, args.time_limit = 0.1, 30.0
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    args.size = args.size or DEFAULTS[args.model]["size"]
    if args.threads is None and torch.device(args.device).type == "cpu":
        args.threads = 1
    threads = args.threads or torch.get_num_threads()
    args.clock = args.clock or default_clock(torch.device(args.device).type, threads)
    return args


def main(argv: list[str] | None = None) -> dict:
    """Measure both configurations side by side and print the summary JSON line last."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    vlm = build_model(args.model, device)
    prepared = prepare(args, vlm, CONFIGS)
    latency = measure_latency(args, vlm, prepared)
    memory = {config: measure_memory(args, vlm, prepared[config]) for config in CONFIGS}
    full, compressed = prepared["full"], prepared["compressed"]
    for config, video in (("full", full), ("compressed", compressed)):
        print(
            f"{config:>10}: {video.num_tokens} visual tokens, grid {list(video.grid)}, "
            f"prefill {latency[f'prefill_s_{config}'] * 1e3:.1f} ms, "
            f"generate {args.new_tokens} tokens {latency[f'generate_s_{config}'] * 1e3:.1f} ms, "
            f"LM peak tensor memory {memory[config]:.1f} MB",
            flush=True,
        )
    summary = {
        "benchmark": "efficiency",
        "model": args.model,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "clock": args.clock,
        "dtype": str(vlm.dtype).removeprefix("torch."),
        "frames": args.frames,
        "frame_size": args.size,
        "new_tokens": args.new_tokens,
        "compressor": "MemoryAwareMerge",
        "budget_frames": args.budget_frames,
        "grid_full": list(full.grid),
        "grid_compressed": list(compressed.grid),
        "visual_tokens_full": full.num_tokens,
        "visual_tokens_compressed": compressed.num_tokens,
        "token_ratio": compressed.num_tokens / full.num_tokens,
        "encode_s": prepared["encode_s"],
        "compress_s": prepared["compressed_compress_s"],
        **latency,
        "lm_peak_mb_full": round(memory["full"], 2),
        "lm_peak_mb_compressed": round(memory["compressed"], 2),
        "lm_memory_ratio": round(memory["full"] / memory["compressed"], 2),
        "memory_measure": (
            "torch.cuda.max_memory_allocated"
            if device.type == "cuda"
            else "torch.profiler CPU allocation records"
        ),
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()

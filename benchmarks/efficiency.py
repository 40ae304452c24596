"""Full versus compressed video input for the same Qwen2.5-VL, measured side by side.

Both configurations use the same video encoded once by the vision tower; "full" hands every
visual token to the language model (Identity), "compressed" first merges them with MARC's
MemoryAwareMerge to a one-frame budget. Measured: visual tokens, LM prefill latency (prompt
forward up to the first token's logits), generation latency for a fixed number of greedy new
tokens (``min_new_tokens`` = ``max_new_tokens``, prefill included), each the median of
``--repeats`` runs with the two configurations interleaved, and peak memory of one prefill
plus one generation: on GPU ``torch.cuda.max_memory_allocated`` (weights included), on CPU
the peak RSS (``VmHWM``, reset through ``/proc/self/clear_refs``) of a fresh subprocess per
configuration. Prints one line per configuration, then, last, one JSON object.

    .venv/bin/python benchmarks/efficiency.py --quick          # tiny model, CPU, < 1 min
    .venv/bin/python benchmarks/efficiency.py                  # tiny model, more repeats
    .venv/bin/python benchmarks/efficiency.py --model qwen2.5-vl-3b   # exact 3B, random bf16
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

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


def seconds(fn: Callable[[], object], device: torch.device) -> float:
    """Wall time of one call of ``fn``."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def _proc_status_mb(field: str) -> float:
    """A memory field of /proc/self/status in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} missing from /proc/self/status")


def reset_peak_memory(device: torch.device) -> tuple[float, bool]:
    """Start a new peak-memory window; returns (memory in use now in MB, whether reset worked)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device) / 2**20, True
    try:
        # "5" resets the peak RSS (VmHWM) of this process (Linux >= 4.0).
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    return _proc_status_mb("VmRSS"), reset


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory since the last reset, in MB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return _proc_status_mb("VmHWM")


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


@torch.no_grad()
def measure_latency(args: argparse.Namespace, vlm: VideoVLM, prepared: dict) -> dict:
    """Median latencies, full and compressed interleaved so that load changes hit both alike."""
    calls = {config: runners(args, vlm, prepared[config]) for config in ("full", "compressed")}
    for config_calls in calls.values():  # warm-up: first calls pay for allocations
        for call in config_calls.values():
            call()
    times: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for config, config_calls in calls.items():
            for name, call in config_calls.items():
                times.setdefault(f"{name}_s_{config}", []).append(seconds(call, vlm.device))
    return {key: statistics.median(values) for key, values in times.items()}


@torch.no_grad()
def measure_memory(args: argparse.Namespace, vlm: VideoVLM, video) -> dict:
    """Peak memory of one prefill plus one generation for one visual input, after a warm-up."""
    calls = runners(args, vlm, video)
    for call in calls.values():
        call()
    in_use_mb, reset_ok = reset_peak_memory(vlm.device)
    for call in calls.values():
        call()
    synchronize(vlm.device)
    peak_mb = peak_memory_mb(vlm.device)
    return {"peak_mem_mb": peak_mb, "lm_mem_mb": peak_mb - in_use_mb, "peak_reset": reset_ok}


def memory_in_subprocess(args: argparse.Namespace, config: str) -> dict:
    """Peak memory of one configuration measured in a fresh interpreter (CPU RSS is per process)."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        f"--memory-of={config}",
        f"--model={args.model}",
        f"--device={args.device}",
        f"--frames={args.frames}",
        f"--size={args.size}",
        f"--new-tokens={args.new_tokens}",
        f"--budget-frames={args.budget_frames}",
        *([f"--threads={args.threads}"] if args.threads else []),
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"measuring the memory of {config} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (``--quick`` sets a small smoke-run setup)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(DEFAULTS), default="tiny")
    parser.add_argument("--quick", action="store_true", help="tiny model, few repeats, < 1 min")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--size", type=int, default=None, help="frame side in px (multiple of 28)")
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--budget-frames", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--memory-of", choices=["full", "compressed"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.model, args.repeats = "tiny", 3
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    args.size = args.size or DEFAULTS[args.model]["size"]
    return args


def main(argv: list[str] | None = None) -> None:
    """Measure both configurations side by side and print the summary JSON line last."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    vlm = build_model(args.model, device)
    if args.memory_of:
        prepared = prepare(args, vlm, (args.memory_of,))
        print(json.dumps(measure_memory(args, vlm, prepared[args.memory_of])), flush=True)
        return
    prepared = prepare(args, vlm, ("full", "compressed"))
    latency = measure_latency(args, vlm, prepared)
    memory = {}
    for config in ("full", "compressed"):
        if device.type == "cuda":
            memory[config] = measure_memory(args, vlm, prepared[config])
        else:
            memory[config] = memory_in_subprocess(args, config)
    full, compressed = prepared["full"], prepared["compressed"]
    for config, video in (("full", full), ("compressed", compressed)):
        print(
            f"{config:>10}: {video.num_tokens} visual tokens, grid {list(video.grid)}, "
            f"prefill {latency[f'prefill_s_{config}'] * 1e3:.1f} ms, "
            f"generate {args.new_tokens} tokens {latency[f'generate_s_{config}'] * 1e3:.1f} ms, "
            f"peak memory {memory[config]['peak_mem_mb']:.0f} MB "
            f"(LM phase +{memory[config]['lm_mem_mb']:.0f} MB)",
            flush=True,
        )
    summary = {
        "benchmark": "efficiency",
        "model": args.model,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": str(vlm.dtype).removeprefix("torch."),
        "frames": args.frames,
        "frame_size": args.size,
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
        "compressor": "MemoryAwareMerge",
        "budget_frames": args.budget_frames,
        "grid_full": list(full.grid),
        "grid_compressed": list(compressed.grid),
        "visual_tokens_full": full.num_tokens,
        "visual_tokens_compressed": compressed.num_tokens,
        "encode_s": prepared["encode_s"],
        "compress_s": prepared["compressed_compress_s"],
        **latency,
        "peak_mem_mb_full": memory["full"]["peak_mem_mb"],
        "peak_mem_mb_compressed": memory["compressed"]["peak_mem_mb"],
        "lm_mem_mb_full": memory["full"]["lm_mem_mb"],
        "lm_mem_mb_compressed": memory["compressed"]["lm_mem_mb"],
        "peak_mem_reset": memory["full"]["peak_reset"] and memory["compressed"]["peak_reset"],
        "token_ratio": compressed.num_tokens / full.num_tokens,
        "prefill_speedup": latency["prefill_s_full"] / latency["prefill_s_compressed"],
        "generate_speedup": latency["generate_s_full"] / latency["generate_s_compressed"],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

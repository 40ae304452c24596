"""Every compressor's CPU time on one video's visual tokens, against encoding that video.

The video: 64 frames at 448 px, the Qwen2.5-VL-3B vision tower (random weights, its exact
architecture) gives 32 temporal groups of 16 x 16 merged tokens of width 2048 (8,192
tokens). Each compressor reduces them to the one-frame budget (256 tokens); its time is
compared with the vision tower's own time on the same video, measured in the same run.

The tower's attention is windowed inside each temporal group (its full-attention blocks
attend within a group too), so its cost is linear in the number of groups: by default it
encodes ``--tower-groups`` groups and the time is scaled to the video's 32 groups (the JSON
says so); ``--tower-groups 32`` encodes the whole video (minutes on a CPU). The tokens the
compressors get are the tower's output on those groups, repeated over the video with noise
(events of near-duplicate groups, as real video has).

Timing is interleaved: every round times each compressor once, in turn, and the median over
rounds is reported with the spread (quartiles) of the per-round ratio to the tower's time.

    .venv/bin/python benchmarks/compression.py            # the 3B tower, 2 groups timed x 3
    .venv/bin/python benchmarks/compression.py --quick    # the tiny tower, small grid
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import (
    Qwen2_5_VisionTransformerPretrainedModel,
)

from marc.compression import Budget, Identity
from marc.eval.report import available_compressors, build_compressor
from marc.models.tiny import qwen2_5_vl_3b_config, tiny_qwen2_5_vl_config

TARGET = 0.05  # each compressor under 5 % of encoding the video


def vision_tower(quick: bool) -> Qwen2_5_VisionTransformerPretrainedModel:
    """The 3B vision tower (or the tiny one) with seeded random weights, float32, eval."""
    config = tiny_qwen2_5_vl_config(64) if quick else qwen2_5_vl_3b_config()
    torch.manual_seed(0)
    tower = Qwen2_5_VisionTransformerPretrainedModel._from_config(config.vision_config)
    return tower.float().eval()


def tower_inputs(groups: int, size: int, tower) -> tuple[torch.Tensor, torch.Tensor]:
    """Random patches ``[groups * (size/14)^2, C*2*14*14]`` and their grid for the tower."""
    config = tower.config
    patches = size // config.patch_size
    dim = config.in_channels * config.temporal_patch_size * config.patch_size**2
    generator = torch.Generator().manual_seed(1)
    pixels = torch.randn(groups * patches * patches, dim, generator=generator)
    return pixels, torch.tensor([[groups, patches, patches]])


def encode_seconds(tower, pixels, grid_thw, rounds: int) -> tuple[list[float], torch.Tensor]:
    """Wall seconds of each of ``rounds`` tower passes (after one warm-up) and the output."""
    out = tower(pixels, grid_thw=grid_thw).pooler_output
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        tower(pixels, grid_thw=grid_thw)
        times.append(time.perf_counter() - start)
    return times, out


def video_tokens(encoded: torch.Tensor, measured_groups: int, grid) -> torch.Tensor:
    """Tokens ``[T, H*W, D]``: the measured groups repeated over the video, with noise."""
    t, h, w = grid
    groups = encoded.view(measured_groups, h * w, -1)
    generator = torch.Generator().manual_seed(2)
    base = groups[torch.arange(t) * measured_groups // t]  # runs of near-duplicate groups
    return base + 0.05 * base.std() * torch.randn(base.shape, generator=generator)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny tower, 8 groups at 112 px")
    parser.add_argument("--tower-groups", type=int, default=2, help="groups the tower encodes")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    frames, size = (16, 112) if args.quick else (64, 448)
    tower = vision_tower(args.quick)
    merge = tower.config.spatial_merge_size
    groups = frames // tower.config.temporal_patch_size
    grid = (groups, size // 14 // merge, size // 14 // merge)
    measured = min(args.tower_groups, groups)
    with torch.inference_mode():
        pixels, grid_thw = tower_inputs(measured, size, tower)
        tower_times, encoded = encode_seconds(tower, pixels, grid_thw, rounds=3)
        # Linear in groups (attention stays inside each group): scale to the whole video.
        encode_s = statistics.median(tower_times) * groups / measured
        tokens = video_tokens(encoded, measured, grid)
        budget = Budget(frames=1)
        names = ["Identity", *available_compressors()]
        built = {
            name: Identity() if name == "Identity" else build_compressor(name) for name in names
        }
        outputs = {name: c(tokens, grid, budget) for name, c in built.items()}  # warm-up
        times = {name: [] for name in names}
        for _ in range(args.rounds):
            for name, compressor in built.items():
                start = time.perf_counter()
                compressor(tokens, grid, budget)
                times[name].append(time.perf_counter() - start)
    results = {}
    for name in names:
        ratios = sorted(t / encode_s for t in times[name])
        quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
        median = statistics.median(times[name])
        results[name] = {
            "ms": round(1000 * median, 3),
            "tokens_kept": outputs[name].num_tokens,
            "kept_fraction": round(outputs[name].kept_fraction, 6),
            "token_level": outputs[name].is_token_level,
            "fraction_of_encoding": round(median / encode_s, 6),
            "fraction_iqr": [round(quartiles[0], 6), round(quartiles[2], 6)],
        }
        print(
            f"{name:>17}: {1000 * median:9.2f} ms  {results[name]['fraction_of_encoding']:8.4%} "
            f"of encoding  kept {outputs[name].num_tokens} tokens"
        )
    summary = {
        "model": "tiny" if args.quick else "qwen2.5-vl-3b vision tower (random weights)",
        "frames": frames,
        "frame_size": size,
        "grid": list(grid),
        "dim": tokens.shape[-1],
        "dtype": "float32",
        "budget": "frames=1",
        "encode_video_s": round(encode_s, 3),
        "tower_groups_timed": measured,
        "tower_time_scaled_from_groups": measured != groups,
        "rounds": args.rounds,
        "threads": torch.get_num_threads(),
        "target_fraction": TARGET,
        "all_under_target": all(r["fraction_of_encoding"] < TARGET for r in results.values()),
        "compressors": results,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

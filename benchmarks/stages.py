"""Training-step cost of the VLM stages: full-video teacher input versus the compressed student.

Measures, side by side in one run on the same tiny model and batch: one SFT step
(CompressorWarmup's loss, forward + backward) and one C-GRPO rollout (G completions per
question, KV-cached sampling) with all frames (Identity) and at the one-frame budget
(MemoryAwareMerge). Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch

from marc.compression import Budget, Identity, MemoryAwareMerge
from marc.data.datamodule import VideoQADataModule
from marc.data.synthetic import GeneratorConfig
from marc.models.vlm import VideoVLM
from marc.modules.vlm_stage import sft_target
from marc.rl.rollout import sample_groups


def median_seconds(fn, repeats: int) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` runs (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 4, G 4, 2 repeats")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    batch_size, group, repeats = (4, 4, 2) if args.quick else (16, 8, 3)
    with tempfile.TemporaryDirectory() as root:
        dm = VideoQADataModule(
            data_root=root, generator=GeneratorConfig(num_videos=8), frame_size=56
        )
        dm.prepare_data()
        dataset = dm.dataset("train")
        samples = [dataset[i] for i in range(batch_size)]
    torch.manual_seed(0)
    vlm = VideoVLM.tiny(frame_size=56)
    prompts = [s["prompt"] for s in samples]
    targets = [
        sft_target(s["captions"], s["target_events"], None, s["answer"], s["options"])
        for s in samples
    ]
    settings = {"full": Identity(), "compressed": MemoryAwareMerge()}
    figures: dict = {"benchmark": "stages", "batch": batch_size, "num_generations": group}
    for name, compressor in settings.items():
        budget = Budget(frames=1)

        def sft_step(compressor=compressor, budget=budget):
            videos = [vlm.compress(s["video"], compressor, budget) for s in samples]
            vlm.zero_grad()
            vlm.sft_loss(videos, prompts, targets).backward()

        def rollout(compressor=compressor, budget=budget):
            with torch.no_grad():
                videos = [vlm.compress(s["video"], compressor, budget) for s in samples]
            sample_groups(vlm, videos, prompts, num_generations=group, max_new_tokens=40, seed=0)

        with torch.no_grad():
            tokens = vlm.compress(samples[0]["video"], compressor, budget).num_tokens
        figures[f"visual_tokens_{name}"] = tokens
        figures[f"sft_step_s_{name}"] = round(median_seconds(sft_step, repeats), 4)
        figures[f"rollout_s_{name}"] = round(median_seconds(rollout, repeats), 4)
    figures["sft_speedup"] = round(figures["sft_step_s_full"] / figures["sft_step_s_compressed"], 2)
    figures["rollout_speedup"] = round(
        figures["rollout_s_full"] / figures["rollout_s_compressed"], 2
    )
    figures["threads"] = torch.get_num_threads()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

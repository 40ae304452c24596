"""Training-step cost of the VLM stages: full-video teacher input versus the compressed student.

Measures, side by side in one run on the same tiny model and batch: one SFT step
(CompressorWarmup's loss, forward + backward) and one C-GRPO rollout (G completions per
question, KV-cached sampling) with all frames (Identity) and at the one-frame budget
(MemoryAwareMerge). The four settings are timed in interleaved rounds until each
full/compressed ratio is stable (``benchmarks/timing.py``); each speedup is the ratio of
medians with the quartiles of the per-round ratios. Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import tempfile

import torch
from timing import CLOCKS, default_clock, interleaved

from marc.compression import Budget, Identity, MemoryAwareMerge
from marc.data.datamodule import VideoQADataModule
from marc.data.synthetic import GeneratorConfig
from marc.models.vlm import VideoVLM
from marc.modules.vlm_stage import sft_target
from marc.rl.rollout import sample_groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 4, G 4, fewer rounds")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default=None)
    parser.add_argument("--min-rounds", type=int, default=None)
    parser.add_argument("--max-rounds", type=int, default=None)
    parser.add_argument("--target-spread", type=float, default=0.05)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock = args.clock or default_clock("cpu", args.threads)
    batch_size, group = (4, 4) if args.quick else (16, 8)
    min_rounds = args.min_rounds or (5 if args.quick else 10)
    max_rounds = args.max_rounds or (15 if args.quick else 40)
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
    budget = Budget(frames=1)
    figures: dict = {"benchmark": "stages", "batch": batch_size, "num_generations": group}
    calls = {}
    for name, compressor in settings.items():

        def sft_step(compressor=compressor):
            videos = [vlm.compress(s["video"], compressor, budget) for s in samples]
            vlm.zero_grad()
            vlm.sft_loss(videos, prompts, targets).backward()

        def rollout(compressor=compressor):
            with torch.no_grad():
                videos = [vlm.compress(s["video"], compressor, budget) for s in samples]
            sample_groups(vlm, videos, prompts, num_generations=group, max_new_tokens=40, seed=0)

        with torch.no_grad():
            tokens = vlm.compress(samples[0]["video"], compressor, budget).num_tokens
        figures[f"visual_tokens_{name}"] = tokens
        calls[f"sft_step_{name}"], calls[f"rollout_{name}"] = sft_step, rollout
    pairs = [(f"{step}_full", f"{step}_compressed") for step in ("sft_step", "rollout")]
    timings = interleaved(
        calls,
        pairs,
        min_rounds=min_rounds,
        max_rounds=max_rounds,
        target_spread=args.target_spread,
        clock=CLOCKS[clock],
    )
    for step, speedup in (("sft_step", "sft_speedup"), ("rollout", "rollout_speedup")):
        for name in settings:
            figures[f"{step}_s_{name}"] = round(timings.median(f"{step}_{name}"), 4)
        figures.update(timings.ratio(f"{step}_full", f"{step}_compressed").as_dict(speedup, 2))
    figures.update(
        threads=torch.get_num_threads(),
        clock=clock,
        rounds=timings.rounds,
        ratios_settled=timings.converged,
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

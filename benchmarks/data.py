"""Decode throughput of the embedded default: frames/s without and with the frame cache.

Generates the default dataset (or a smaller one with --quick) into a temporary folder,
then reads every training sample for a number of epochs through ``VideoQADataset``, once
decoding every time and once with the in-memory cache. Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from marc.data.datamodule import VideoQADataModule
from marc.data.synthetic import GeneratorConfig, generate_dataset


def frames_per_second(dataset, epochs: int) -> float:
    """Frames served per second over ``epochs`` passes of the dataset."""
    frames, start = 0, time.perf_counter()
    for _ in range(epochs):
        for index in range(len(dataset)):
            frames += dataset[index]["video"].shape[0]
    return frames / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="12 videos instead of the default")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    cfg = GeneratorConfig(num_videos=12) if args.quick else GeneratorConfig()
    with tempfile.TemporaryDirectory() as root:
        generate_start = time.perf_counter()
        generate_dataset(root, cfg)
        generate_s = time.perf_counter() - generate_start
        plain = VideoQADataModule(data_root=root).dataset("train")
        cached = VideoQADataModule(data_root=root, cache_frames=True).dataset("train")
        fps_plain = frames_per_second(plain, args.epochs)
        fps_cached = frames_per_second(cached, args.epochs)
    print(
        json.dumps(
            {
                "benchmark": "data",
                "videos": cfg.num_videos,
                "questions": len(plain),
                "epochs": args.epochs,
                "generate_s": round(generate_s, 3),
                "decode_fps": round(fps_plain, 1),
                "cached_fps": round(fps_cached, 1),
                "cache_speedup": round(fps_cached / fps_plain, 2),
            }
        )
    )


if __name__ == "__main__":
    main()

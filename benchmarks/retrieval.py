"""Benchmark the Visual Memory Retriever: question → event recall on the synthetic test split.

A question is answered by its target event(s); a retrieved clip hits when its middle frame
lies inside a target event. Three figures are measured side by side on the same questions:

- the retriever's recall@1 (and @k): the top clip(s) it returns for the question;
- its answer recall@1: the top clip holds the event that answers the question (the last
  of its target events: for "which background comes right after X?" the event after X,
  which a retriever with a temporal relation head moves to);
- random clips: the expected recall of picking clips uniformly from the same segmentation;
- uniform one-frame sampling: the fraction of questions whose target event contains the
  frame that sampling one frame uniformly keeps (the middle frame).

    python benchmarks/retrieval.py --untrained                 # random-init encoders
    python benchmarks/retrieval.py --retriever artifacts/retriever --data-root data/synthetic
    python benchmarks/retrieval.py --quick                     # untrained, 12 videos

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import torch

from marc.data.synthetic import GeneratorConfig, generate_dataset, is_generated
from marc.data.video import read_video
from marc.retrieval.encoders import ClipEncoder, QueryEncoder
from marc.retrieval.memory import VideoMemory
from marc.retrieval.retriever import VisualMemoryRetriever
from marc.retrieval.segment import ContentChangeSegmenter, Segmenter, Span


def load_questions(data_root: Path, split: str) -> list[dict]:
    """Annotation rows of one split that name target events."""
    path = data_root / f"{split}.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [row for row in rows if row.get("events") and row.get("target_events")]


def target_spans(row: dict) -> list[Span]:
    """Frame spans of the events a question is about."""
    return [(row["events"][i]["start"], row["events"][i]["end"]) for i in row["target_events"]]


def clip_hits(span: Span, targets: list[Span]) -> bool:
    """Whether a clip's middle frame lies inside one of the target events."""
    middle = (span[0] + span[1] - 1) // 2
    return any(start <= middle < end for start, end in targets)


def random_clip_recall(clips: list[Span], targets: list[Span], k: int) -> float:
    """Expected recall@k of ``k`` clips drawn uniformly without replacement from ``clips``."""
    hits = sum(clip_hits(span, targets) for span in clips)
    draws = min(k, len(clips))
    return 1.0 - math.comb(len(clips) - hits, draws) / math.comb(len(clips), draws)


def uniform_frame_hit(num_frames: int, targets: list[Span]) -> bool:
    """Whether the middle frame, the one uniform one-frame sampling keeps, is in a target."""
    middle = num_frames // 2
    return any(start <= middle < end for start, end in targets)


def evaluate(
    retriever: VisualMemoryRetriever, rows: list[dict], data_root: Path, k: int = 3
) -> dict:
    """Retriever recall@1 and @k, random-clip recall@1 and @k, and the uniform-frame hit rate."""
    # Keyed by figure, not by k: with k = 1 the "@k" figures are separate sums of their own.
    sums = dict.fromkeys(("top1", "topk", "random1", "randomk", "answer1", "random_answer1"), 0.0)
    uniform_hits, clip_counts = 0, {}
    current_id, frames, clips = None, None, []
    for row in rows:
        if row["video_id"] != current_id:
            current_id = row["video_id"]
            # Every decoded frame is kept, so event spans index frames directly.
            frames = read_video(data_root / row["path"])
            ids = retriever.index_video(current_id, frames)
            clips = [tuple(retriever.memory.metadata_of(i)["span"]) for i in ids]
            clip_counts[current_id] = len(clips)
        targets = target_spans(row)
        result = retriever.retrieve(current_id, frames, row["problem"], k=k)
        ranked = sorted(zip(result.scores, result.spans), reverse=True)
        sums["top1"] += clip_hits(ranked[0][1], targets)
        sums["topk"] += any(clip_hits(span, targets) for _, span in ranked)
        sums["random1"] += random_clip_recall(clips, targets, 1)
        sums["randomk"] += random_clip_recall(clips, targets, k)
        sums["answer1"] += clip_hits(ranked[0][1], targets[-1:])
        sums["random_answer1"] += random_clip_recall(clips, targets[-1:], 1)
        uniform_hits += uniform_frame_hit(len(frames), targets)
    count = max(len(rows), 1)
    return {
        "questions": len(rows),
        "videos": len(clip_counts),
        "mean_clips_per_video": round(sum(clip_counts.values()) / max(len(clip_counts), 1), 3),
        "recall_at_1": round(sums["top1"] / count, 4),
        f"recall_at_{k}": round(sums["topk"] / count, 4),
        "random_clip_recall_at_1": round(sums["random1"] / count, 4),
        f"random_clip_recall_at_{k}": round(sums["randomk"] / count, 4),
        "answer_recall_at_1": round(sums["answer1"] / count, 4),
        "random_clip_answer_recall_at_1": round(sums["random_answer1"] / count, 4),
        "uniform_frame_hit_rate": round(uniform_hits / count, 4),
    }


def untrained_retriever(segmenter: Segmenter, seed: int) -> VisualMemoryRetriever:
    """A retriever with randomly initialised encoders and an exact memory."""
    torch.manual_seed(seed)
    clip_encoder, query_encoder = ClipEncoder(), QueryEncoder()
    memory = VideoMemory(clip_encoder.embed_dim, backend="exact")
    return VisualMemoryRetriever(segmenter, clip_encoder, query_encoder, memory=memory)


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and print its JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--retriever", type=Path, help="a saved retriever folder (configs/retriever.yaml output)"
    )
    which.add_argument("--untrained", action="store_true", help="random-init encoders (default)")
    parser.add_argument("--quick", action="store_true", help="12 generated videos")
    parser.add_argument(
        "--data-root", type=Path, help="generated dataset (made in a temp folder when omitted)"
    )
    parser.add_argument("--split", default="test")
    parser.add_argument("--num-videos", type=int, default=120, help="when generating")
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.num_videos = 12
    untrained = args.retriever is None

    with tempfile.TemporaryDirectory() as scratch:
        data_root = args.data_root or Path(scratch) / "data"
        if not is_generated(data_root):
            generate_dataset(data_root, GeneratorConfig(num_videos=args.num_videos, seed=args.seed))
        segmenter = ContentChangeSegmenter()
        if untrained:
            retriever = untrained_retriever(segmenter, args.seed)
        else:
            retriever = VisualMemoryRetriever.from_pretrained(args.retriever)
        start = time.perf_counter()
        figures = evaluate(retriever, load_questions(data_root, args.split), data_root, args.k)
    summary = {
        "benchmark": "retrieval",
        "retriever": "untrained" if untrained else str(args.retriever),
        "split": args.split,
        **figures,
        "seconds": round(time.perf_counter() - start, 2),
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()

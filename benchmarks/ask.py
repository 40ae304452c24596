"""Encode once, ask many: ten questions about one long video, with and without the clip memory.

A long video is generated with marc's synthetic generator (eight events of a few hundred
frames each, ``--events`` x ``--event-frames``) and ten questions about it. Three settings
are timed side by side in interleaved rounds (``timing.py``), each with its models loaded
once beforehand:

- ``first``: the first question with an empty clip memory (decode, segment, embed, then
  retrieve, encode, compress, answer);
- ``next_nine``: the nine other questions with the video already in the clip memory (only
  the retrieved clips are decoded and encoded);
- ``next_nine_tokens_cached``: the same nine with the visual tokens of their clips cached
  as well (``cache_tokens``: nothing decoded or encoded);
- ``teacher_ten``: the same ten questions answered by the teacher on all frames (every
  sampled frame decoded and encoded, no compression).

Every answer generates ``--new-tokens`` tokens (a fixed length, so the settings differ in
their inputs only). Models are the artifacts of ``make demo`` when present
(``--model``, ``--retriever``, ``--teacher``), else random tiny ones of the same shape.
Prints one JSON line: the medians, the phases of a first and of a cached question, and the
ratios ``first / next question``, ``teacher_ten / marc_ten`` (marc_ten = first + next_nine)
with the quartiles of their per-round values.

    python benchmarks/ask.py            # 8 events of 300 frames, 64 frames read at 56 px
    python benchmarks/ask.py --quick    # 8 events of 24 frames, 3 rounds at most
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import interleaved, quartiles  # noqa: E402

from marc.answer.answerer import Answerer  # noqa: E402
from marc.answer.questions import make_question  # noqa: E402
from marc.answer.store import ClipStore, Decoding, retriever_fingerprint  # noqa: E402
from marc.compression import MemoryAwareMerge  # noqa: E402
from marc.data import synthetic  # noqa: E402
from marc.models.vlm import VideoVLM  # noqa: E402
from marc.retrieval.encoders import ClipEncoder, QueryEncoder  # noqa: E402
from marc.retrieval.retriever import VisualMemoryRetriever  # noqa: E402
from marc.retrieval.segment import ContentChangeSegmenter  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short video, 3 rounds at most")
    parser.add_argument("--events", type=int, default=8)
    parser.add_argument("--event-frames", type=int, default=300)
    parser.add_argument("--max-frames", type=int, default=64)
    parser.add_argument("--frame-size", type=int, default=56)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--model", default="artifacts/cgrpo/model")
    parser.add_argument("--teacher", default="artifacts/teacher/model")
    parser.add_argument("--retriever", default="artifacts/retriever")
    parser.add_argument("--min-rounds", type=int, default=5)
    parser.add_argument("--max-rounds", type=int, default=20)
    parser.add_argument("--time-limit", type=float, default=480, help="seconds of rounds")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.event_frames = min(args.event_frames, 24)
        args.min_rounds, args.max_rounds = 2, 3
    return args


def make_video(folder: Path, args: argparse.Namespace) -> tuple[Path, list[dict]]:
    """A generated video of ``events`` events and ten questions about it."""
    cfg = synthetic.GeneratorConfig(
        num_frames=args.events * args.event_frames,
        events_per_video=args.events,
        min_event_frames=args.event_frames,
        frame_size=112,
        seed=args.seed,
    )
    rng = random.Random(args.seed)
    events = synthetic._make_events(rng, cfg)
    path = folder / "long.mp4"
    synthetic.write_mp4(path, synthetic.render_video(events, cfg), cfg.fps)
    questions: list[dict] = []
    while len(questions) < 10:
        questions += synthetic._questions_for_video(rng, events)
    return path, questions[:10]


def load_models(args: argparse.Namespace, folder: Path):
    """(student, teacher, retriever folder): the saved ones when present, else random tiny."""

    def vlm(path: str, seed: int) -> tuple[VideoVLM, str]:
        if Path(path, "config.json").is_file():
            return VideoVLM.from_pretrained(path).eval(), path
        return VideoVLM.tiny(seed=seed, frame_size=args.frame_size).eval(), "tiny (random)"

    student, student_name = vlm(args.model, 0)
    teacher, teacher_name = vlm(args.teacher, 1)
    retriever_dir = Path(args.retriever)
    if not (retriever_dir / "retriever.json").is_file():
        torch.manual_seed(args.seed)
        retriever_dir = folder / "retriever"
        VisualMemoryRetriever(
            ContentChangeSegmenter(),
            ClipEncoder(embed_dim=128, image_size=args.frame_size),
            QueryEncoder(embed_dim=128, max_offset=1),
            k=1,
        ).save_pretrained(retriever_dir)
    names = {"model": student_name, "teacher": teacher_name, "retriever": str(args.retriever)}
    if retriever_dir != Path(args.retriever):
        names["retriever"] = "untrained (random)"
    return student, teacher, retriever_dir, names


def main(argv: list[str] | None = None) -> dict:
    """Time the three settings side by side and print the summary JSON line last."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="marc-ask-bench-"))
    video, rows = make_video(work, args)
    questions = [
        make_question(video, row["problem"], row["options"], f"q{i}", row["solution"])
        for i, row in enumerate(rows)
    ]
    student, teacher, retriever_dir, names = load_models(args, work)
    decoding = Decoding(None, args.max_frames, args.frame_size)
    retriever = VisualMemoryRetriever.from_pretrained(retriever_dir)
    fingerprint = retriever_fingerprint(retriever_dir, decoding)
    common = {"max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens}
    stores = iter(range(10_000))

    def marc(store_dir: Path, cache_tokens: bool = False) -> Answerer:
        store = ClipStore(store_dir, retriever, fingerprint)
        return Answerer(
            student, retriever, store, MemoryAwareMerge(), 1, decoding, **common,
            cache_tokens=cache_tokens,
        )  # fmt: skip

    warm = marc(work / "warm")
    phases = {"first": warm.answer(questions[0]).seconds}
    phases["cached"] = warm.answer(questions[1]).seconds
    tokens_cached = marc(work / "warm", cache_tokens=True)
    for question in questions[1:]:
        tokens_cached.answer(question)
    phases["tokens_cached"] = tokens_cached.answer(questions[1]).seconds
    all_frames = Answerer(teacher, decoding=decoding, budget_frames=None, **common)

    calls = {
        "first": lambda: marc(work / f"cold{next(stores)}").answer(questions[0]),
        "next_nine": lambda: [warm.answer(q) for q in questions[1:]],
        "next_nine_tokens_cached": lambda: [tokens_cached.answer(q) for q in questions[1:]],
        "teacher_ten": lambda: [all_frames.answer(q) for q in questions],
    }
    timings = interleaved(
        calls,
        [
            ("first", "next_nine"),
            ("teacher_ten", "next_nine"),
            ("next_nine", "next_nine_tokens_cached"),
        ],
        min_rounds=args.min_rounds,
        max_rounds=args.max_rounds,
        time_limit_s=args.time_limit,
        seed=args.seed,
    )
    s = timings.seconds
    marc_ten = [a + b for a, b in zip(s["first"], s["next_nine"])]
    per_round = {
        "first_over_next_question": [a / (b / 9) for a, b in zip(s["first"], s["next_nine"])],
        "teacher_ten_over_marc_ten": [a / b for a, b in zip(s["teacher_ten"], marc_ten)],
        "next_question_over_tokens_cached": [
            a / b for a, b in zip(s["next_nine"], s["next_nine_tokens_cached"])
        ],
        "teacher_question_over_next_question": [
            (a / 10) / (b / 9) for a, b in zip(s["teacher_ten"], s["next_nine"])
        ],
    }
    ratios = {}
    for name, values in per_round.items():
        q1, q3 = quartiles(values)
        ratios[name] = round(statistics.median(values), 2)
        ratios[f"{name}_iqr"] = [round(q1, 2), round(q3, 2)]
    summary = {
        "benchmark": "ask",
        "quick": args.quick,
        "video": {
            "events": args.events,
            "frames": args.events * args.event_frames,
            "fps": 8,
            "read": f"{args.max_frames} frames at {args.frame_size} px",
        },
        **names,
        "threads": torch.get_num_threads(),
        "new_tokens": args.new_tokens,
        "rounds": timings.rounds,
        "converged": timings.converged,
        "first_question_s": round(statistics.median(s["first"]), 3),
        "next_nine_s": round(statistics.median(s["next_nine"]), 3),
        "next_nine_tokens_cached_s": round(statistics.median(s["next_nine_tokens_cached"]), 3),
        "teacher_ten_s": round(statistics.median(s["teacher_ten"]), 3),
        "marc_ten_s": round(statistics.median(marc_ten), 3),
        **ratios,
        "phases_first_s": phases["first"],
        "phases_cached_s": phases["cached"],
        "phases_tokens_cached_s": phases["tokens_cached"],
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()

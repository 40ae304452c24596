"""``marc ask VIDEO "QUESTION"``: answer a question about a video file from the command line.

    marc ask data/synthetic/videos/video_02160.mp4 "Which background comes right after the red one?" \
        --options "A. blue" "B. green" "C. grey" "D. yellow"

prints the answer and the model's reasoning (``--json``: the ``predictions.jsonl`` line,
with the retrieved clips and the seconds of each phase). The defaults are the artifacts
``make demo`` builds: the C-GRPO student (artifacts/cgrpo/model), its retriever
(artifacts/retriever) and the clip memory of asked-about videos
(artifacts/ask/clip_memory), so a second question about the same video skips decoding,
segmenting and embedding it. Bad input (a missing or undecodable video, an empty
question, options that are not "X. text", a model folder without weights, a corrupt clip
memory) prints one line naming the file or field and exits with code 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from marc.answer.answerer import load_answerer
from marc.answer.questions import BadInput, make_question
from marc.answer.store import DEFAULT_DIR, ClipMemoryError
from marc.compression import MemoryAwareMerge
from marc.decoding import VideoDecodeError

BAD_INPUT = 2


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="marc", description="marc on your own videos")
    commands = top.add_subparsers(dest="command", required=True)
    ask = commands.add_parser("ask", help="answer a question about a video")
    ask.add_argument("video", help="a video file")
    ask.add_argument("question")
    ask.add_argument("--options", nargs="+", default=None, help='"A. text" "B. text" ...')
    ask.add_argument("--model", default="artifacts/cgrpo/model", help="a saved VideoVLM folder")
    ask.add_argument("--retriever", default="artifacts/retriever", help="a saved retriever")
    ask.add_argument("--no-retrieval", action="store_true", help="all frames, no retriever")
    ask.add_argument("--clip-memory", default=DEFAULT_DIR, help="the persistent clip memory")
    ask.add_argument("--budget-frames", type=int, default=1, help="0: keep every token")
    ask.add_argument("--max-frames", type=int, default=64)
    ask.add_argument("--fps", type=float, default=None)
    ask.add_argument("--frame-size", type=int, default=None, help="default: the model's")
    ask.add_argument("--max-new-tokens", type=int, default=40)
    ask.add_argument("--json", action="store_true", help="print the predictions.jsonl line")
    return top


def main(argv: list[str] | None = None) -> int:
    """The ``marc`` console script; returns the exit code (2 for bad input)."""
    args = parser().parse_args(argv)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # stderr keeps only marc's own line
    try:
        question = make_question(args.video, args.question, args.options)
        answerer = load_answerer(
            args.model,
            None if args.no_retrieval else args.retriever,
            args.clip_memory,
            MemoryAwareMerge() if args.budget_frames else None,
            args.budget_frames or None,
            fps=args.fps,
            max_frames=args.max_frames,
            frame_size=args.frame_size,
            max_new_tokens=args.max_new_tokens,
        )
        answer = answerer.answer(question)
    except (BadInput, VideoDecodeError, ClipMemoryError, FileNotFoundError) as error:
        print(f"marc ask: {str(error).splitlines()[0]}", file=sys.stderr)
        return BAD_INPUT
    if args.json:
        print(json.dumps(answer.as_line()))
    else:
        print(f"answer: {answer.answer if answer.answer is not None else '(none)'}")
        print(f"reasoning: {answer.reasoning or '(none)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

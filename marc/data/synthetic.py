"""Synthetic event-video QA: the embedded default dataset of marc.

A video is a sequence of events separated by hard cuts. Each event has a background
(colour and pattern) and one to three objects (shape, colour) that move in a direction or
stay still, and a caption generated from those attributes. Questions are multiple choice
(A-D) in the Video-R1 schema and name their event through its background, so answering
needs the right clip. Everything is deterministic from a seed and written as real files:
H.264 mp4 videos (PyAV) and JSONL annotations.

Run as ``python -m marc.data.synthetic --root data --seed 0 --num-videos 120``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from marc.vocabulary import (
    BACKGROUND_COLOURS,
    BACKGROUND_PATTERNS,
    COUNT_WORDS,
    DIRECTIONS,
    LETTERS,
    OBJECT_COLOURS,
    QUESTION_KINDS,
    QUESTION_TEMPLATES,
    SHAPES,
)

# Colours of the vocabulary's names. Background and object colours are disjoint so an
# object never blends into its background.
BACKGROUND_RGB: dict[str, tuple[int, int, int]] = dict(
    zip(
        BACKGROUND_COLOURS,
        [
            (20, 20, 20),
            (110, 110, 110),
            (20, 30, 110),
            (110, 60, 20),
            (100, 110, 20),
            (10, 100, 100),
        ],
    )
)
OBJECT_RGB: dict[str, tuple[int, int, int]] = dict(
    zip(
        OBJECT_COLOURS,
        [
            (230, 30, 30),
            (30, 220, 60),
            (60, 120, 255),
            (240, 230, 40),
            (245, 245, 245),
            (250, 130, 200),
        ],
    )
)

# Centres of the 2x2 layout cells objects are placed in, as fractions of the frame size.
CELL_CENTRES = ((0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75))
# Unit displacement per frame for each direction (x to the right, y downwards).
_DIRECTION_STEP = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1), "still": (0, 0)}


@dataclass
class SceneObject:
    """One moving or still object of an event."""

    shape: str
    colour: str
    direction: str
    start_xy: tuple[float, float]  # centre at mid-event, as a fraction of the frame size


@dataclass
class Event:
    """A contiguous span of frames with one background and its objects."""

    start: int
    end: int  # exclusive
    background: str
    pattern: str
    objects: list[SceneObject] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The phrase questions use to refer to this event."""
        return f"the {self.background} {self.pattern} background"

    @property
    def caption(self) -> str:
        """A sentence describing the event from its attributes."""
        parts = []
        for obj in self.objects:
            motion = "stays still" if obj.direction == "still" else f"moves {obj.direction}"
            parts.append(f"a {obj.colour} {obj.shape} {motion}")
        return f"a {self.background} {self.pattern} background with " + " and ".join(parts)


@dataclass
class GeneratorConfig:
    """Options of the generator; the defaults make the embedded default dataset."""

    # 2,400 videos: 2,160 train, 120 val, 120 test. With the former 300 (210 train) the tiny
    # teacher stopped improving at ~0.35 validation accuracy whatever else was changed; with
    # 2,160 training videos the same model kept learning (README, Results).
    num_videos: int = 2400
    num_frames: int = 64
    frame_size: int = 112
    fps: int = 8
    events_per_video: int = 4
    min_event_frames: int = 8
    max_objects: int = 3  # at most 4: every object has a cell of the 2x2 layout to itself
    object_size: float = 0.3  # object diameter as a fraction of the frame size
    # Motion that crosses tokens: at 0.12 a moving object stayed inside one 28-px token for
    # most of its event and the teacher scored 21 % on motion (README, Results).
    travel: float = 0.2  # how far a moving object goes during its event, fraction of the frame
    distractor_similarity: float = 0.0  # probability that events of a video share a colour
    # A patterned background's second colour is base * pattern_gain + pattern_offset; a
    # softer pattern (formerly 1.6 and 25) competes less with the objects' colours.
    pattern_gain: float = 1.3
    pattern_offset: float = 15.0
    # Half-side of a square as a fraction of the object's radius: 1.0 (formerly 0.85) makes a
    # square fill its bounding box, so at the stages' resolution it differs from a circle.
    square_fill: float = 1.0
    split_fractions: tuple[float, float, float] = (0.9, 0.05, 0.05)
    seed: int = 0

    def __post_init__(self) -> None:
        # Checked here, so a bad value fails where it is set (a YAML file, the command line).
        if self.events_per_video < 2:
            raise ValueError(
                "events_per_video must be at least 2 (order questions need two events)"
            )
        if not 1 <= self.max_objects <= len(CELL_CENTRES):
            raise ValueError(
                f"max_objects must be between 1 and {len(CELL_CENTRES)} (one per cell)"
            )
        if self.object_size + self.travel > 0.5:
            raise ValueError(
                "object_size + travel must be at most 0.5 so objects stay in their cell"
            )


def _split_lengths(rng: random.Random, total: int, parts: int, minimum: int) -> list[int]:
    """Random positive lengths summing to ``total``, each at least ``minimum``."""
    if parts * minimum > total:
        raise ValueError(
            f"{parts} events of at least {minimum} frames do not fit in {total} frames"
        )
    spare = total - parts * minimum
    cuts = sorted(rng.randint(0, spare) for _ in range(parts - 1))
    bounds = [0, *cuts, spare]
    return [minimum + bounds[i + 1] - bounds[i] for i in range(parts)]


def _make_events(rng: random.Random, cfg: GeneratorConfig) -> list[Event]:
    """Events of one video with pairwise distinct backgrounds."""
    backgrounds = [(c, p) for c in BACKGROUND_COLOURS for p in BACKGROUND_PATTERNS]
    if rng.random() < cfg.distractor_similarity:
        # Harder variant: every background shares one colour, only the pattern differs.
        colour = rng.choice(list(BACKGROUND_COLOURS))
        backgrounds = [(colour, p) for p in BACKGROUND_PATTERNS] + [
            (c, p) for c in BACKGROUND_COLOURS if c != colour for p in BACKGROUND_PATTERNS
        ]
        chosen = backgrounds[: len(BACKGROUND_PATTERNS)]
        chosen += rng.sample(backgrounds[len(BACKGROUND_PATTERNS) :], cfg.events_per_video)
        chosen = chosen[: cfg.events_per_video]
        rng.shuffle(chosen)
    else:
        chosen = rng.sample(backgrounds, cfg.events_per_video)
    # Short test videos shrink the minimum event length rather than fail.
    minimum = min(cfg.min_event_frames, cfg.num_frames // cfg.events_per_video)
    lengths = _split_lengths(rng, cfg.num_frames, cfg.events_per_video, minimum)
    events, start = [], 0
    for (colour, pattern), length in zip(chosen, lengths):
        n_objects = rng.randint(1, cfg.max_objects)
        shapes = rng.sample(SHAPES, n_objects)
        colours = rng.sample(list(OBJECT_COLOURS), n_objects)
        # Each object keeps a cell of a 2x2 layout to itself and moves within it. Read at
        # the default 56 px, a temporal group is 2x2 visual tokens, so every token shows at
        # most one object: objects never overlap and a small model can count them and bind
        # colour to shape (overlapping objects made count and shape ambiguous).
        # Listed in reading order (rows top to bottom), so a caption names the objects in an
        # order the video itself determines.
        cells = sorted(rng.sample(CELL_CENTRES, n_objects), key=lambda xy: (xy[1], xy[0]))
        objects = [
            SceneObject(shape, obj_colour, rng.choice(DIRECTIONS), cell)
            for shape, obj_colour, cell in zip(shapes, colours, cells)
        ]
        events.append(Event(start, start + length, colour, pattern, objects))
        start += length
    return events


def _shape_mask(
    shape: str,
    size: int,
    yy: np.ndarray,
    xx: np.ndarray,
    cx: float,
    cy: float,
    square_fill: float = 0.85,
):
    """Boolean mask of one shape of diameter ``size`` centred at (cx, cy)."""
    r = size / 2
    dx, dy = xx - cx, yy - cy
    if shape == "circle":
        return dx**2 + dy**2 <= r**2
    if shape == "square":
        return (np.abs(dx) <= r * square_fill) & (np.abs(dy) <= r * square_fill)
    if shape == "triangle":
        # Apex up: inside when below the two slanted edges and above the base.
        return (dy <= r * 0.8) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.55)
    if shape == "cross":
        arm = r * 0.33
        return ((np.abs(dx) <= arm) & (np.abs(dy) <= r)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= r))
    raise ValueError(f"unknown shape {shape!r}")


def _background(event: Event, size: int, gain: float = 1.6, offset: float = 25.0) -> np.ndarray:
    """The background image of an event, uint8 [H, W, 3]."""
    base = np.array(BACKGROUND_RGB[event.background], dtype=np.float32)
    img = np.broadcast_to(base, (size, size, 3)).copy()
    yy, xx = np.mgrid[0:size, 0:size]
    period = max(size // 7, 4)
    if event.pattern == "striped":
        mask = (xx // period) % 2 == 0
    elif event.pattern == "checkered":
        mask = ((xx // period) + (yy // period)) % 2 == 0
    else:
        mask = np.zeros((size, size), dtype=bool)
    img[mask] = np.clip(base * gain + offset, 0, 255)
    return img.astype(np.uint8)


def render_event_frames(event: Event, cfg: GeneratorConfig) -> np.ndarray:
    """Render the frames of one event, uint8 [T, H, W, 3]."""
    size = cfg.frame_size
    background = _background(event, size, cfg.pattern_gain, cfg.pattern_offset)
    yy, xx = np.mgrid[0:size, 0:size]
    obj_size = cfg.object_size * size
    length = event.end - event.start
    # A moving object travels cfg.travel of the frame over its event, centred on its cell.
    speed = size * cfg.travel / max(length - 1, 1)
    frames = np.empty((length, size, size, 3), dtype=np.uint8)
    for t in range(length):
        frame = background.copy()
        for obj in event.objects:
            step_x, step_y = _DIRECTION_STEP[obj.direction]
            cx = obj.start_xy[0] * size + step_x * speed * (t - (length - 1) / 2)
            cy = obj.start_xy[1] * size + step_y * speed * (t - (length - 1) / 2)
            mask = _shape_mask(obj.shape, obj_size, yy, xx, cx, cy, cfg.square_fill)
            frame[mask] = OBJECT_RGB[obj.colour]
        frames[t] = frame
    return frames


def render_video(events: list[Event], cfg: GeneratorConfig) -> np.ndarray:
    """Render all events of a video back to back, uint8 [T, H, W, 3]."""
    return np.concatenate([render_event_frames(e, cfg) for e in events], axis=0)


def write_mp4(path: Path, frames: np.ndarray, fps: int) -> None:
    """Encode frames [T, H, W, 3] as H.264 mp4 with PyAV, atomically."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.mp4")
    with av.open(str(tmp), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        # High quality and deterministic single-threaded encoding: same seed, same bytes.
        # x264's macroblock tree (on by default) made the same frames encode to different
        # bytes on some calls, even in one idle process; without it every call agrees.
        stream.options = {
            "crf": "12",
            "preset": "medium",
            "threads": "1",
            "x264-params": "mbtree=0",
        }
        stream.codec_context.thread_count = 1
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)


def _options_with_answer(
    rng: random.Random, correct: str, pool: list[str], letter: str
) -> tuple[list[str], str]:
    """Four option texts with ``correct`` placed at ``letter``; returns (options, solution)."""
    distractors = rng.sample([p for p in pool if p != correct], 3)
    index = LETTERS.index(letter)
    texts = distractors[:index] + [correct] + distractors[index:]
    options = [f"{LETTERS[i]}. {t}" for i, t in enumerate(texts)]
    return options, f"<answer>{letter}</answer>"


def _questions_for_video(rng: random.Random, events: list[Event]) -> list[dict]:
    """One question of each kind about this video (events chosen at random).

    The four answers of a video use each letter once, in random order: letters are
    balanced exactly and carry no information about the question kind.
    """
    questions = []
    letters = rng.sample(LETTERS, len(LETTERS))
    for kind, letter in zip(QUESTION_KINDS, letters):
        if kind == "order":
            target = rng.randrange(len(events) - 1)
            event, after = events[target], events[target + 1]
            problem = QUESTION_TEMPLATES["order"].format(event=event.name)
            pool = [f"{c} {p}" for c in BACKGROUND_COLOURS for p in BACKGROUND_PATTERNS]
            pool = [p for p in pool if p != f"{event.background} {event.pattern}"]
            correct = f"{after.background} {after.pattern}"
            targets = [target, target + 1]
            named = []
        else:
            target = rng.randrange(len(events))
            event = events[target]
            obj = rng.choice(event.objects)
            targets = [target]
            # The object the question names (attribute and motion questions).
            named = [event.objects.index(obj)] if kind != "count" else []
            if kind == "attribute":
                if rng.random() < 0.5:
                    problem = QUESTION_TEMPLATES["colour_of_shape"].format(
                        shape=obj.shape, event=event.name
                    )
                    pool, correct = list(OBJECT_COLOURS), obj.colour
                else:
                    problem = QUESTION_TEMPLATES["shape_of_colour"].format(
                        colour=obj.colour, event=event.name
                    )
                    pool, correct = list(SHAPES), obj.shape
            elif kind == "count":
                problem = QUESTION_TEMPLATES["count"].format(event=event.name)
                pool, correct = list(COUNT_WORDS), COUNT_WORDS[len(event.objects) - 1]
            else:
                problem = QUESTION_TEMPLATES["motion"].format(
                    colour=obj.colour, shape=obj.shape, event=event.name
                )
                pool, correct = list(DIRECTIONS), obj.direction
        options, solution = _options_with_answer(rng, correct, pool, letter)
        questions.append(
            {
                "question_kind": kind,
                "problem": problem,
                "options": options,
                "solution": solution,
                "answer_text": correct,
                "target_events": targets,
                "target_objects": named,
            }
        )
    return questions


def _assign_splits(num_videos: int, fractions: tuple[float, float, float]) -> list[str]:
    """Split name per video index, in contiguous blocks (held-out videos, never shared)."""
    n_train = round(num_videos * fractions[0])
    n_val = max(1, round(num_videos * fractions[1])) if num_videos >= 3 else 0
    n_test = num_videos - n_train - n_val
    if n_test < 1 and num_videos >= 3:
        n_train -= 1 - n_test
        n_test = 1
    return ["train"] * n_train + ["val"] * n_val + ["test"] * max(n_test, 0)


def generate_dataset(
    root: str | os.PathLike, cfg: GeneratorConfig | None = None, write_videos: bool = True
) -> dict:
    """Write videos and train/val/test JSONL annotations under ``root``; returns a summary.

    ``write_videos=False`` writes the annotations only (the same ones: rendering draws no
    random numbers), e.g. to add a field to an existing dataset.
    """
    cfg = cfg or GeneratorConfig()
    root = Path(root)
    (root / "videos").mkdir(parents=True, exist_ok=True)
    rng = random.Random(cfg.seed)
    splits = _assign_splits(cfg.num_videos, cfg.split_fractions)
    rows: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    for index, split in enumerate(splits):
        video_id = f"video_{index:05d}"
        events = _make_events(rng, cfg)
        if write_videos:
            write_mp4(root / "videos" / f"{video_id}.mp4", render_video(events, cfg), cfg.fps)
        event_rows = [
            {"start": e.start, "end": e.end, "caption": e.caption, **_event_attributes(e)}
            for e in events
        ]
        for q_index, question in enumerate(_questions_for_video(rng, events)):
            rows[split].append(
                {
                    "problem_id": f"{video_id}_q{q_index}",
                    "problem": question["problem"],
                    "data_type": "video",
                    "problem_type": "multiple choice",
                    "options": question["options"],
                    "solution": question["solution"],
                    "path": f"videos/{video_id}.mp4",
                    "data_source": "marc-synthetic",
                    "video_id": video_id,
                    "question_kind": question["question_kind"],
                    "answer_text": question["answer_text"],
                    "target_events": question["target_events"],
                    # Indices into the target event's objects of the object the question
                    # names ([] when it names none: count and order questions).
                    "target_objects": question["target_objects"],
                    "events": event_rows,
                    "num_frames": cfg.num_frames,
                    "fps": cfg.fps,
                }
            )
    for split, split_rows in rows.items():
        _write_jsonl_atomic(root / f"{split}.jsonl", split_rows)
    summary = {
        "root": str(root),
        "config": asdict(cfg),
        "videos": len(splits),
        "questions": {k: len(v) for k, v in rows.items()},
    }
    _write_jsonl_atomic(root / "generator.json", [summary])
    return summary


def _event_attributes(event: Event) -> dict:
    return {
        "background": event.background,
        "pattern": event.pattern,
        "objects": [
            {
                "shape": o.shape,
                "colour": o.colour,
                "direction": o.direction,
                # Index into CELL_CENTRES (the 2x2 layout: one visual token at 56 px).
                "cell": CELL_CENTRES.index(tuple(o.start_xy)),
            }
            for o in event.objects
        ],
    }


def _write_jsonl_atomic(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")
    os.replace(tmp, path)


def is_generated(root: str | os.PathLike) -> bool:
    """Whether ``root`` already holds a complete generated dataset."""
    root = Path(root)
    return (
        all((root / f"{s}.jsonl").is_file() for s in ("train", "val", "test"))
        and (root / "generator.json").is_file()
    )


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: ``python -m marc.data.synthetic --root DIR``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = GeneratorConfig()
    parser.add_argument("--root", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--num-videos", type=int, default=defaults.num_videos)
    parser.add_argument("--num-frames", type=int, default=defaults.num_frames)
    parser.add_argument("--frame-size", type=int, default=defaults.frame_size)
    parser.add_argument("--fps", type=int, default=defaults.fps)
    parser.add_argument("--events-per-video", type=int, default=defaults.events_per_video)
    parser.add_argument("--min-event-frames", type=int, default=defaults.min_event_frames)
    parser.add_argument("--max-objects", type=int, default=defaults.max_objects)
    parser.add_argument("--object-size", type=float, default=defaults.object_size)
    parser.add_argument("--travel", type=float, default=defaults.travel)
    parser.add_argument(
        "--distractor-similarity", type=float, default=defaults.distractor_similarity
    )
    parser.add_argument("--pattern-gain", type=float, default=defaults.pattern_gain)
    parser.add_argument("--pattern-offset", type=float, default=defaults.pattern_offset)
    parser.add_argument("--square-fill", type=float, default=defaults.square_fill)
    parser.add_argument(
        "--annotations-only", action="store_true", help="write the JSONL files, not the videos"
    )
    args = parser.parse_args(argv)
    cfg = GeneratorConfig(
        num_videos=args.num_videos,
        num_frames=args.num_frames,
        frame_size=args.frame_size,
        fps=args.fps,
        events_per_video=args.events_per_video,
        min_event_frames=args.min_event_frames,
        max_objects=args.max_objects,
        object_size=args.object_size,
        travel=args.travel,
        distractor_similarity=args.distractor_similarity,
        pattern_gain=args.pattern_gain,
        pattern_offset=args.pattern_offset,
        square_fill=args.square_fill,
        seed=args.seed,
    )
    print(json.dumps(generate_dataset(args.root, cfg, write_videos=not args.annotations_only)))


if __name__ == "__main__":
    main()

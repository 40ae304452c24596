import json
import random
from collections import Counter

import numpy as np
import pytest

from marc.data.annotations import load_annotations
from marc.data.synthetic import (
    _DIRECTION_STEP,
    CELL_CENTRES,
    GeneratorConfig,
    _assign_splits,
    _make_events,
    _questions_for_video,
    _shape_mask,
    generate_dataset,
    main,
    render_video,
    write_mp4,
)
from marc.data.video import read_video
from marc.vocabulary import QUESTION_KINDS, tokenize_words, vocabulary


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_default_dataset_splits():
    # The README and configs count on 2,160 training videos (8,640 questions) and 120 each
    # for validation and test (480 questions).
    cfg = GeneratorConfig()
    assert Counter(_assign_splits(cfg.num_videos, cfg.split_fractions)) == {
        "train": 2160,
        "val": 120,
        "test": 120,
    }


def test_same_seed_gives_identical_files(tmp_path):
    cfg = GeneratorConfig(num_videos=4, seed=11)
    generate_dataset(tmp_path / "a", cfg)
    generate_dataset(tmp_path / "b", cfg)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a.keys() == b.keys()
    for name in a:
        if name.name != "generator.json":  # it records the root folder
            assert a[name] == b[name], name


def test_the_same_frames_encode_to_the_same_bytes_every_time(tmp_path):
    # With x264's default macroblock tree, 8 encodings of these frames in one process gave
    # 3 to 5 different files; the encoder settings of write_mp4 must give one.
    cfg, rng = GeneratorConfig(), random.Random(0)
    for _ in range(3):  # the third video of seed 0, one that showed it
        events = _make_events(rng, cfg)
        _questions_for_video(rng, events)
    frames = render_video(events, cfg)
    encodings = set()
    for attempt in range(8):
        path = tmp_path / f"video_{attempt}.mp4"
        write_mp4(path, frames, fps=8)
        encodings.add(path.read_bytes())
    assert len(encodings) == 1


def test_other_seed_gives_other_videos(tmp_path):
    generate_dataset(tmp_path / "a", GeneratorConfig(num_videos=3, seed=1))
    generate_dataset(tmp_path / "b", GeneratorConfig(num_videos=3, seed=2))
    assert (tmp_path / "a/train.jsonl").read_text() != (tmp_path / "b/train.jsonl").read_text()


def test_defaults_meet_the_design():
    cfg = GeneratorConfig()
    assert cfg.num_frames >= 64 and cfg.events_per_video >= 4
    # Full input (T/2 groups of (size/28)^2 tokens) is at least 16x the one-frame budget.
    assert cfg.num_frames // 2 >= 16


def test_rows_follow_the_video_r1_schema(tiny_dataset):
    rows = [json.loads(line) for line in (tiny_dataset / "train.jsonl").read_text().splitlines()]
    for row in rows:
        for key in ("problem_id", "problem", "data_type", "problem_type", "options", "solution"):
            assert key in row
        assert row["solution"].startswith("<answer>") and row["solution"].endswith("</answer>")
        assert len(row["options"]) == 4
        assert (tiny_dataset / row["path"]).is_file()
        spans = [(e["start"], e["end"]) for e in row["events"]]
        assert spans[0][0] == 0 and spans[-1][1] == row["num_frames"]
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
        assert all(0 <= t < len(spans) for t in row["target_events"])
    assert load_annotations(tiny_dataset / "train.jsonl")


def test_question_kinds_and_letters_are_balanced(tmp_path):
    generate_dataset(tmp_path, GeneratorConfig(num_videos=12, seed=5))
    rows = []
    for split in ("train", "val", "test"):
        rows += [json.loads(x) for x in (tmp_path / f"{split}.jsonl").read_text().splitlines()]
    kinds = Counter(r["question_kind"] for r in rows)
    letters = Counter(r["solution"][8] for r in rows)
    assert set(kinds) == set(QUESTION_KINDS) and len(set(kinds.values())) == 1
    assert (
        set(letters) == {"A", "B", "C", "D"} and max(letters.values()) - min(letters.values()) <= 1
    )


def test_answer_option_matches_ground_truth(tiny_dataset):
    for line in (tiny_dataset / "test.jsonl").read_text().splitlines():
        row = json.loads(line)
        letter = row["solution"][8]
        option = next(o for o in row["options"] if o.startswith(f"{letter}."))
        assert option[3:] == row["answer_text"]
        event = row["events"][row["target_events"][-1]]
        if row["question_kind"] == "count":
            words = ["one", "two", "three", "four"]
            assert words.index(row["answer_text"]) + 1 == len(event["objects"])
        if row["question_kind"] == "order":
            assert row["answer_text"] == f"{event['background']} {event['pattern']}"


def test_events_have_distinct_backgrounds_and_hard_cuts():
    import random

    cfg = GeneratorConfig(frame_size=56)
    events = _make_events(random.Random(0), cfg)
    assert len({(e.background, e.pattern) for e in events}) == len(events)
    frames = render_video(events, cfg).astype(np.float32)
    diffs = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))
    cuts = {e.start - 1 for e in events[1:]}
    inside = [d for i, d in enumerate(diffs) if i not in cuts]
    assert min(diffs[i] for i in cuts) > 3 * max(inside)


def test_decoded_frames_match_generated_pixels(tiny_dataset, tiny_dataset_config):
    import random

    # Regenerate the first video's events with the same random stream the generator used.
    rng = random.Random(tiny_dataset_config.seed)
    events = _make_events(rng, tiny_dataset_config)
    expected = render_video(events, tiny_dataset_config).astype(np.float32)
    decoded = read_video(tiny_dataset / "videos/video_00000.mp4").permute(0, 2, 3, 1).numpy()
    assert decoded.shape == expected.shape
    error = np.abs(decoded.astype(np.float32) - expected)
    assert error.mean() < 4.0, error.mean()  # H.264 at crf 12 with 4:2:0 chroma


def test_vocabulary_covers_every_generated_text(tiny_dataset):
    vocab = set(vocabulary())
    for line in (tiny_dataset / "train.jsonl").read_text().splitlines():
        row = json.loads(line)
        texts = [row["problem"], *row["options"], *(e["caption"] for e in row["events"])]
        for text in texts:
            missing = set(tokenize_words(text)) - vocab
            assert not missing, (text, missing)


def test_command_line_writes_the_dataset(tmp_path, capsys):
    main(["--root", str(tmp_path), "--num-videos", "3", "--num-frames", "32", "--frame-size", "56"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["videos"] == 3
    assert read_video(tmp_path / "videos/video_00002.mp4").shape == (32, 3, 56, 56)


def test_answer_letter_does_not_reveal_the_question_kind(tmp_path):
    generate_dataset(tmp_path, GeneratorConfig(num_videos=40, seed=9))
    rows = [json.loads(x) for x in (tmp_path / "train.jsonl").read_text().splitlines()]
    for kind in QUESTION_KINDS:
        letters = Counter(r["solution"][8] for r in rows if r["question_kind"] == kind)
        assert len(letters) == 4 and max(letters.values()) < 0.5 * sum(letters.values()), letters


def test_objects_keep_their_own_cell_listed_in_reading_order():
    import random

    cfg = GeneratorConfig(frame_size=56)
    rng = random.Random(3)
    size = cfg.frame_size
    yy, xx = np.mgrid[0:size, 0:size]
    for _ in range(20):
        for event in _make_events(rng, cfg):
            cells = [obj.start_xy for obj in event.objects]
            assert len(set(cells)) == len(cells) and set(cells) <= set(CELL_CENTRES)
            assert cells == sorted(cells, key=lambda xy: (xy[1], xy[0]))
            # At the extremes of its motion an object's pixels stay inside its own cell.
            for obj in event.objects:
                for sign in (-1, 1):
                    dx, dy = _DIRECTION_STEP[obj.direction]
                    cx = (obj.start_xy[0] + sign * dx * cfg.travel / 2) * size
                    cy = (obj.start_xy[1] + sign * dy * cfg.travel / 2) * size
                    mask = _shape_mask(obj.shape, cfg.object_size * size, yy, xx, cx, cy)
                    col, row = int(obj.start_xy[0] * 2), int(obj.start_xy[1] * 2)
                    half = size // 2
                    inside = mask[row * half : (row + 1) * half, col * half : (col + 1) * half]
                    assert inside.sum() == mask.sum() > 0


@pytest.mark.parametrize(
    "options, message",
    [
        ({"events_per_video": 1}, "events_per_video"),
        ({"max_objects": 5}, "max_objects"),
        ({"object_size": 0.4, "travel": 0.2}, "object_size \\+ travel"),
    ],
)
def test_layouts_that_cannot_fit_are_refused(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        generate_dataset(tmp_path, GeneratorConfig(num_videos=3, num_frames=16, **options))

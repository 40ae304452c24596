import json

import numpy as np
import pytest
import torch

from marc.configurable import build, describe
from marc.data.synthetic import (
    Event,
    GeneratorConfig,
    SceneObject,
    generate_dataset,
    render_event_frames,
)
from marc.data.video import read_video
from marc.retrieval.segment import (
    ContentChangeSegmenter,
    FixedWindowSegmenter,
    Segmenter,
    boundary_f1,
    spans_from_boundaries,
)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    generate_dataset(root, GeneratorConfig(num_videos=6))
    videos = {}
    for split in ("train", "val", "test"):
        for line in (root / f"{split}.jsonl").read_text().splitlines():
            row = json.loads(line)
            videos[row["video_id"]] = (
                root / row["path"],
                [(e["start"], e["end"]) for e in row["events"]],
            )
    return videos


def _solid(colours: list[tuple[int, int, int]], lengths: list[int], size: int = 28) -> torch.Tensor:
    frames = [
        torch.tensor(c, dtype=torch.uint8).view(3, 1, 1).expand(3, size, size) for c in colours
    ]
    return torch.cat([f.expand(n, 3, size, size) for f, n in zip(frames, lengths)]).contiguous()


def _covers(spans, total):
    return (
        spans[0][0] == 0
        and spans[-1][1] == total
        and all(a[1] == b[0] and a[0] < a[1] for a, b in zip(spans, spans[1:]))
    )


def test_content_change_f1_on_generated_videos(generated):
    segmenter = ContentChangeSegmenter()
    scores = []
    for path, true_spans in generated.values():
        frames = read_video(path)
        spans = segmenter.segment(frames)
        assert _covers(spans, len(frames))
        scores.append(boundary_f1(spans, true_spans, tolerance=1))
    assert np.mean(scores) >= 0.95, scores


def test_one_event_video_is_one_clip():
    cfg = GeneratorConfig()
    objects = [
        SceneObject("circle", "red", "right", (0.4, 0.5)),
        SceneObject("cross", "blue", "up", (0.6, 0.3)),
    ]
    event = Event(0, 24, "teal", "checkered", objects)
    frames = torch.from_numpy(render_event_frames(event, cfg)).permute(0, 3, 1, 2)
    assert ContentChangeSegmenter().segment(frames) == [(0, 24)]
    assert ContentChangeSegmenter(feature="histogram").segment(frames) == [(0, 24)]


def test_single_frame_video():
    assert ContentChangeSegmenter().segment(_solid([(1, 2, 3)], [1])) == [(0, 1)]


def test_empty_video_raises():
    empty = torch.zeros(0, 3, 28, 28, dtype=torch.uint8)
    for segmenter in (ContentChangeSegmenter(), FixedWindowSegmenter(4)):
        with pytest.raises(ValueError, match="empty"):
            segmenter.segment(empty)
    with pytest.raises(ValueError, match=r"\[T, C, H, W\]"):
        ContentChangeSegmenter().segment(torch.zeros(3, 28, 28, dtype=torch.uint8))


@pytest.mark.parametrize("feature", ["thumbnail", "histogram"])
def test_hard_cuts_between_solid_colours(feature):
    frames = _solid([(200, 0, 0), (0, 0, 200), (0, 200, 0)], [10, 6, 9])
    assert ContentChangeSegmenter(feature=feature).segment(frames) == [(0, 10), (10, 16), (16, 25)]


def test_min_event_frames_keeps_the_strongest_of_close_cuts():
    frames = _solid([(200, 0, 0), (0, 0, 200), (0, 200, 0)], [10, 2, 10])
    spans = ContentChangeSegmenter(min_event_frames=4).segment(frames)
    assert len(spans) == 2 and _covers(spans, 22)


def test_fixed_window():
    frames = torch.zeros(20, 3, 28, 28, dtype=torch.uint8)
    assert FixedWindowSegmenter(window=8).segment(frames) == [(0, 8), (8, 16), (16, 20)]
    assert FixedWindowSegmenter(window=32).segment(frames) == [(0, 20)]
    with pytest.raises(ValueError):
        FixedWindowSegmenter(window=0)


def test_boundary_f1():
    true = spans_from_boundaries([10, 20, 30], 40)
    assert boundary_f1(true, true) == 1.0
    assert boundary_f1(spans_from_boundaries([11, 19, 30], 40), true, tolerance=1) == 1.0
    off_by_two = spans_from_boundaries([12, 20, 30], 40)
    assert boundary_f1(off_by_two, true, tolerance=1) == pytest.approx(2 / 3)
    assert boundary_f1(off_by_two, true, tolerance=2) == 1.0
    assert boundary_f1([(0, 40)], true) == 0.0
    assert boundary_f1([(0, 40)], [(0, 40)]) == 1.0
    # One prediction cannot match two true boundaries.
    one, two = spans_from_boundaries([10], 40), spans_from_boundaries([9, 11], 40)
    assert boundary_f1(one, two) == pytest.approx(2 / 3)


def test_a_described_segmenter_rebuilds_equal():
    for segmenter in (
        ContentChangeSegmenter(threshold=0.6, feature="histogram"),
        FixedWindowSegmenter(5),
    ):
        spec = describe(segmenter)
        rebuilt = build(spec, Segmenter)
        assert type(rebuilt) is type(segmenter)
        assert describe(rebuilt) == spec
    assert describe(FixedWindowSegmenter(5))["init_args"] == {"window": 5}

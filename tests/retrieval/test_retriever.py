import pytest
import torch

from marc.data.synthetic import Event, GeneratorConfig, SceneObject, render_video
from marc.retrieval.encoders import ClipEncoder, QueryEncoder
from marc.retrieval.memory import VideoMemory
from marc.retrieval.retriever import VisualMemoryRetriever, reconstruct_video
from marc.retrieval.segment import ContentChangeSegmenter, FixedWindowSegmenter

QUESTION = "What colour is the circle in the event with the navy plain background?"


def _video(bounds=(0, 10, 22, 30, 41)) -> torch.Tensor:
    backgrounds = [
        ("navy", "plain"),
        ("teal", "striped"),
        ("brown", "checkered"),
        ("grey", "plain"),
    ]
    events = [
        Event(s, e, colour, pattern, [SceneObject("circle", "red", "left", (0.5, 0.5))])
        for (s, e), (colour, pattern) in zip(zip(bounds, bounds[1:]), backgrounds)
    ]
    frames = render_video(events, GeneratorConfig(frame_size=56))
    return torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()


@pytest.fixture
def retriever():
    torch.manual_seed(0)
    return VisualMemoryRetriever(
        ContentChangeSegmenter(),
        ClipEncoder(embed_dim=16, image_size=56),
        QueryEncoder(embed_dim=16),
        k=3,
    )


def test_retrieve_reconstructs_chosen_clips_in_time_order(retriever):
    frames = _video()
    result = retriever.retrieve("v0", frames, QUESTION)
    assert len(result.spans) == 3 and len(result.scores) == 3
    assert result.spans == sorted(result.spans)
    assert result.clip_indices == sorted(result.clip_indices)
    all_spans = [(0, 10), (10, 22), (22, 30), (30, 41)]
    assert result.spans == [all_spans[i] for i in result.clip_indices]
    assert len(result.frames) == sum(e - s for s, e in result.spans)
    expected = torch.cat([frames[s:e] for s, e in result.spans])
    assert torch.equal(result.frames, expected)


def test_k_larger_than_the_number_of_clips_returns_all(retriever):
    frames = _video()
    result = retriever.retrieve("v0", frames, QUESTION, k=10)
    assert result.spans == [(0, 10), (10, 22), (22, 30), (30, 41)]
    assert torch.equal(result.frames, frames)


def test_videos_are_indexed_once_and_searched_separately(retriever):
    first, second = _video(), _video((0, 8, 16, 24, 33))
    ids = retriever.index_video("a", first)
    assert retriever.index_video("a", first) == ids and len(retriever.memory) == 4
    result = retriever.retrieve("b", second, QUESTION, k=4)
    assert len(retriever.memory) == 8
    assert result.spans == [(0, 8), (8, 16), (16, 24), (24, 33)]
    with pytest.raises(ValueError, match="indexed with 41 frames"):
        retriever.retrieve("a", second, QUESTION)


def test_max_clip_frames_caps_each_clip():
    torch.manual_seed(0)
    retriever = VisualMemoryRetriever(
        FixedWindowSegmenter(window=10),
        ClipEncoder(embed_dim=8, image_size=56),
        QueryEncoder(embed_dim=8),
        memory=VideoMemory(8, backend="exact"),
        k=2,
        max_clip_frames=4,
    )
    result = retriever.retrieve("v", _video((0, 10, 20, 30, 40)), QUESTION)
    assert len(result.spans) == 2 and result.frames.shape[0] == 8


def test_reconstruct_video_sorts_spans():
    frames = torch.arange(10).view(10, 1, 1, 1)
    out = reconstruct_video(frames, [(6, 8), (1, 3)])
    assert out.flatten().tolist() == [1, 2, 6, 7]


def test_embed_dim_mismatch_raises():
    with pytest.raises(ValueError, match="embed_dim"):
        VisualMemoryRetriever(
            FixedWindowSegmenter(4), ClipEncoder(embed_dim=8), QueryEncoder(embed_dim=16)
        )


def test_indexing_leaves_encoders_in_their_mode(retriever):
    retriever.clip_encoder.train()
    before = {k: v.clone() for k, v in retriever.clip_encoder.state_dict().items()}
    retriever.index_video("v", _video())
    assert retriever.clip_encoder.training
    after = retriever.clip_encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # no batch-norm stat updates

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
    # Each clip is padded to whole temporal groups of two frames by repeating its last frame.
    padded = [
        torch.cat([frames[s:e], frames[e - 1 : e].expand((e - s) % 2, -1, -1, -1)])
        for s, e in result.spans
    ]
    assert torch.equal(result.frames, torch.cat(padded))
    lengths = [len(clip) for clip in padded]
    starts = [sum(lengths[:i]) for i in range(len(lengths))]
    assert result.segments == [(s, s + n) for s, n in zip(starts, lengths)]
    assert all(start % 2 == 0 for start, _ in result.segments)


def test_k_larger_than_the_number_of_clips_returns_all(retriever):
    frames = _video()
    result = retriever.retrieve("v0", frames, QUESTION, k=10)
    assert result.spans == [(0, 10), (10, 22), (22, 30), (30, 41)]
    # The last clip has 11 frames: its last frame is repeated once.
    assert torch.equal(result.frames, torch.cat([frames, frames[-1:]]))
    assert result.segments == [(0, 10), (10, 22), (22, 30), (30, 42)]


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
    out, segments = reconstruct_video(frames, [(6, 8), (1, 3)])
    assert out.flatten().tolist() == [1, 2, 6, 7] and segments == [(0, 2), (2, 4)]


def test_reconstruct_video_pads_each_clip_to_whole_groups():
    frames = torch.arange(10).view(10, 1, 1, 1)
    out, segments = reconstruct_video(frames, [(0, 3), (5, 10)], frame_multiple=2)
    assert out.flatten().tolist() == [0, 1, 2, 2, 5, 6, 7, 8, 9, 9]
    assert segments == [(0, 4), (4, 10)]
    with pytest.raises(ValueError, match="frame_multiple"):
        reconstruct_video(frames, [(0, 3)], frame_multiple=0)


def test_embed_dim_mismatch_raises():
    with pytest.raises(ValueError, match="embed_dim"):
        VisualMemoryRetriever(
            FixedWindowSegmenter(4), ClipEncoder(embed_dim=8), QueryEncoder(embed_dim=16)
        )


def test_a_memory_of_another_dimension_raises():
    with pytest.raises(ValueError, match="memory dim 16 differs from embed_dim 8"):
        VisualMemoryRetriever(
            FixedWindowSegmenter(4),
            ClipEncoder(embed_dim=8),
            QueryEncoder(embed_dim=8),
            memory=VideoMemory(16),
        )


def test_indexing_leaves_encoders_in_their_mode(retriever):
    retriever.clip_encoder.train()
    before = {k: v.clone() for k, v in retriever.clip_encoder.state_dict().items()}
    retriever.index_video("v", _video())
    assert retriever.clip_encoder.training
    after = retriever.clip_encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # no batch-norm stat updates


def _relational_retriever(offset: int, k: int) -> VisualMemoryRetriever:
    """A retriever whose relation head always predicts ``offset`` (max_offset 1)."""
    torch.manual_seed(0)
    query_encoder = QueryEncoder(embed_dim=16, max_offset=1)
    with torch.no_grad():
        query_encoder.offset_head.weight.zero_()
        query_encoder.offset_head.bias.copy_(
            torch.nn.functional.one_hot(torch.tensor(offset + 1), 3)
        )
    return VisualMemoryRetriever(
        ContentChangeSegmenter(), ClipEncoder(embed_dim=16, image_size=56), query_encoder, k=k
    )


def test_relation_head_moves_the_match_to_its_neighbour():
    frames = _video()
    all_spans = [(0, 10), (10, 22), (22, 30), (30, 41)]
    matched = _relational_retriever(0, k=1).retrieve("v", frames, QUESTION)
    assert matched.offset == 0 and len(matched.clip_indices) == 1
    for offset in (1, -1):
        moved = _relational_retriever(offset, k=1).retrieve("v", frames, QUESTION)
        expected = min(max(matched.clip_indices[0] + offset, 0), 3)
        assert moved.offset == offset and moved.clip_indices == [expected]
        assert moved.scores == matched.scores  # a moved clip keeps its match's score
        assert moved.spans == [all_spans[expected]]
        start, end = all_spans[expected]
        assert torch.equal(moved.frames[: end - start], frames[start:end])


def test_moved_matches_are_clamped_to_the_video_and_kept_once():
    frames = _video()
    every = _relational_retriever(0, k=4).retrieve("v", frames, QUESTION)
    moved = _relational_retriever(1, k=4).retrieve("v", frames, QUESTION)
    assert every.clip_indices == [0, 1, 2, 3]
    # Clips 0..3 move to 1, 2, 3 and 3 (clamped): the last clip once, with the better score.
    assert moved.clip_indices == [1, 2, 3]
    assert moved.scores == [every.scores[0], every.scores[1], max(every.scores[2:])]


def test_saved_retriever_keeps_its_relation_head(tmp_path):
    retriever = _relational_retriever(-1, k=1)
    frames = _video()
    before = retriever.retrieve("v", frames, QUESTION)
    retriever.save_pretrained(tmp_path / "saved")
    loaded = VisualMemoryRetriever.from_pretrained(tmp_path / "saved")
    assert loaded.query_encoder.max_offset == 1
    after = loaded.retrieve("v", frames, QUESTION)
    assert after.offset == -1 and after.clip_indices == before.clip_indices

"""A stage that reads the retrieved clips compresses them within the clips' spans."""

import torch

from marc.compression import Budget, TokenCompressor
from marc.compression.base import kept_groups
from marc.modules.evaluation import VideoQAEvaluation


class Recording(TokenCompressor):
    """Keeps the first group and records the segments it was given."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def compress(self, tokens, grid, budget, segments=None):
        self.seen.append(segments)
        return kept_groups(tokens[:1], grid)


def _frames(n):
    return torch.randint(0, 256, (n, 3, 56, 56), dtype=torch.uint8)


def test_retrieved_clips_reach_the_compressor_as_group_spans():
    recording = Recording()
    module = VideoQAEvaluation(compressor=recording, use_retrieval=True, budget_frames=1)
    batch = {
        "video": [_frames(16), _frames(16)],
        "retrieved_video": [_frames(10), _frames(6)],
        "retrieved_segments": [[(0, 4), (4, 10)], [(0, 6)]],
    }
    videos = module.compressed_inputs(batch)
    assert recording.seen == [[(0, 2), (2, 5)], [(0, 3)]]
    assert [v.grid for v in videos] == [(1, 2, 2), (1, 2, 2)]


def test_full_videos_have_no_segments():
    recording = Recording()
    module = VideoQAEvaluation(compressor=recording, use_retrieval=False)
    module.compressed_inputs({"video": [_frames(8)]})
    assert recording.seen == [None]
    assert module.budget == Budget(frames=1)

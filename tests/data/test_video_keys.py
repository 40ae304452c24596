"""The clip memory keys a video by its path under the data root, never by its file name."""

import json

import numpy as np
import torch

from marc.data.datamodule import VideoQADataModule
from marc.data.synthetic import write_mp4
from marc.retrieval.encoders import ClipEncoder, QueryEncoder
from marc.retrieval.retriever import VisualMemoryRetriever
from marc.retrieval.segment import FixedWindowSegmenter


def test_two_videos_named_alike_are_two_videos_in_the_clip_memory(tmp_path):
    # a/x.mp4 is dark, b/x.mp4 bright; neither row has a video_id.
    for folder, value in (("a", 20), ("b", 230)):
        write_mp4(tmp_path / folder / "x.mp4", np.full((8, 56, 56, 3), value, np.uint8), fps=8)
    row = {
        "problem": "What is shown?",
        "problem_type": "free-form",
        "solution": "<answer>a colour</answer>",
    }
    rows = [{**row, "problem_id": f, "path": f"{f}/x.mp4"} for f in ("a", "b")]
    (tmp_path / "test.jsonl").write_text("\n".join(map(json.dumps, rows)) + "\n")
    torch.manual_seed(0)
    retriever = VisualMemoryRetriever(
        FixedWindowSegmenter(4),
        ClipEncoder(embed_dim=8, image_size=56),
        QueryEncoder(embed_dim=8),
        k=1,
    )
    data = VideoQADataModule(
        data_root=str(tmp_path), test_file=str(tmp_path / "test.jsonl"), retriever=retriever
    )
    dataset = data.dataset("test")
    dark, bright = dataset[0], dataset[1]
    assert (dark["video_id"], bright["video_id"]) == ("a/x.mp4", "b/x.mp4")
    assert retriever.memory.has_video("a/x.mp4") and retriever.memory.has_video("b/x.mp4")
    assert len(retriever.memory) == 4  # two clips of each video
    # Each question is answered from its own video's clips.
    assert dark["retrieved_video"].float().mean() < 60
    assert bright["retrieved_video"].float().mean() > 190

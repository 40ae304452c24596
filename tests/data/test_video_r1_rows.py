"""Video-R1 as it is: image rows, every problem type, 1 fps with a frame cap, random subsets."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from marc.data.datamodule import VideoQADataModule, random_subset
from marc.data.image import ImageDecodeError, read_image
from marc.data.video import VideoDecodeError


def _module(root, **kwargs) -> VideoQADataModule:
    files = {f"{split}_file": str(root / "Video-R1-test.json") for split in ("train", "val")}
    return VideoQADataModule(data_root=str(root), frame_size=56, **{**files, **kwargs})


def test_image_rows_are_one_frame_videos_padded_to_a_temporal_group(video_r1_dataset):
    dataset = _module(video_r1_dataset).dataset("train")
    samples = {s["problem_id"]: s for s in (dataset[i] for i in range(len(dataset)))}
    sign, green = samples["3"], samples["6"]
    # 70x50 px at a 56 px short side: 56 x 84 (multiples of 28); the picture twice.
    assert sign["video"].shape == (2, 3, 56, 84) and sign["video"].dtype == torch.uint8
    assert torch.equal(sign["video"][0], sign["video"][1])
    assert green["video"].shape == (2, 3, 56, 56)
    assert (green["video"][0, :, 20, 20] - torch.tensor([30, 200, 30])).abs().max() <= 2  # JPEG
    assert [s["data_type"] for s in samples.values()] == ["video", "video", "image"] + [
        "video",
        "video",
        "image",
    ]
    assert {s["problem_type"] for s in samples.values()} == {
        "multiple choice",
        "numerical",
        "OCR",
        "free-form",
        "regression",
    }


def test_fps_samples_at_that_rate_and_max_frames_caps_it(video_r1_dataset):
    # The videos are 6 s at 8 fps (48 frames).
    one_fps = _module(video_r1_dataset, fps=1.0, max_frames=64).dataset("train")[0]
    assert one_fps["video"].shape[0] == 6
    capped = _module(video_r1_dataset, fps=4.0, max_frames=16).dataset("train")[0]
    assert capped["video"].shape[0] == 16
    every = _module(video_r1_dataset, max_frames=None).dataset("train")[0]
    assert every["video"].shape[0] == 48


def test_a_random_subset_is_the_same_for_a_seed_and_kept_in_file_order(video_r1_dataset):
    ids = [a.problem_id for a in _module(video_r1_dataset).dataset("train").annotations]
    draw = [
        [
            a.problem_id
            for a in _module(video_r1_dataset, subset_size=3, subset_seed=s)
            .dataset("train")
            .annotations
        ]
        for s in (0, 0, 1)
    ]
    assert draw[0] == draw[1] and len(draw[0]) == 3 and draw[0] != draw[2]
    assert draw[0] == sorted(draw[0], key=ids.index)
    # Only the training split is drawn from.
    val = _module(video_r1_dataset, subset_size=3).dataset("val").annotations
    assert len(val) == len(ids)
    assert random_subset(list(range(5)), 10, 0) == list(range(5))
    with pytest.raises(ValueError, match="subset_size"):
        random_subset([1, 2], 0, 0)


def _with_bad_images(root, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    (copy / "images/sign.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (copy / "images/green.jpg").unlink()
    return copy


def test_a_missing_or_corrupt_image_names_the_file_and_the_row(video_r1_dataset, tmp_path):
    root = _with_bad_images(video_r1_dataset, tmp_path)
    dataset = _module(root).dataset("train")
    with pytest.raises(ImageDecodeError, match=r"sign.png \(row .*Video-R1-test.json:\d+\)"):
        dataset[2]
    with pytest.raises(FileNotFoundError, match=r"green.jpg \(row .*Video-R1-test.json:\d+\)"):
        dataset[5]
    # The data module's skip handling catches it as it catches unreadable videos.
    assert issubclass(ImageDecodeError, VideoDecodeError)


def test_bad_images_are_skipped_and_counted(video_r1_dataset, tmp_path):
    root = _with_bad_images(video_r1_dataset, tmp_path)
    dm = _module(root, on_bad_sample="skip", batch_size=6)
    dm.setup("fit")
    batch = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0)
    assert batch["batch_size"] == 4 and dm.skipped_samples == 2
    assert set(batch["data_type"]) == {"video"}


def test_read_image_checks_its_arguments(video_r1_dataset):
    frames, indices = read_image(video_r1_dataset / "images/green.jpg", size=28, frames=4)
    assert frames.shape == (4, 3, 28, 28) and indices.tolist() == [0, 0, 0, 0]
    with pytest.raises(ValueError, match="frames"):
        read_image(video_r1_dataset / "images/green.jpg", frames=0)


def test_image_rows_bypass_the_retriever(video_r1_dataset):
    class Refuses:
        def retrieve(self, *args, **kwargs):
            raise AssertionError("an image row reached the retriever")

    rows = json.loads((video_r1_dataset / "Video-R1-test.json").read_text())
    assert rows[2]["data_type"] == "image"
    dataset = _module(video_r1_dataset, retriever=Refuses()).dataset("train")
    sample = dataset[2]
    assert torch.equal(sample["retrieved_video"], sample["video"])
    assert sample["retrieved_segments"] == [(0, 2)]

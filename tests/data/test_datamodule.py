import shutil

import pytest
import torch

from marc.data.datamodule import VideoQADataModule
from marc.data.synthetic import GeneratorConfig, is_generated
from marc.data.video import VideoDecodeError


def test_prepare_data_generates_the_default_when_root_is_empty(tmp_path):
    dm = VideoQADataModule(data_root=str(tmp_path / "d"), generator=GeneratorConfig(num_videos=3))
    dm.prepare_data()
    assert is_generated(tmp_path / "d")
    before = (tmp_path / "d/train.jsonl").stat().st_mtime_ns
    dm.prepare_data()  # already there: not regenerated
    assert (tmp_path / "d/train.jsonl").stat().st_mtime_ns == before


def test_batches_from_the_generated_set(tiny_dataset):
    dm = VideoQADataModule(data_root=str(tiny_dataset), batch_size=3, max_frames=32, frame_size=56)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["batch_size"] == 3 and batch["num_skipped"] == 0
    assert all(v.shape == (32, 3, 56, 56) and v.dtype == torch.uint8 for v in batch["video"])
    assert batch["video_lengths"].tolist() == [32, 32, 32]
    for spans, targets in zip(batch["event_spans"], batch["target_events"]):
        assert spans[0][0] == 0 and spans[-1][1] == 32
        assert all(0 <= t < len(spans) for t in targets)
    assert all("Options: A." in p for p in batch["prompt"])
    assert set(batch["answer"]) <= {"A", "B", "C", "D"}
    val = next(iter(dm.val_dataloader()))
    assert val["batch_size"] >= 1


def test_cache_returns_the_same_frames(tiny_dataset):
    dm = VideoQADataModule(data_root=str(tiny_dataset), cache_frames=True, frame_size=56)
    dataset = dm.dataset("train")
    first = dataset[0]["video"]
    assert len(dataset._cache) == 1
    assert dataset[0]["video"] is first


def _copy_with_broken_video(tiny_dataset, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(tiny_dataset, root)
    (root / "videos/video_00000.mp4").write_bytes(b"broken")
    (root / "videos/video_00001.mp4").unlink()
    return root


def test_bad_videos_raise_by_default(tiny_dataset, tmp_path):
    root = _copy_with_broken_video(tiny_dataset, tmp_path)
    dataset = VideoQADataModule(data_root=str(root)).dataset("train")
    with pytest.raises(VideoDecodeError, match="video_00000.mp4"):
        dataset[0]
    with pytest.raises(FileNotFoundError, match="video_00001.mp4"):
        dataset[4]


def test_bad_videos_are_skipped_and_counted(tiny_dataset, tmp_path):
    root = _copy_with_broken_video(tiny_dataset, tmp_path)
    dm = VideoQADataModule(data_root=str(root), batch_size=4, on_bad_sample="skip", frame_size=56)
    dm.setup("fit")
    loader = torch.utils.data.DataLoader(
        dm.dataset("train"), batch_size=4, collate_fn=dm.train_dataloader().collate_fn
    )
    total = 0
    for batch in loader:
        batch = dm.on_after_batch_transfer(batch, 0)
        total += batch["batch_size"]
    assert dm.skipped_samples == 8  # two broken videos, four questions each
    assert total == len(dm.dataset("train")) - 8


def test_malformed_rows_skip_or_raise(tiny_dataset, tmp_path):
    root = tmp_path / "rows"
    shutil.copytree(tiny_dataset, root)
    bad_line = len((root / "train.jsonl").read_text().splitlines()) + 1
    with open(root / "train.jsonl", "a") as f:
        f.write('{"problem": "no solution"}\n')
    dm = VideoQADataModule(data_root=str(root), on_bad_sample="skip")
    dm.dataset("train")
    assert dm.skipped_rows == 1
    with pytest.raises(ValueError, match=f"train.jsonl:{bad_line}: missing field 'problem_type'"):
        VideoQADataModule(data_root=str(root)).dataset("train")


def test_missing_annotation_file_is_named(tmp_path):
    dm = VideoQADataModule(data_root=str(tmp_path), train_file=str(tmp_path / "mine.jsonl"))
    dm.prepare_data()  # user files named: nothing is generated over them
    with pytest.raises(FileNotFoundError, match="mine.jsonl"):
        dm.setup("fit")


def test_worker_processes_serve_the_same_batches(tiny_dataset):
    kwargs = dict(data_root=str(tiny_dataset), batch_size=4, max_frames=16, frame_size=56)
    single = VideoQADataModule(**kwargs).val_dataloader()
    workers = VideoQADataModule(**kwargs, num_workers=2).val_dataloader()
    for a, b in zip(single, workers):
        assert a["problem_id"] == b["problem_id"]
        assert all(torch.equal(x, y) for x, y in zip(a["video"], b["video"]))


def test_a_missing_retriever_dir_is_named(tiny_dataset, tmp_path):
    dm = VideoQADataModule(data_root=str(tiny_dataset), retriever_dir=str(tmp_path / "nope"))
    with pytest.raises(
        FileNotFoundError, match=r"data.retriever_dir names a missing folder: .*nope"
    ):
        dm.dataset("val")

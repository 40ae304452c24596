"""RetrieverPretraining: overfits a batch, logs retrieval metrics, exports a usable retriever."""

from types import SimpleNamespace

import lightning as L
import pytest
import torch

from callbacks.memory_index import MemoryIndexCallback
from marc.data.datamodule import VideoQADataModule
from marc.data.synthetic import GeneratorConfig
from marc.data.video import VideoDecodeError
from marc.modules.retriever_pretraining import (
    NO_OFFSET_LABEL,
    RetrieverPretraining,
    batch_clips,
    offset_labels,
)
from marc.retrieval.encoders import ClipEncoder, QueryEncoder
from marc.retrieval.retriever import VisualMemoryRetriever


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("retriever_data")
    dm = VideoQADataModule(
        data_root=str(root),
        generator=GeneratorConfig(num_videos=6, num_frames=32),
        max_frames=32,
        frame_size=56,
        batch_size=8,
        cache_frames=True,
    )
    dm.prepare_data()
    return dm


def _module():
    return RetrieverPretraining(
        clip_encoder=ClipEncoder(image_size=56),
        query_encoder=QueryEncoder(),
        optimizer=lambda params: torch.optim.AdamW(params, lr=3e-3),
    )


def test_batch_clips_dedupes_videos_and_points_at_targets(data):
    data.setup("fit")
    batch = next(iter(data.val_dataloader()))
    clips, captions, positives, first = batch_clips(batch)
    assert len(clips) == 4 * len(set(batch["video_id"])) == len(captions)
    for video_id, targets, pos in zip(batch["video_id"], batch["target_events"], positives):
        assert pos == [first[video_id] + t for t in targets]


def test_overfits_one_batch(data):
    L.seed_everything(0)
    module = _module()
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    optimizer = module.configure_optimizers()
    first = None
    for _ in range(30):
        loss = module.training_step(batch, 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.3 * first


def test_fit_logs_metrics_and_the_callback_saves_a_working_retriever(data, tmp_path):
    L.seed_everything(0)
    module = _module()
    callback = MemoryIndexCallback(directory=str(tmp_path / "retriever"), k=2)
    trainer = L.Trainer(
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[callback],
        default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=data)
    for name in ("val/recall_at_1", "val/recall_at_5", "val/mrr", "train/loss"):
        assert name in trainer.callback_metrics
    retriever = VisualMemoryRetriever.from_pretrained(tmp_path / "retriever")
    assert retriever.k == 2 and len(retriever.memory) >= 6 * 2  # every video indexed
    # The saved encoders embed exactly like the trained ones.
    texts = ["What colour is the circle?"]
    module.query_encoder.eval()
    with torch.no_grad():
        assert torch.allclose(
            retriever.query_encoder.encode_texts(texts), module.query_encoder.encode_texts(texts)
        )
    # The data module serves reconstructed videos from the saved retriever.
    served = VideoQADataModule(
        data_root=str(data.data_root),
        max_frames=32,
        frame_size=56,
        retriever_dir=str(tmp_path / "retriever"),
    )
    sample = served.dataset("test")[0]
    spans = sample["retrieval"]["spans"]
    assert sample["retrieval"]["offset"] == 0  # this query encoder has no relation head
    assert len(spans) <= 2 and spans == sorted(spans)
    # Each clip padded to whole temporal groups; its span in the reconstruction is served.
    padded = [e - s + (e - s) % 2 for s, e in spans]
    assert sample["retrieved_video"].shape[0] == sum(padded)
    segments = sample["retrieved_segments"]
    assert [e - s for s, e in segments] == padded and segments[0][0] == 0
    assert all(a[1] == b[0] for a, b in zip(segments, segments[1:]))


def test_missing_retriever_dir_names_the_command(tmp_path, data):
    dm = VideoQADataModule(data_root=str(data.data_root), retriever_dir=str(tmp_path / "none"))
    with pytest.raises(FileNotFoundError, match="configs/retriever.yaml"):
        dm.dataset("test")


def test_indexing_skips_bad_videos_only_when_asked(data, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(data.data_root, root)
    (root / "videos/video_00000.mp4").write_bytes(b"broken")
    module = _module()
    kwargs = dict(data_root=str(root), max_frames=32, frame_size=56)
    callback = MemoryIndexCallback(directory=str(tmp_path / "r"), splits=("train",))
    with pytest.raises(VideoDecodeError, match="video_00000.mp4"):
        callback.build(module, VideoQADataModule(**kwargs))
    callback.build(module, VideoQADataModule(**kwargs, on_bad_sample="skip"))
    memory = VisualMemoryRetriever.from_pretrained(tmp_path / "r").memory
    assert not memory.has_video("video_00000") and memory.has_video("video_00001")


def test_offset_labels_point_from_the_named_event_to_the_answering_one():
    labels = offset_labels([[2], [1, 2], [3, 0], [0, 3], []], max_offset=2)
    # Offsets 0, +1, -3 (clamped to -2), +3 (clamped to +2); class = offset + max_offset;
    # a question without target events is left out of the loss.
    assert labels.tolist() == [2, 3, 0, 4, NO_OFFSET_LABEL]


def test_relation_head_learns_the_offsets_of_one_batch(data):
    L.seed_everything(0)
    module = RetrieverPretraining(
        clip_encoder=ClipEncoder(image_size=56),
        query_encoder=QueryEncoder(max_offset=1),
        optimizer=lambda params: torch.optim.AdamW(params, lr=3e-3),
    )
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    labels = offset_labels(batch["target_events"], 1)
    assert {0, 1} <= set((labels - 1).tolist())  # the batch has order and one-event questions
    optimizer = module.configure_optimizers()
    for _ in range(30):
        losses = module.contrastive_loss(batch)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
    assert losses["offset_loss"].item() < 0.1
    with torch.no_grad():
        predicted = module.query_encoder.predict_offsets(batch["problem"])
    assert predicted == (labels - 1).tolist()
    module.validation_step(batch, 0)
    assert module.val_offset_acc.compute().item() == 1.0


def test_questions_without_target_events_are_left_out_of_the_offset_loss(data):
    torch.manual_seed(0)
    module = RetrieverPretraining(
        clip_encoder=ClipEncoder(image_size=56), query_encoder=QueryEncoder(max_offset=1)
    ).eval()  # no dropout: the two passes below must see the same features
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    full = module.contrastive_loss(batch)["offset_loss"]
    keep = len(batch["problem"]) // 2
    partial = dict(
        batch, target_events=batch["target_events"][:keep] + [[]] * (len(batch["problem"]) - keep)
    )
    labels = offset_labels(batch["target_events"][:keep], 1)
    with torch.no_grad():
        logits = module.query_encoder.embed_with_offsets(batch["problem"][:keep])[1]
        expected = torch.nn.functional.cross_entropy(logits, labels)
        got = module.contrastive_loss(partial)["offset_loss"]
    assert torch.isfinite(full) and torch.allclose(got, expected, atol=1e-5)


def test_a_batch_without_target_events_trains_on_captions_only(data):
    torch.manual_seed(0)
    module = _module()
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    no_targets = dict(batch, target_events=[[] for _ in batch["problem"]])
    losses = module.contrastive_loss(no_targets)
    assert losses["question_loss"].item() == 0.0
    assert torch.isfinite(losses["loss"]) and losses["caption_loss"].item() > 0
    losses["loss"].backward()
    grads = [p.grad for p in module.clip_encoder.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


def test_a_batch_without_event_spans_names_its_videos(data):
    module = _module()
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    empty = [[] for _ in batch["problem"]]
    no_events = dict(batch, event_spans=empty, captions=empty, target_events=empty)
    with pytest.raises(ValueError, match="event spans") as error:
        module.contrastive_loss(no_events)
    assert batch["video_id"][0] in str(error.value)


def test_question_indexes_differ_across_processes(data):
    """Reduced over processes, the metrics group candidates by index: two processes' first
    batches must not share indexes, or their questions would merge into one."""
    data.setup("fit")
    batch = next(iter(data.val_dataloader()))
    indexes = []
    for rank in (0, 1):
        module = _module()
        module._trainer = SimpleNamespace(world_size=2, global_rank=rank)
        with torch.no_grad():
            module.validation_step(batch, 0)
        indexes.append(set(torch.cat(module.val_metrics["mrr"].indexes).tolist()))
    assert indexes[0] and indexes[1] and not indexes[0] & indexes[1]

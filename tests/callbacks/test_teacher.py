"""TeacherCallback: frozen teacher outside the student, cached a_teacher, aligned logits."""

from __future__ import annotations

import json
from types import SimpleNamespace

import lightning as L
import pytest
import torch

from callbacks.teacher import (
    TeacherCacheError,
    TeacherCallback,
    check_same_vocabulary,
    teacher_fingerprint,
)
from marc.compression import Budget, Identity, MemoryAwareMerge
from marc.data.collate import collate_video_qa
from marc.data.datamodule import VideoQADataModule
from marc.models.vlm import VideoVLM

COMPLETIONS = ["<think> a red circle </think> <answer> B </answer>", "<answer> A </answer>"]


@pytest.fixture(scope="module")
def teacher_dir(tiny_vlm_dir):
    return tiny_vlm_dir


@pytest.fixture(scope="module")
def data_root(short_clips_dataset):
    return short_clips_dataset


def datamodule(data_root) -> VideoQADataModule:
    # Two questions in one batch: every epoch sees the same two problem ids.
    return VideoQADataModule(
        data_root=str(data_root), max_frames=16, frame_size=56, batch_size=2, limit_train=2
    )


@pytest.fixture(scope="module")
def batch(data_root) -> dict:
    dm = datamodule(data_root)
    dataset = dm.dataset("train")
    return collate_video_qa([dataset[0], dataset[1]])


def stub_module(student=None):
    return SimpleNamespace(device=torch.device("cpu"), vlm=student, teacher_source=None)


def teacher_callback(teacher_dir, cache_dir, **kwargs) -> TeacherCallback:
    return TeacherCallback(
        str(teacher_dir),
        num_samples=2,
        max_new_tokens=6,
        cache_dir=None if cache_dir is None else str(cache_dir),
        **kwargs,
    )


class TeacherProbe(L.LightningModule):
    """Asks the teacher for a_teacher on every batch; trains one dummy weight."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.teacher_source = None

    def training_step(self, batch, batch_idx):
        a_teacher = self.teacher_source.accuracy(batch)
        assert a_teacher.shape == (batch["batch_size"],)
        return (self.weight - 1).pow(2).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class CacheCounts(L.Callback):
    """Records the teacher's (hits, misses) at the end of every epoch."""

    def __init__(self, teacher: TeacherCallback):
        self.teacher = teacher
        self.per_epoch: list[tuple[int, int]] = []

    def on_train_epoch_end(self, trainer, pl_module):
        self.per_epoch.append((self.teacher.hits, self.teacher.misses))


def test_cache_is_hit_on_the_second_epoch_and_in_a_new_run(teacher_dir, data_root, batch, tmp_path):
    teacher = teacher_callback(teacher_dir, tmp_path / "cache")
    counts = CacheCounts(teacher)
    trainer = L.Trainer(
        max_epochs=2,
        limit_train_batches=1,
        limit_val_batches=0,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[teacher, counts],
    )
    trainer.fit(TeacherProbe(), datamodule(data_root))
    assert counts.per_epoch == [(0, 2), (2, 2)]  # misses in epoch 1, hits in epoch 2
    assert trainer.callback_metrics["teacher/cache_hits"] == 2
    files = list((tmp_path / "cache").glob("*/entries.json"))
    assert len(files) == 1
    entries = json.loads(files[0].read_text())["entries"]
    assert sorted(entries) == sorted(batch["problem_id"])

    fresh = teacher_callback(teacher_dir, tmp_path / "cache")
    fresh.attach(stub_module())
    values = fresh.accuracy(batch)
    assert (fresh.hits, fresh.misses) == (2, 0)
    expected = [entries[problem_id]["a_teacher"] for problem_id in batch["problem_id"]]
    assert values.tolist() == expected


def test_only_rank_zero_writes_the_cache(teacher_dir, batch, tmp_path):
    other_rank = teacher_callback(teacher_dir, tmp_path)
    other_rank.attach(stub_module(), rank=1)
    other_rank.accuracy(batch)
    assert (other_rank.hits, other_rank.misses) == (0, 2)
    assert not (tmp_path / other_rank.fingerprint).exists()

    rank0 = teacher_callback(teacher_dir, tmp_path)
    rank0.attach(stub_module(), rank=0)
    first = rank0.accuracy(batch)
    assert (tmp_path / rank0.fingerprint / "entries.json").is_file()
    again = teacher_callback(teacher_dir, tmp_path)
    again.attach(stub_module(), rank=1)
    assert torch.equal(again.accuracy(batch), first)
    assert (again.hits, again.misses) == (2, 0)


def test_per_rank_files_of_earlier_versions_are_read(teacher_dir, batch, tmp_path):
    writer = teacher_callback(teacher_dir, tmp_path)
    writer.attach(stub_module())
    first = writer.accuracy(batch)
    folder = tmp_path / writer.fingerprint
    (folder / "entries.json").rename(folder / "rank1.json")
    reader = teacher_callback(teacher_dir, tmp_path)
    reader.attach(stub_module())
    assert torch.equal(reader.accuracy(batch), first)
    assert (reader.hits, reader.misses) == (2, 0)


def test_the_checkpoint_state_restores_entries_and_counts(teacher_dir, batch, tmp_path):
    first = teacher_callback(teacher_dir, None)
    first.attach(stub_module())
    values = first.accuracy(batch)
    state = first.state_dict()
    assert sorted(state["entries"]) == sorted(batch["problem_id"]) and state["misses"] == 2

    resumed = teacher_callback(teacher_dir, None)  # no cache on disk: only the checkpoint
    resumed.attach(stub_module())
    resumed.load_state_dict(state)
    assert torch.equal(resumed.accuracy(batch), values)
    assert (resumed.hits, resumed.misses) == (2, 2)

    other = teacher_callback(teacher_dir, None, top_p=0.9)
    other.attach(stub_module())
    other.load_state_dict(state)  # another fingerprint: the counts only
    other.accuracy(batch)
    assert other.misses == 4


def test_changed_question_or_settings_is_a_miss(teacher_dir, batch, tmp_path):
    teacher = teacher_callback(teacher_dir, tmp_path)
    teacher.attach(stub_module())
    teacher.accuracy(batch)
    changed = dict(batch, prompt=[p + " Options: A. red" for p in batch["prompt"]])
    teacher.accuracy(changed)
    assert (teacher.hits, teacher.misses) == (0, 4)
    other = teacher_callback(teacher_dir, tmp_path, seed=1)
    assert teacher_fingerprint(teacher_dir, other.settings()) != teacher.fingerprint


def test_teacher_is_frozen_and_held_by_the_callback(teacher_dir, tmp_path):
    teacher = teacher_callback(teacher_dir, None)
    module = TeacherProbe()
    teacher.attach(module)
    assert module.teacher_source is teacher
    assert not teacher.teacher.training
    assert not any(p.requires_grad for p in teacher.teacher.parameters())
    student_ids = {id(p) for p in module.parameters()}
    assert not any(id(p) in student_ids for p in teacher.teacher.parameters())
    assert "teacher" not in "".join(module.state_dict())


def test_completion_logits_align_with_the_student(teacher_dir, batch):
    student = VideoVLM.from_pretrained(teacher_dir)
    teacher = TeacherCallback(str(teacher_dir), cache_dir=None)
    teacher.attach(stub_module(student))
    logits = teacher.completion_logits(batch, COMPLETIONS)

    full = [student.compress(v, Identity(), Budget(frames=1)) for v in batch["video"]]
    same = student.completion_logprobs(full, batch["prompt"], COMPLETIONS, return_logits=True)
    assert logits.shape == same.logits.shape == (2, same.mask.shape[1], student.vocab_size)
    torch.testing.assert_close(logits, same.logits)

    small = [student.compress(v, MemoryAwareMerge(), Budget(frames=1)) for v in batch["video"]]
    compressed = student.completion_logprobs(
        small, batch["prompt"], COMPLETIONS, return_logits=True
    )
    assert compressed.logits.shape == logits.shape


def test_different_vocabularies_are_refused(teacher_dir):
    teacher = VideoVLM.from_pretrained(teacher_dir)
    student = SimpleNamespace(vocab_size=teacher.vocab_size + 1, tokenizer=teacher.tokenizer)
    with pytest.raises(ValueError, match="share a tokenizer"):
        check_same_vocabulary(teacher, student)


def test_missing_teacher_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="configs/teacher.yaml"):
        TeacherCallback(str(tmp_path / "missing")).attach(stub_module())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{oops", "entries.json: not valid JSON"),
        ('{"entries": []}', "entries.json: expected an object with 'entries'"),
        ('{"version": 0, "entries": {}}', "entries.json: field 'version' is 0"),
        (
            '{"version": 1, "entries": {"q": {"a_teacher": 2.0, "question_hash": "x"}}}',
            "entries.json: entry 'q' has no a_teacher in \\[0, 1\\]",
        ),
        (
            '{"version": 1, "entries": {"q": {"a_teacher": 0.5}}}',
            "entries.json: entry 'q' has no question_hash",
        ),
    ],
    ids=["not-json", "no-entries", "old-version", "a-teacher-out-of-range", "no-hash"],
)
def test_a_damaged_cache_file_names_the_file(teacher_dir, tmp_path, content, message):
    teacher = teacher_callback(teacher_dir, tmp_path)
    folder = tmp_path / teacher_fingerprint(teacher_dir, teacher.settings())
    folder.mkdir()
    (folder / "entries.json").write_text(content)
    with pytest.raises(TeacherCacheError, match=f"{message}.*delete it to recompute"):
        teacher.attach(stub_module())

"""Skipped samples are counted and logged; a stage with nothing usable fails and never exports;
an export replaces a good model only when the run finished."""

from __future__ import annotations

import hashlib
import shutil
import signal

import lightning as L
import pytest

from marc.data.datamodule import VideoQADataModule
from marc.modules.base import NoSamplesError
from marc.modules.evaluation import VideoQAEvaluation
from marc.modules.retriever_pretraining import RetrieverPretraining
from marc.modules.teacher_finetuning import TeacherFinetuning
from marc.retrieval.encoders import ClipEncoder, QueryEncoder


@pytest.fixture
def broken(short_clips_dataset, tmp_path):
    """A copy of the short-clips dataset whose videos a test may break."""
    return shutil.copytree(short_clips_dataset, tmp_path / "data")


def _break(root, *names):
    for name in names:
        (root / "videos" / name).write_bytes(b"not a video")


def _data(root, **kwargs) -> VideoQADataModule:
    return VideoQADataModule(
        data_root=str(root), max_frames=16, frame_size=56, batch_size=2, eval_batch_size=3,
        on_bad_sample="skip", **kwargs,
    )  # fmt: skip


def _trainer(tmp_path, **kwargs) -> L.Trainer:
    settings = dict(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )
    return L.Trainer(**{**settings, **kwargs})


def _digest(folder) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


@pytest.fixture
def good_export(tiny_vlm_dir, tmp_path):
    """An export folder that already holds a good model, and its files' digests."""
    export = shutil.copytree(tiny_vlm_dir, tmp_path / "export" / "model")
    return export, _digest(export)


def _leftovers(export) -> list[str]:
    return sorted(p.name for p in export.parent.iterdir() if ".tmp" in p.name or ".old" in p.name)


def test_a_fit_whose_samples_were_all_skipped_fails_and_keeps_the_good_model(
    broken, good_export, tmp_path
):
    _break(broken, "video_00000.mp4", "video_00001.mp4")  # every training video
    export, before = good_export
    module = TeacherFinetuning(max_new_tokens=4, export_dir=str(export))
    with pytest.raises(NoSamplesError, match=r"epoch 0 trained on no sample: all 4 samples"):
        _trainer(tmp_path).fit(module, _data(broken))
    assert _digest(export) == before and _leftovers(export) == []


def test_a_validation_that_scored_no_question_fails_the_fit(broken, good_export, tmp_path):
    _break(broken, "video_00002.mp4")  # the validation video
    export, before = good_export
    module = TeacherFinetuning(max_new_tokens=4, export_dir=str(export))
    with pytest.raises(NoSamplesError, match=r"no val question was scored: all 4 were skipped"):
        _trainer(tmp_path, limit_val_batches=2).fit(module, _data(broken))
    assert _digest(export) == before


def test_a_test_run_that_scored_no_question_fails(broken, tiny_vlm_dir, tmp_path):
    _break(broken, "video_00003.mp4")  # the test video
    module = VideoQAEvaluation(init_from=str(tiny_vlm_dir), max_new_tokens=4)
    with pytest.raises(NoSamplesError, match=r"no test question was scored: all 4 were skipped"):
        _trainer(tmp_path).test(module, _data(broken), verbose=False)


def test_results_say_how_many_questions_were_scored_and_skipped(broken, tiny_vlm_dir, tmp_path):
    _break(broken, "video_00000.mp4")  # one of the two videos of train.jsonl, tested here
    with open(broken / "train.jsonl", "a") as rows:
        rows.write('{"problem": "a row without its fields"}\n')
    module = VideoQAEvaluation(init_from=str(tiny_vlm_dir), max_new_tokens=4)
    data = _data(broken, test_file=str(broken / "train.jsonl"))
    (metrics,) = _trainer(tmp_path).test(module, data, verbose=False)
    assert (metrics["test/questions"], metrics["test/skipped"]) == (4, 4)
    assert (metrics["data/skipped_rows"], metrics["data/skipped_samples"]) == (1, 4)
    assert 0 <= metrics["test/acc"] <= 1


def test_a_training_epoch_logs_its_samples_and_skips(broken, tmp_path):
    _break(broken, "video_00000.mp4")
    fit = _trainer(tmp_path, limit_train_batches=4)
    fit.fit(TeacherFinetuning(max_new_tokens=4), _data(broken))
    metrics = fit.callback_metrics
    assert (metrics["train/samples"], metrics["train/skipped"]) == (4, 4)
    assert metrics["data/skipped_samples"] == 4


class Interrupt(L.Callback):
    """Raises ``error`` in the second training batch."""

    def __init__(self, error: BaseException):
        self.error = error

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if batch_idx == 1:
            raise self.error


@pytest.mark.parametrize(
    "error, raised",
    [(KeyboardInterrupt(), SystemExit), (RuntimeError("power cut"), RuntimeError)],
    ids=["ctrl-c", "error"],
)
def test_an_interrupted_or_failed_fit_never_exports(
    short_clips_dataset, good_export, tmp_path, error, raised
):
    export, before = good_export
    module = TeacherFinetuning(max_new_tokens=4, export_dir=str(export))
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(raised):
            _trainer(tmp_path, callbacks=[Interrupt(error)]).fit(module, _data(short_clips_dataset))
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores Ctrl-C after one
    assert _digest(export) == before and _leftovers(export) == []


def test_a_finished_fit_replaces_the_export(short_clips_dataset, good_export, tmp_path):
    export, before = good_export
    module = TeacherFinetuning(max_new_tokens=4, export_dir=str(export))
    _trainer(tmp_path, limit_train_batches=1).fit(module, _data(short_clips_dataset))
    assert _digest(export) != before and _leftovers(export) == []


def test_a_retriever_validation_that_ranked_no_question_fails(broken, tmp_path):
    _break(broken, "video_00002.mp4")
    module = RetrieverPretraining(
        clip_encoder=ClipEncoder(embed_dim=8, image_size=56), query_encoder=QueryEncoder(8)
    )
    with pytest.raises(NoSamplesError, match=r"no val question was scored: all 4 were skipped"):
        _trainer(tmp_path, limit_train_batches=1, limit_val_batches=2).fit(module, _data(broken))

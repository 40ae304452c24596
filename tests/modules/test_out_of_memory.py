"""Out of memory in a step: the error names the setting to lower and its current value."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from marc.data.datamodule import VideoQADataModule
from marc.modules.cgrpo import CGRPODistillation
from marc.modules.evaluation import VideoQAEvaluation
from marc.modules.out_of_memory import is_out_of_memory
from marc.modules.teacher_finetuning import TeacherFinetuning
from marc.rl.rewards import FormatReward

CUDA = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
CPU = RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 2 GB")


def _data(root) -> VideoQADataModule:
    return VideoQADataModule(
        data_root=str(root), max_frames=16, frame_size=56, batch_size=2, eval_batch_size=3
    )


def _trainer(tmp_path) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )


def _raise(error):
    def fail(*args, **kwargs):
        raise error

    return fail


@pytest.mark.parametrize("error", [CUDA, CPU], ids=["cuda", "cpu"])
def test_training_out_of_memory_names_the_batch_size(short_clips_dataset, tmp_path, error):
    module = TeacherFinetuning(max_new_tokens=4)
    module.vlm.completion_logprobs = _raise(error)
    with pytest.raises(
        torch.OutOfMemoryError,
        match=r"out of memory in a train step of 2 questions: lower data.batch_size \(now 2\)",
    ) as info:
        _trainer(tmp_path).fit(module, _data(short_clips_dataset))
    assert info.value.__cause__ is error


def test_evaluation_out_of_memory_names_the_eval_batch_size(
    short_clips_dataset, tiny_vlm_dir, tmp_path
):
    module = VideoQAEvaluation(init_from=str(tiny_vlm_dir), max_new_tokens=4)
    module.configure_model()
    module.vlm.generate = _raise(CUDA)
    with pytest.raises(torch.OutOfMemoryError, match=r"lower data.eval_batch_size \(now 3\)"):
        _trainer(tmp_path).test(module, _data(short_clips_dataset), verbose=False)


def test_cgrpo_out_of_memory_also_names_the_group_size(short_clips_dataset, tiny_vlm_dir, tmp_path):
    module = CGRPODistillation(
        init_from=str(tiny_vlm_dir), rewards=[FormatReward()], num_generations=2, beta=0.0
    )
    module.configure_model()
    module.vlm.generate = _raise(CPU)
    with pytest.raises(
        torch.OutOfMemoryError,
        match=r"lower data.batch_size \(now 2\) or model.num_generations \(now 2\)",
    ):
        _trainer(tmp_path).fit(module, _data(short_clips_dataset))


def test_other_errors_pass_unchanged(short_clips_dataset, tmp_path):
    module = TeacherFinetuning(max_new_tokens=4)
    module.vlm.completion_logprobs = _raise(RuntimeError("shape mismatch"))
    with pytest.raises(RuntimeError, match="^shape mismatch$"):
        _trainer(tmp_path).fit(module, _data(short_clips_dataset))
    assert is_out_of_memory(CUDA) and is_out_of_memory(CPU)
    assert not is_out_of_memory(ValueError("out of memory"))


def test_out_of_memory_in_the_backward_pass_names_the_batch_size(
    short_clips_dataset, tmp_path, monkeypatch
):
    module = TeacherFinetuning(max_new_tokens=4)
    monkeypatch.setattr(L.LightningModule, "backward", _raise(CUDA))
    with pytest.raises(
        torch.OutOfMemoryError,
        match=r"in the backward pass of a train step: lower data.batch_size \(now 2\)",
    ):
        _trainer(tmp_path).fit(module, _data(short_clips_dataset))

"""A NaN or infinite loss skips its step and is counted; several in a row stop the run with
an error naming the step and the last finite loss (SFT, C-GRPO, retriever pretraining)."""

from __future__ import annotations

from types import SimpleNamespace

import lightning as L
import pytest
import torch

from marc.data.datamodule import VideoQADataModule
from marc.modules.nonfinite import NonFiniteLosses
from marc.modules.retriever_pretraining import RetrieverPretraining
from marc.modules.teacher_finetuning import TeacherFinetuning
from marc.retrieval.encoders import ClipEncoder, QueryEncoder


def _data(root, **kwargs) -> VideoQADataModule:
    return VideoQADataModule(
        data_root=str(root), max_frames=16, frame_size=56, batch_size=2, **kwargs
    )


def _trainer(tmp_path, batches: int, **kwargs) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=batches,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
        **kwargs,
    )


def _nan_on_calls(scorer, calls: set[int]):
    """Wrap a VideoVLM's completion_logprobs: its training calls numbered ``calls`` give NaN."""
    seen = []

    def score(*args, **kwargs):
        out = scorer(*args, **kwargs)
        if torch.is_grad_enabled():
            seen.append(len(seen))
            if seen[-1] in calls:
                return out._replace(logprobs=out.logprobs * float("nan"))
        return out

    return score


class Snapshot(L.Callback):
    """Whether the parameters changed during the training batch ``index``."""

    def __init__(self, index: int):
        self.index = index
        self.changed: bool | None = None

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if batch_idx == self.index:
            self.before = [p.detach().clone() for p in module.parameters()]

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if batch_idx == self.index:
            after = list(module.parameters())
            self.changed = any(not torch.equal(a, b) for a, b in zip(self.before, after))


def test_the_counter_skips_then_stops_at_the_limit():
    counter = NonFiniteLosses(limit=2)
    assert counter.record(False, 1.5, step=0) is False
    assert counter.record(True, float("nan"), step=1) is True
    assert counter.record(False, None, step=2) is False  # an empty batch: no loss of its own
    assert counter.last_finite == (1.5, 0) and counter.in_a_row == 0
    assert counter.record(True, float("inf"), step=3, detail="questions ['q']") is True
    with pytest.raises(
        FloatingPointError,
        match=r"at 2 steps in a row, the last at step 4: no loss; the last finite loss was "
        r"1.5 at step 0.*max_nonfinite_steps=2",
    ):
        counter.record(True, None, step=4)
    assert counter.skipped == 3
    with pytest.raises(ValueError, match="max_nonfinite_steps"):
        NonFiniteLosses(limit=0)


def test_sft_skips_a_nan_step_without_updating_and_goes_on(short_clips_dataset, tmp_path):
    module = TeacherFinetuning(max_new_tokens=4)
    module.vlm.completion_logprobs = _nan_on_calls(module.vlm.completion_logprobs, {1})
    snapshot = Snapshot(index=1)
    fit = _trainer(tmp_path, batches=3, callbacks=[snapshot])
    fit.fit(module, _data(short_clips_dataset))
    assert fit.callback_metrics["train/skipped_nonfinite"] == 1
    assert torch.isfinite(fit.callback_metrics["train/loss"])
    assert snapshot.changed is False
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_sft_stops_after_several_nan_steps_in_a_row(short_clips_dataset, tmp_path):
    module = TeacherFinetuning(max_new_tokens=4, max_nonfinite_steps=3)
    module.vlm.completion_logprobs = _nan_on_calls(module.vlm.completion_logprobs, {1, 2, 3})
    with pytest.raises(
        FloatingPointError,
        match=r"3 steps in a row, the last at step 3 \(questions \['video_.*\]\): loss nan; "
        r"the last finite loss was [\d.]+ at step 0",
    ):
        _trainer(tmp_path, batches=5).fit(module, _data(short_clips_dataset))


def test_the_retriever_skips_a_nan_step(short_clips_dataset, tmp_path):
    module = RetrieverPretraining(
        clip_encoder=ClipEncoder(embed_dim=8, image_size=56), query_encoder=QueryEncoder(8)
    )
    real = module.contrastive_loss
    calls = []

    def nan_once(batch):
        calls.append(1)
        losses = real(batch)
        return {**losses, "loss": losses["loss"] * float("nan")} if len(calls) == 1 else losses

    module.contrastive_loss = nan_once
    snapshot = Snapshot(index=0)
    fit = _trainer(tmp_path, batches=2, callbacks=[snapshot])
    fit.fit(module, _data(short_clips_dataset))
    assert fit.callback_metrics["train/skipped_nonfinite"] == 1 and len(calls) == 2
    assert snapshot.changed is False


def test_every_process_skips_when_any_one_has_a_nan_loss():
    # A finite loss here, a NaN on another process: the summed vote says skip.
    module = TeacherFinetuning()
    module.trainer = SimpleNamespace(
        world_size=2,
        global_step=7,
        strategy=SimpleNamespace(reduce=lambda flag, reduce_op: flag + 1),
    )
    module.log = lambda *args, **kwargs: None
    assert module.skip_nonfinite(torch.tensor(0.5)) is True
    assert module.nonfinite.skipped == 1
    assert module.skip_nonfinite(torch.tensor(0.5), empty=True) is True  # an empty batch too


def test_a_batch_of_skipped_samples_drops_the_update_when_alone():
    module = TeacherFinetuning()
    empty = {"batch_size": 0, "num_skipped": 2}
    loss = module.training_step(empty, 0)
    assert loss.item() == 0 and module._drop_update  # no momentum step on zero gradients
    module.trainer = SimpleNamespace(
        world_size=2, global_step=0, strategy=SimpleNamespace(reduce=lambda flag, reduce_op: flag)
    )
    module.log = lambda *args, **kwargs: None
    module._drop_update = False
    module.training_step(empty, 0)
    assert not module._drop_update  # under DDP it applies the others' averaged gradients

"""CompressorWarmup: overfits one batch, checkpoints round-trip, exports a loadable model."""

import lightning as L
import pytest
import torch

from marc.compression import MemoryAwareMerge
from marc.data.datamodule import VideoQADataModule
from marc.data.synthetic import GeneratorConfig
from marc.models.vlm import VideoVLM
from marc.modules.compressor_warmup import CompressorWarmup


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("warmup_data")
    dm = VideoQADataModule(
        data_root=str(root),
        generator=GeneratorConfig(num_videos=4, num_frames=16, frame_size=56),
        max_frames=16,
        frame_size=56,
        batch_size=4,
        cache_frames=True,
    )
    dm.prepare_data()
    dm.setup("fit")
    return dm


def _module(**kwargs):
    return CompressorWarmup(
        compressor=MemoryAwareMerge(),
        budget_frames=1,
        max_new_tokens=8,
        optimizer=lambda params: torch.optim.AdamW(params, lr=3e-3),
        **kwargs,
    )


def test_overfits_one_batch(small_data):
    L.seed_everything(0)
    module = _module()
    batch = next(iter(small_data.train_dataloader()))
    optimizer = module.configure_optimizers()
    losses = []
    for _ in range(40):
        loss = module.training_step(batch, 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0], losses[::8]


def test_fit_logs_accuracy_and_exports(small_data, tmp_path):
    L.seed_everything(0)
    module = _module(export_dir=str(tmp_path / "export"))
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=small_data)
    assert "val/acc" in trainer.callback_metrics
    assert "train/loss" in trainer.callback_metrics
    loaded = VideoVLM.from_pretrained(tmp_path / "export")
    for a, b in zip(loaded.parameters(), module.vlm.parameters()):
        assert torch.equal(a, b)


def test_checkpoint_round_trip_gives_same_outputs(small_data, tmp_path):
    L.seed_everything(0)
    module = _module()
    trainer = L.Trainer(
        max_steps=2,
        limit_val_batches=0,
        logger=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=small_data)
    path = tmp_path / "warm.ckpt"
    trainer.save_checkpoint(path)
    restored = CompressorWarmup.load_from_checkpoint(path, compressor=MemoryAwareMerge())
    batch = next(iter(small_data.val_dataloader()))
    module.eval()
    restored.eval()
    targets = module.sft_targets(batch)
    with torch.no_grad():
        a = module.vlm.sft_loss(module.compress_videos(batch["video"]), batch["prompt"], targets)
        b = restored.vlm.sft_loss(
            restored.compress_videos(batch["video"]), batch["prompt"], targets
        )
    assert torch.allclose(a, b)


def test_nan_loss_skips_the_step_then_stops_with_a_clear_error(small_data):
    module = _module(max_nonfinite_steps=2)
    for p in module.vlm.parameters():
        p.data.fill_(float("nan"))
    batch = next(iter(small_data.train_dataloader()))
    module.training_step(batch, 0)
    assert module._drop_update  # skipped: the optimizer will not update on it
    with pytest.raises(FloatingPointError, match="non-finite loss at 2 steps in a row"):
        module.training_step(batch, 1)


def test_the_3b_architecture_gets_a_tokenizer_with_its_placeholder_ids():
    from marc.models.tiny import qwen2_5_vl_3b_config
    from marc.vocabulary import QWEN2_5_VL_TOKEN_IDS, build_tiny_tokenizer

    # What build_vlm("qwen2.5-vl-3b") pairs, checked without building 3B parameters.
    config = qwen2_5_vl_3b_config()
    tokenizer = build_tiny_tokenizer(QWEN2_5_VL_TOKEN_IDS)
    for token, expected in (
        ("<|video_pad|>", config.video_token_id),
        ("<|vision_start|>", config.vision_start_token_id),
        ("<|vision_end|>", config.vision_end_token_id),
    ):
        assert tokenizer.convert_tokens_to_ids(token) == expected

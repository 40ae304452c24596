"""The 3B configs (configs/qwen2_5_vl_3b/): FSDP for 8 GPUs in bf16, and a DeepSpeed ZeRO-3
variant, checked without GPUs.

Lightning refuses FSDP on a CPU accelerator and DeepSpeed is not installed here, so: each
config is parsed and its strategy checked; the FSDP strategy is built from the config and
its wrap and activation-checkpointing policies are run on a stage module with a tiny model
(the same Qwen2.5-VL classes); each config instantiates with a small-model override; the
frozen C-GRPO reference and the teacher are outside what the policy wraps and what the
optimizer holds; exports of gathered weights and sharded gradient clipping take the paths
a sharded run takes. A real GPU run belongs to the GPU issue.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.strategies import FSDPStrategy
from lightning.pytorch.strategies.fsdp import _setup_activation_checkpointing
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointWrapper
from torch.distributed.fsdp import FullyShardedDataParallel
from torch.distributed.fsdp.wrap import ModuleWrapPolicy
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import (
    Qwen2_5_VLDecoderLayer,
    Qwen2_5_VLVisionBlock,
)

from marc.cli import MARCCLI
from marc.compression import Budget, Identity
from marc.models.vlm import VideoVLM
from marc.modules.sharding import vlm_weights

ROOT = Path(__file__).resolve().parents[1] / "configs/qwen2_5_vl_3b"
STAGES = ["teacher", "warmup", "cgrpo"]
DEEPSPEED = ROOT / "deepspeed_zero3.yaml"
BLOCKS = {Qwen2_5_VLDecoderLayer, Qwen2_5_VLVisionBlock}
SMALL = [
    "--model.architecture=tiny",
    "--model.init_from=null",
    "--model.torch_dtype=null",
    "--trainer.strategy=auto",
    "--trainer.accelerator=cpu",
    "--trainer.devices=1",
]


class ParseOnly(MARCCLI):
    """The CLI up to a validated config: no class is built (no GPU, no DeepSpeed needed)."""

    def instantiate_classes(self) -> None:
        pass


def parsed(stage: str, *extra: str):
    return ParseOnly(args=["--config", str(ROOT / f"{stage}.yaml"), *extra], run=False).config


def fsdp_strategy(stage: str) -> FSDPStrategy:
    strategy = parsed(stage).trainer.strategy
    assert strategy.class_path == "lightning.pytorch.strategies.FSDPStrategy"
    return FSDPStrategy(**vars(strategy.init_args))


@pytest.fixture
def small(tmp_path, monkeypatch):
    """Build a 3B stage config with a tiny model on the CPU (no GPU, no FSDP)."""
    monkeypatch.chdir(tmp_path)

    def build(stage: str) -> MARCCLI:
        return MARCCLI(args=["--config", str(ROOT / f"{stage}.yaml"), *SMALL], run=False)

    return build


@pytest.mark.parametrize("stage", STAGES)
def test_each_config_is_fsdp_on_8_gpus_in_bf16_for_the_3b_architecture(stage):
    config = parsed(stage)
    trainer = config.trainer
    assert (trainer.accelerator, trainer.devices, trainer.precision) == ("gpu", 8, "bf16-mixed")
    init = trainer.strategy.init_args
    assert init.auto_wrap_policy == BLOCKS
    assert init.activation_checkpointing_policy == BLOCKS
    assert init.state_dict_type == "full"
    assert str(init.sharding_strategy.name) == "FULL_SHARD"
    model = config.model.init_args
    assert model.architecture == "qwen2.5-vl-3b" and model.torch_dtype == "float32"
    # Exports and checkpoints mid-epoch, as the small configs.
    steps = [c.init_args.get("every_n_train_steps") for c in trainer.callbacks]
    assert any(steps)


def test_the_weights_are_a_placeholder_the_user_sets():
    assert parsed("teacher").model.init_args.init_from == "/models/Qwen2.5-VL-3B-Instruct"
    override = parsed("teacher", "--model.init_from=/elsewhere")
    assert override.model.init_args.init_from == "/elsewhere"


@pytest.mark.parametrize("stage", ["warmup", "cgrpo"])
def test_the_teacher_and_the_reference_stay_whole_in_bf16(stage):
    config = parsed(stage)
    teacher = [c for c in config.trainer.callbacks if c.class_path.endswith("TeacherCallback")]
    assert teacher[0].init_args.torch_dtype == "bfloat16"
    if stage == "cgrpo":
        assert config.model.init_args.reference_dtype == "bfloat16"


@pytest.mark.parametrize("stage", STAGES)
def test_each_config_instantiates_with_a_small_model(small, stage):
    cli = small(stage)
    assert cli.model.vlm is not None and cli.datamodule is not None
    assert cli.trainer.precision == "bf16-mixed"


@pytest.mark.parametrize("stage", STAGES)
def test_the_fsdp_policies_are_the_decoder_layers_and_vision_blocks(stage):
    strategy = fsdp_strategy(stage)
    wrap = strategy.kwargs["auto_wrap_policy"]
    assert isinstance(wrap, ModuleWrapPolicy) and set(wrap._module_classes) == BLOCKS
    checkpointing = strategy._activation_checkpointing_kwargs["auto_wrap_policy"]
    assert set(checkpointing._module_classes) == BLOCKS
    assert strategy._state_dict_type == "full"


def test_fsdp_wraps_every_block_of_the_policy_and_nothing_frozen(small, tiny_vlm_dir):
    cli = small("cgrpo")
    module = cli.model
    module.setup("fit")  # builds the frozen reference, as a fit does
    teacher = next(c for c in cli.trainer.callbacks if type(c).__name__ == "TeacherCallback")
    teacher.path = Path(tiny_vlm_dir)
    teacher.attach(module)
    wrapped = fsdp_strategy("cgrpo").kwargs["auto_wrap_policy"]._run_policy(module, set(), {})

    blocks = [m for m in module.vlm.modules() if type(m) in BLOCKS]
    layers = module.vlm.model.config.text_config.num_hidden_layers
    vision = module.vlm.model.config.vision_config.depth
    assert len(blocks) == layers + vision
    assert set(wrapped) == set(blocks)
    frozen = [*module.reference.modules(), *teacher.teacher.modules()]
    assert not {id(m) for m in frozen} & {id(m) for m in module.modules()}
    # Nor does the optimizer (sharded with the policy) hold their parameters.
    optimizer = module.configure_optimizers()
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in module.vlm.parameters()}
    assert not optimized & {id(p) for m in frozen for p in m.parameters()}


def sft_loss_and_grads(vlm: VideoVLM, frames: torch.Tensor) -> tuple[float, list[torch.Tensor]]:
    vlm.train().zero_grad()
    video = vlm.compress(frames, Identity(), Budget(frames=1))
    loss = vlm.sft_loss([video], ["what colour is it?"], ["<answer> red </answer>"])
    loss.backward()
    return loss.item(), [p.grad.clone() for p in vlm.parameters() if p.grad is not None]


@pytest.fixture(scope="module")
def frames() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (4, 3, 56, 56), dtype=torch.uint8, generator=generator)


def test_activation_checkpointing_wraps_the_blocks_and_keeps_loss_and_gradients(frames):
    plain = VideoVLM.tiny(seed=0)
    checkpointed = copy.deepcopy(plain)
    policy = fsdp_strategy("teacher")._activation_checkpointing_kwargs
    _setup_activation_checkpointing(checkpointed.model, policy)
    wrappers = [m for m in checkpointed.modules() if isinstance(m, CheckpointWrapper)]
    assert {type(w._checkpoint_wrapped_module) for w in wrappers} == BLOCKS
    assert len(wrappers) == sum(type(m) in BLOCKS for m in plain.modules())
    loss, grads = sft_loss_and_grads(plain, frames)
    loss_ckpt, grads_ckpt = sft_loss_and_grads(checkpointed, frames)
    assert loss_ckpt == pytest.approx(loss, rel=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads, grads_ckpt))


def test_transformers_gradient_checkpointing_keeps_loss_and_gradients(small, frames):
    plain = small("teacher").model
    plain.configure_model()
    checkpointed = copy.deepcopy(plain)
    checkpointed.hparams.gradient_checkpointing = True
    checkpointed.configure_model()
    assert checkpointed.vlm.model.is_gradient_checkpointing
    assert not plain.vlm.model.is_gradient_checkpointing
    loss, grads = sft_loss_and_grads(plain.vlm, frames)
    loss_ckpt, grads_ckpt = sft_loss_and_grads(checkpointed.vlm, frames)
    assert loss_ckpt == pytest.approx(loss, rel=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads, grads_ckpt))


def test_an_export_writes_the_gathered_weights_given_to_it(small, tmp_path):
    module = small("teacher").model
    gathered = vlm_weights(module.state_dict())
    assert set(gathered) == set(module.vlm.model.state_dict())
    # What a sharded run hands over is what is written, not this process's own weights.
    gathered = {key: torch.full_like(value, 0.5) for key, value in gathered.items()}
    module.export(str(tmp_path / "export"), gathered)
    loaded = VideoVLM.from_pretrained(tmp_path / "export")
    assert all(bool((p == 0.5).all()) for p in loaded.model.state_dict().values())


def test_under_fsdp_gradients_are_clipped_by_the_root_over_every_shard(small, monkeypatch):
    module = small("teacher").model
    calls = []
    monkeypatch.setattr(
        FullyShardedDataParallel, "clip_grad_norm_", lambda self, norm: calls.append(norm)
    )
    strategy = FSDPStrategy()
    strategy._model = object.__new__(FullyShardedDataParallel)  # a root, as FSDP leaves it
    module._trainer = SimpleNamespace(strategy=strategy)
    module.configure_gradient_clipping(torch.optim.SGD(module.parameters(), lr=0.1), 1.0, "norm")
    assert calls == [1.0]


def test_the_deepspeed_variant_is_zero3_in_bf16_and_gathers_weights_for_exports():
    for stage in STAGES:
        config = parsed(stage, "--config", str(DEEPSPEED))
        strategy = config.trainer.strategy
        assert strategy.class_path == "lightning.pytorch.strategies.DeepSpeedStrategy"
        zero = strategy.init_args.config["zero_optimization"]
        assert zero["stage"] == 3 and zero["stage3_gather_16bit_weights_on_model_save"]
        assert strategy.init_args.config["bf16"] == {"enabled": True}
        assert strategy.init_args.config["gradient_clipping"] == 1.0
        # Only the strategy and activation recomputation change; the stage stays the same.
        assert config.model.init_args.gradient_checkpointing is True
        assert config.model.class_path == parsed(stage).model.class_path
        assert config.trainer.devices == 8


def test_the_deepspeed_strategy_builds_or_names_the_missing_package():
    from lightning.pytorch.strategies import DeepSpeedStrategy

    init = parsed("teacher", "--config", str(DEEPSPEED)).trainer.strategy.init_args
    if importlib.util.find_spec("deepspeed") is None:
        # Without the package the config still parses; building the strategy says what to install.
        with pytest.raises(MisconfigurationException, match="pip install -U deepspeed"):
            DeepSpeedStrategy(**vars(init))
    else:
        assert DeepSpeedStrategy(**vars(init)).zero_stage_3

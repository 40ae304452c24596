"""CGRPODistillation: updates, frozen reference outside optimizer and checkpoint, logging, NaNs."""

from __future__ import annotations

from types import SimpleNamespace

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from callbacks.samples import SampleCompletionsCallback
from callbacks.teacher import TeacherCallback
from marc.compression import MemoryAwareMerge
from marc.data.datamodule import VideoQADataModule
from marc.models.vlm import VideoVLM
from marc.modules.cgrpo import CGRPODistillation
from marc.rl.rewards import Reward, RewardContext

LOGGED = [
    "train/loss",
    "train/reward",
    "train/reward_accuracy",
    "train/reward_format",
    "train/reward_retention",
    "train/eta",
    "train/a_teacher",
    "train/a_student",
    "train/kl",
    "train/clip_fraction",
    "train/zero_advantage_fraction",
    "train/completion_length",
    "train/visual_tokens",
    "train/kept_fraction",
]


class TextLengthReward(Reward):
    """Test reward that differs inside a group, so advantages are not all zero."""

    default_name = "text_length"

    def score(self, completions: list[str], answers: list[str], context: RewardContext):
        return [float(len(text) % 5) for text in completions]


class NaNReward(Reward):
    default_name = "nan"

    def score(self, completions: list[str], answers: list[str], context: RewardContext):
        return [float("nan")] * len(completions)


@pytest.fixture(scope="module")
def export_dir(tiny_vlm_dir):
    """A tiny VLM saved once, used as both the teacher and the warm student."""
    return tiny_vlm_dir


@pytest.fixture(scope="module")
def data_root(short_clips_dataset):
    return short_clips_dataset


def datamodule(data_root) -> VideoQADataModule:
    return VideoQADataModule(data_root=str(data_root), max_frames=16, frame_size=56, batch_size=2)


def cgrpo(model_dir, **kwargs) -> CGRPODistillation:
    settings = dict(
        init_from=str(model_dir),
        use_retrieval=False,
        num_generations=4,
        max_new_tokens=8,
    )
    return CGRPODistillation(**{**settings, **kwargs})


def trainer(tmp_path, **kwargs) -> L.Trainer:
    settings = dict(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=1,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )
    return L.Trainer(**{**settings, **kwargs})


def sgd(params) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.5)


def halving(optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)


@pytest.fixture(scope="module")
def fitted(export_dir, data_root, tmp_path_factory):
    """One batch, two updates (num_iterations=2), SGD and a per-update scheduler."""
    L.seed_everything(0)
    module = cgrpo(
        export_dir,
        rewards=[TextLengthReward()],
        num_iterations=2,
        optimizer=sgd,
        lr_scheduler=halving,
    )
    fit = trainer(tmp_path_factory.mktemp("fit"), max_steps=2)
    fit.fit(module, datamodule(data_root))
    checkpoint = fit.default_root_dir + "/step2.ckpt"
    fit.save_checkpoint(checkpoint)
    return module, fit, checkpoint


def initial_weights(export_dir) -> dict[str, torch.Tensor]:
    return VideoVLM.from_pretrained(export_dir).state_dict()


def test_update_changes_the_policy_and_not_the_reference(fitted, export_dir):
    module, fit, _ = fitted
    initial = initial_weights(export_dir)
    assert fit.callback_metrics["train/zero_advantage_fraction"] < 1
    policy = module.vlm.state_dict()
    assert any(not torch.equal(policy[name], initial[name]) for name in initial)
    reference = module.reference.state_dict()
    assert all(torch.equal(reference[name], initial[name]) for name in initial)
    assert not module.reference.training
    assert not any(p.requires_grad for p in module.reference.parameters())


def test_one_optimizer_and_scheduler_step_per_iteration(fitted):
    module, fit, _ = fitted
    assert fit.global_step == 2  # one batch, num_iterations=2
    assert fit.lr_scheduler_configs[0].scheduler.last_epoch == 2


def test_reference_is_not_in_the_optimizer(fitted):
    module, fit, _ = fitted
    optimized = {id(p) for group in fit.optimizers[0].param_groups for p in group["params"]}
    assert optimized == {id(p) for p in module.vlm.parameters()}
    assert not any(id(p) in optimized for p in module.reference.parameters())
    assert not any(p is q for p in module.parameters() for q in module.reference.parameters())


def test_reference_is_not_in_the_checkpoint(fitted):
    module, _, checkpoint = fitted
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    assert not any("reference" in key for key in state)
    assert set(state) == set(module.state_dict())
    policy_keys = {f"vlm.{key}" for key in module.vlm.state_dict()}
    assert policy_keys <= set(state)


def test_load_from_checkpoint_restores_the_policy_and_rebuilds_the_reference(fitted, export_dir):
    module, _, checkpoint = fitted
    loaded = CGRPODistillation.load_from_checkpoint(checkpoint, rewards=[TextLengthReward()])
    trained = module.vlm.state_dict()
    assert all(torch.equal(p, trained[k]) for k, p in loaded.vlm.state_dict().items())
    initial = initial_weights(export_dir)
    reference = loaded.reference.state_dict()
    assert all(torch.equal(reference[name], initial[name]) for name in initial)


def test_resume_rebuilds_the_reference_from_init_from(fitted, export_dir, data_root, tmp_path):
    _, _, checkpoint = fitted
    module = cgrpo(
        export_dir,
        rewards=[TextLengthReward()],
        num_iterations=2,
        optimizer=sgd,
        lr_scheduler=halving,
    )
    fit = trainer(tmp_path, max_epochs=2, max_steps=4)
    fit.fit(module, datamodule(data_root), ckpt_path=checkpoint)
    assert fit.global_step == 4
    initial = initial_weights(export_dir)
    reference = module.reference.state_dict()
    assert all(torch.equal(reference[name], initial[name]) for name in initial)


def test_beta_zero_has_no_reference(export_dir, data_root, tmp_path):
    module = cgrpo(export_dir, rewards=[TextLengthReward()], beta=0.0, num_generations=2)
    fit = trainer(tmp_path)
    fit.fit(module, datamodule(data_root))
    assert module.reference is None and module._reference == []
    assert fit.callback_metrics["train/kl"] == 0


def test_end_to_end_fit_with_teacher_logs_everything(export_dir, data_root, tmp_path):
    L.seed_everything(0)
    module = cgrpo(
        export_dir,
        compressor=MemoryAwareMerge(window=4, local_ratio=0.25),
        num_iterations=2,
        export_dir=str(tmp_path / "student"),
    )
    teacher = TeacherCallback(
        str(export_dir), num_samples=2, max_new_tokens=8, cache_dir=str(tmp_path / "cache")
    )
    logger = TensorBoardLogger(str(tmp_path / "logs"), name="cgrpo")
    fit = trainer(
        tmp_path,
        limit_train_batches=2,
        limit_val_batches=1,
        log_every_n_steps=1,
        logger=logger,
        callbacks=[teacher, SampleCompletionsCallback(every_n_steps=1, max_samples=1)],
    )
    fit.fit(module, datamodule(data_root))

    assert fit.global_step == 4
    missing = [name for name in LOGGED if name not in fit.callback_metrics]
    assert not missing, f"not logged: {missing}"
    assert fit.callback_metrics["train/visual_tokens"] == 4  # one temporal group of 2x2
    assert teacher.misses == 4 and "val/acc" in fit.callback_metrics
    summary = module.last_rollout[0]
    assert len(summary["completions"]) == 4 and summary["a_teacher"] is not None
    assert VideoVLM.from_pretrained(tmp_path / "student").vocab_size == module.vlm.vocab_size

    events = EventAccumulator(logger.log_dir)
    events.Reload()
    assert "train/reward" in events.Tags()["scalars"]
    assert any(tag.startswith("samples") for tag in events.Tags()["tensors"])


def test_missing_teacher_is_a_clear_error(export_dir, data_root, tmp_path):
    with pytest.raises(RuntimeError, match="TeacherCallback"):
        trainer(tmp_path).fit(cgrpo(export_dir), datamodule(data_root))


def test_non_finite_reward_names_step_and_questions(export_dir, data_root, tmp_path):
    module = cgrpo(export_dir, rewards=[NaNReward()], num_generations=2, max_nonfinite_steps=1)
    with pytest.raises(FloatingPointError, match=r"at step 0 \(questions \['video_.*rewards"):
        trainer(tmp_path).fit(module, datamodule(data_root))


class NaNOnceReward(Reward):
    default_name = "nan_once"

    def __init__(self):
        super().__init__()
        self.calls = 0

    def score(self, completions: list[str], answers: list[str], context: RewardContext):
        self.calls += 1
        return [float("nan") if self.calls == 1 else float(len(t) % 5) for t in completions]


def test_a_non_finite_reward_skips_that_update_and_training_goes_on(
    export_dir, data_root, tmp_path
):
    module = cgrpo(export_dir, rewards=[NaNOnceReward()], num_generations=2, num_iterations=2)
    fit = trainer(tmp_path, limit_train_batches=2)
    fit.fit(module, datamodule(data_root))
    assert fit.callback_metrics["train/skipped_nonfinite"] == 1
    assert fit.global_step == 2  # the second batch's two updates; the first batch made none
    assert torch.isfinite(fit.callback_metrics["train/loss"])


def test_non_finite_loss_names_step_and_questions(data_root, tmp_path):
    module = CGRPODistillation(
        rewards=[TextLengthReward()],
        beta=0.0,
        num_generations=2,
        max_new_tokens=4,
        max_nonfinite_steps=1,
    )
    score = module.vlm.completion_logprobs

    def nan_when_training(*args, **kwargs):
        out = score(*args, **kwargs)
        if torch.is_grad_enabled():
            return out._replace(logprobs=out.logprobs * float("nan"))
        return out

    module.vlm.completion_logprobs = nan_when_training
    with pytest.raises(FloatingPointError, match=r"at step 0 \(questions .*logprobs"):
        trainer(tmp_path).fit(module, datamodule(data_root))


@pytest.mark.parametrize("world_size, expected", [(1, []), (2, [0.0, 0.0, 0.0])])
def test_empty_batch_joins_the_updates_only_under_ddp(export_dir, world_size, expected):
    module = cgrpo(export_dir, rewards=[TextLengthReward()], num_iterations=3)
    module.configure_model()
    updates = []
    module._update = lambda loss: updates.append(loss.item())
    votes = []

    def reduce(flag, reduce_op):  # a one-process stand-in for the all-reduce of the vote
        votes.append(float(flag))
        return flag

    module.trainer = SimpleNamespace(
        world_size=world_size, global_step=0, strategy=SimpleNamespace(reduce=reduce)
    )
    module.log = lambda *args, **kwargs: None
    assert module.training_step({"batch_size": 0, "num_skipped": 2}, 0) is None
    assert updates == expected
    # Each update was voted on first (an empty batch votes "finite"), as the others vote.
    assert votes == [0.0] * len(expected)


def test_bad_arguments(export_dir):
    with pytest.raises(ValueError, match="num_iterations"):
        cgrpo(export_dir, num_iterations=0)
    with pytest.raises(ValueError, match="loss_type"):
        cgrpo(export_dir, loss_type="sum")


class RecordingTeacher:
    """a_teacher 1.0 for every question it is asked about; remembers which ones."""

    def __init__(self):
        self.asked: list[str] = []

    def accuracy(self, batch):
        self.asked += batch["data_type"]
        return torch.ones(batch["batch_size"])


def test_image_rows_train_without_a_teacher_or_retention_reward(
    export_dir, video_r1_dataset, tmp_path
):
    L.seed_everything(0)
    module = cgrpo(export_dir, num_generations=2)
    module.teacher_source = teacher = RecordingTeacher()
    annotations = str(video_r1_dataset / "Video-R1-test.json")
    data = VideoQADataModule(
        data_root=str(video_r1_dataset), train_file=annotations, frame_size=56, max_frames=8,
        batch_size=6,
    )  # fmt: skip
    fit = trainer(tmp_path, max_steps=1)
    fit.fit(module, data)
    assert teacher.asked == ["video"] * 4  # the two image rows were never sent to it
    assert float(fit.callback_metrics["train/image_rows"]) == 2.0
    rows = {row["problem_id"]: row for row in module.last_rollout}
    for problem_id in ("3", "6"):  # the image rows
        assert rows[problem_id]["a_teacher"] is None
        assert all(c["components"]["retention"] == 0.0 for c in rows[problem_id]["completions"])
    assert rows["1"]["a_teacher"] == 1.0

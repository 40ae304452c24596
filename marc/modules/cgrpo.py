"""CGRPODistillation: C-GRPO, the RL stage that distils the full-video teacher into the student.

One training batch of B questions (docs/DESIGN.md, "C-GRPO"; loss in ``marc.rl.grpo``):

1. compress each question's video to the budget (no gradient) and sample G completions per
   question from the policy (``marc.rl.rollout.sample_groups``);
2. score them: each completion's correctness and its Video-R1 accuracy (graded for OCR,
   free-form and regression questions) are computed once and shared by the rewards,
   ``R_i = r_acc + r_format + 1[correct_i] * alpha * max(0, eta - tau)`` with
   ``eta = a_student / a_teacher``; a_teacher comes from the ``TeacherCallback``, asked
   about video rows only: image rows get no retention reward (the paper's "image data does
   not participate in the compression reward"), counted in ``train/image_rows``;
3. normalise the rewards inside each group into advantages; compute the frozen reference
   policy's log-probs once;
4. make ``num_iterations`` optimisation passes on that rollout (manual optimisation): each
   re-encodes the videos with gradients, scores the sampled ids under the current policy
   and steps the optimizer (and the scheduler) on the clipped GRPO loss plus beta * KL.
   The first pass's ratio is 1; later ones divide by the sampling-time ("old") log-probs.

The reference policy is a frozen copy of the initial policy: built in ``setup`` from the
same recipe (``init_from`` loaded again, or a copy of the random-init policy), before
``configure_model`` and before any checkpoint is restored into the policy. ``setup`` runs
outside the strategy's sharded context, so under FSDP or DeepSpeed ZeRO-3 the reference
is a whole, ordinary module (in ``reference_dtype``, e.g. bf16 while the policy keeps fp32
master weights). It is held in a plain list, not as a submodule, so it is in neither
``parameters()`` (hence not in the optimizer, nor wrapped or sharded by DDP, FSDP or
DeepSpeed) nor ``state_dict()`` (hence not in checkpoints); on resume it is rebuilt the
same way. Outside a trainer (``load_from_checkpoint``) ``configure_model`` copies the
policy instead. With ``beta == 0`` it is never built. Every process works on its own
batches only.

Because the loop steps the optimizer itself, ``trainer.global_step`` counts updates
(``num_iterations`` per batch) and ``Trainer(gradient_clip_val=...)`` must stay unset: use
``max_grad_norm``. An update whose loss (or rewards, or log-probs) is not finite is skipped
with the rest of its batch's updates and counted (``train/skipped_nonfinite``); several in a
row stop the run (``max_nonfinite_steps``, see ``StageModule``).
"""

from __future__ import annotations

import copy
import math
import zlib
from collections import defaultdict
from dataclasses import dataclass

import torch

from marc.compression import MemoryAwareMerge, TokenCompressor
from marc.data.collate import select_rows
from marc.models.vlm import VideoVLM
from marc.modules.out_of_memory import names_memory_settings
from marc.modules.vlm_stage import VideoVLMStage
from marc.rl.answers import is_correct
from marc.rl.grpo import LossType, group_advantages, grpo_loss, zero_advantage_fraction
from marc.rl.rewards import (
    DEFAULT_TOLERANCE,
    AccuracyReward,
    CombinedReward,
    FormatReward,
    RetentionReward,
    Reward,
    RewardContext,
    retention_ratio,
)
from marc.rl.rollout import Rollout, repeat_per_generation, sample_groups
from marc.rl.video_r1 import video_r1_score


@dataclass
class _Sampled:
    """One batch's rollout and everything the optimisation passes reuse."""

    frames: list[torch.Tensor]
    segments: list
    prompts: list[str]
    videos: list
    rollout: Rollout
    a_teacher: list[float | None] | None  # None for an image row
    correct: list[list[bool]]
    scores: list[list[float]]  # each completion's Video-R1 accuracy
    rewards: torch.Tensor
    components: dict[str, torch.Tensor]
    advantages: torch.Tensor
    ref_logprobs: torch.Tensor | None


def default_rewards() -> list[Reward]:
    """C-GRPO's reward: accuracy + format + retention (alpha 1, tau 0.6)."""
    return [AccuracyReward(), FormatReward(), RetentionReward(alpha=1.0, tau=0.6)]


class CGRPODistillation(VideoVLMStage):
    """C-GRPO on a compressed-video student; see the module docstring.

    Args:
        rewards: reward functions summed with their weights (default: ``default_rewards()``).
        num_generations: completions sampled per question (G).
        num_iterations: optimisation passes per sampled batch (mu >= 1).
        beta: weight of the k3 KL to the frozen reference (0: no reference at all).
        epsilon_low / epsilon_high: clipping range of the probability ratio.
        loss_type: ``"grpo"`` (per-sequence mean) or ``"dapo"`` (per-token mean).
        scale_rewards: divide advantages by the group's reward std.
        temperature / top_p: sampling settings of the rollouts.
        max_grad_norm: clip the gradient norm of every update to this (None: no clipping).
        reference_dtype: dtype of the frozen reference (e.g. ``"bfloat16"``); None follows
            the policy's parameters.
        compressor / budget_frames / budget_tokens / use_retrieval / init_from /
            max_new_tokens (rollouts and evaluation) / ...: see ``VideoVLMStage``; the
            compressor defaults to ``MemoryAwareMerge()``.
    """

    def __init__(
        self,
        rewards: list[Reward] | None = None,
        num_generations: int = 8,
        num_iterations: int = 1,
        beta: float = 0.04,
        epsilon_low: float = 0.2,
        epsilon_high: float = 0.2,
        loss_type: LossType = "grpo",
        scale_rewards: bool = True,
        temperature: float = 1.0,
        top_p: float = 0.95,
        max_grad_norm: float | None = 1.0,
        reference_dtype: str | None = None,
        compressor: TokenCompressor | None = None,
        **kwargs,
    ):
        if num_generations < 1:
            raise ValueError(f"num_generations must be at least 1, got {num_generations}")
        if num_iterations < 1:
            raise ValueError(f"num_iterations must be at least 1, got {num_iterations}")
        if loss_type not in ("grpo", "dapo"):
            raise ValueError(f"loss_type must be 'grpo' or 'dapo', got {loss_type!r}")
        if not (math.isfinite(beta) and beta >= 0):
            raise ValueError(f"beta must be a finite number >= 0, got {beta}")
        super().__init__(
            compressor=compressor if compressor is not None else MemoryAwareMerge(), **kwargs
        )
        self.save_hyperparameters(ignore=["rewards", "compressor", "optimizer", "lr_scheduler"])
        self.automatic_optimization = False
        self.reward_fn = CombinedReward(rewards if rewards is not None else default_rewards())
        self.teacher_source = None  # set by TeacherCallback.setup
        # A plain list, so nn.Module registers neither the reference nor its parameters.
        self._reference: list[VideoVLM] = []
        self.last_rollout: list[dict] = []  # read by SampleCompletionsCallback

    # -------------------------------------------------------------------------- policies
    def setup(self, stage: str) -> None:
        """Build the frozen reference (fit only), outside any sharded-model context."""
        if stage == "fit" and self.hparams.beta != 0 and not self._reference:
            # The policy of a random init exists already (built in __init__); one from
            # init_from is loaded in configure_model, so load a copy of its own here.
            initial = copy.deepcopy(self.vlm) if self.vlm is not None else self._build_vlm()
            self._freeze_as_reference(initial)

    def configure_model(self) -> None:
        """Load the policy (``init_from``); without a trainer, copy it as the reference."""
        super().configure_model()
        fitting = self._trainer is None or self.trainer.state.fn == "fit"
        if self.hparams.beta != 0 and not self._reference and fitting:
            self._freeze_as_reference(copy.deepcopy(self.vlm))

    def _freeze_as_reference(self, vlm: VideoVLM) -> None:
        vlm.eval().requires_grad_(False)
        self._reference.append(vlm)

    @property
    def reference(self) -> VideoVLM | None:
        """The frozen reference policy on the policy's device (None when beta = 0)."""
        if not self._reference:
            return None
        reference = self._reference[0]
        dtype = self.hparams.get("reference_dtype")
        dtype = getattr(torch, dtype) if dtype else self.vlm.dtype
        # Lightning moves and casts registered modules only; follow the policy by hand.
        if reference.device != self.vlm.device or reference.dtype != dtype:
            reference.to(device=self.vlm.device, dtype=dtype)
        return reference

    def on_fit_start(self) -> None:
        needs_teacher = any(isinstance(r, RetentionReward) for r in self.reward_fn.rewards)
        if needs_teacher and self.teacher_source is None:
            raise RuntimeError(
                "the retention reward needs a_teacher: add callbacks.teacher.TeacherCallback "
                "to trainer.callbacks"
            )

    # ------------------------------------------------------------------------- training
    @names_memory_settings("train")
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        """Sample, score, then ``num_iterations`` updates on one batch; returns the mean loss.

        A NaN or infinite loss (or reward, or log-prob) skips the update and the rest of
        the batch's updates (``StageModule.skip_nonfinite``, on every process at once).
        """
        hp = self.hparams
        if not self.has_samples(batch):
            # Under DDP this rank still joins the other ranks' votes and updates.
            if self.trainer.world_size > 1:
                for _ in range(hp.num_iterations):
                    loss = self.zero_loss()
                    if self.skip_nonfinite(loss, empty=True):
                        break
                    self._update(loss)
            return None
        detail = f"questions {batch['problem_id']}"
        try:
            sampled = self._sample_and_score(batch)
        except FloatingPointError as error:  # non-finite rewards: no loss for this batch
            sampled, detail = None, f"{detail}: {error}"
        stats = defaultdict(list)
        for _ in range(hp.num_iterations):
            out = None
            if sampled is not None:
                try:
                    out = self._policy_loss(sampled)
                except FloatingPointError as error:  # non-finite log-probs or loss
                    detail = f"questions {batch['problem_id']}: {error}"
            if self.skip_nonfinite(None if out is None else out.loss, detail):
                return None
            self._update(out.loss)
            for name, value in out.metrics().items():
                stats[name].append(value)

        metrics = {f"train/{name}": torch.stack(values).mean() for name, values in stats.items()}
        s = sampled
        a_student = [sum(group) / len(group) for group in s.scores]
        self._log_step(
            batch, s.rollout, s.videos, s.rewards, s.components, a_student, s.a_teacher, metrics
        )
        self._keep_summary(batch, s.rollout, s.rewards, s.components, s.advantages, s.a_teacher)
        return metrics["train/loss"]

    def _sample_and_score(self, batch: dict) -> _Sampled:
        """The batch's rollout, its rewards and advantages, and the reference's log-probs."""
        hp = self.hparams
        frames, segments = self.input_videos(batch), self.input_segments(batch)
        prompts = repeat_per_generation(batch["prompt"], hp.num_generations)
        with torch.no_grad():
            videos = self.compress_videos(frames, segments)
        rollout = sample_groups(
            self.vlm,
            videos,
            batch["prompt"],
            num_generations=hp.num_generations,
            max_new_tokens=hp.max_new_tokens,
            temperature=hp.temperature,
            top_p=hp.top_p,
            seed=zlib.crc32(f"{hp.seed}:{self.global_rank}:{self.global_step}".encode()),
            compute_old_logprobs=hp.num_iterations > 1,
        )
        a_teacher = self._teacher_accuracy(batch)
        correct = self._correctness(batch, rollout)
        scores = self._scores(batch, rollout)
        rewards, components = self._score(batch, rollout, correct, scores, a_teacher)
        advantages = group_advantages(rewards, scale_std=hp.scale_rewards).flatten()
        advantages = advantages.to(rollout.mask.device)  # rewards are computed on the CPU
        ref_logprobs = self._reference_logprobs(frames, segments, prompts, rollout)
        return _Sampled(
            frames, segments, prompts, videos, rollout, a_teacher, correct, scores, rewards,
            components, advantages, ref_logprobs,
        )  # fmt: skip

    def _policy_loss(self, sampled: _Sampled):
        """GRPO's loss of the sampled ids under the current policy (one optimisation pass)."""
        hp = self.hparams
        # Re-encoded with gradients: the vision tower is part of the policy.
        videos = self.compress_videos(sampled.frames, sampled.segments)
        policy = self.vlm.completion_logprobs(
            repeat_per_generation(videos, hp.num_generations),
            sampled.prompts,
            sampled.rollout.sequences,
            add_eos=False,
        )
        return grpo_loss(
            policy.logprobs,
            sampled.rollout.old_logprobs,
            sampled.ref_logprobs,
            sampled.advantages,
            sampled.rollout.mask,
            beta=hp.beta,
            epsilon_low=hp.epsilon_low,
            epsilon_high=hp.epsilon_high,
            loss_type=hp.loss_type,
        )

    def memory_settings(self, split: str) -> list[tuple[str, object]]:
        """A rollout holds batch_size x num_generations completions (and the teacher's samples)."""
        settings = super().memory_settings(split)
        if split == "train":
            settings.append(("model.num_generations", self.hparams.num_generations))
            if self.teacher_source is not None:
                samples = getattr(self.teacher_source, "num_samples", "?")
                settings.append(("the TeacherCallback's num_samples", samples))
        return settings

    def _update(self, loss: torch.Tensor) -> None:
        """One optimizer update: backward, clip, step, and the scheduler's step."""
        optimizer = self.optimizers()
        optimizer.zero_grad()
        self.manual_backward(loss)
        if self.hparams.max_grad_norm:
            self.clip_grad_norm(optimizer, self.hparams.max_grad_norm)
        optimizer.step()
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()

    def _teacher_accuracy(self, batch: dict) -> list[float | None] | None:
        """a_teacher per question from the TeacherCallback (None without one), for video
        rows only: an image row's entry is None (it gets no retention reward)."""
        if self.teacher_source is None:
            return None
        types = batch.get("data_type") or ["video"] * batch["batch_size"]
        videos = [i for i, kind in enumerate(types) if kind != "image"]
        values: list[float | None] = [None] * batch["batch_size"]
        if videos:
            accuracy = self.teacher_source.accuracy(select_rows(batch, videos)).tolist()
            for i, value in zip(videos, accuracy):
                values[i] = float(value)
        return values

    def _scores(self, batch: dict, rollout: Rollout) -> list[list[float]]:
        """Video-R1's accuracy reward of each completion, per question: scored once."""
        return [
            [
                video_r1_score(
                    text, batch["solution"][i], batch["problem_type"][i], batch["options"][i]
                )
                for text in rollout.group_texts(i)
            ]
            for i in range(rollout.num_prompts)
        ]

    def _correctness(self, batch: dict, rollout: Rollout) -> list[list[bool]]:
        """Whether each completion is correct, per question: the one scoring of the step."""
        return [
            [
                is_correct(
                    text,
                    batch["solution"][i],
                    batch["problem_type"][i],
                    DEFAULT_TOLERANCE,
                    batch["options"][i],
                )
                for text in rollout.group_texts(i)
            ]
            for i in range(rollout.num_prompts)
        ]

    def _score(
        self,
        batch: dict,
        rollout: Rollout,
        correct: list[list[bool]],
        scores: list[list[float]],
        a_teacher: list[float | None] | None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Rewards ``[B, G]`` and each weighted component ``[B, G]``."""
        totals, components = [], defaultdict(list)
        types = batch.get("data_type") or ["video"] * rollout.num_prompts
        for i in range(rollout.num_prompts):
            context = RewardContext(
                problem_type=batch["problem_type"][i],
                a_teacher=None if a_teacher is None else a_teacher[i],
                solution=batch["solution"][i],
                options=batch["options"][i],
                correct=correct[i],
                tolerance=DEFAULT_TOLERANCE,
                scores=scores[i],
                data_type=types[i],
            )
            texts = rollout.group_texts(i)
            total, parts = self.reward_fn(texts, [batch["solution"][i]] * len(texts), context)
            totals.append(total)
            for name, values in parts.items():
                components[name].append(values)
        rewards = torch.stack(totals)
        return rewards, {name: torch.stack(values) for name, values in components.items()}

    @torch.no_grad()
    def _reference_logprobs(
        self,
        frames: list[torch.Tensor],
        segments: list[list[tuple[int, int]] | None],
        prompts: list[str],
        rollout: Rollout,
    ) -> torch.Tensor | None:
        """The frozen reference's log-probs of the sampled ids, on its own visual tokens."""
        reference = self.reference
        if reference is None:
            return None
        videos = [
            reference.compress(f, self.compressor, self.budget, s) for f, s in zip(frames, segments)
        ]
        return reference.completion_logprobs(
            repeat_per_generation(videos, self.hparams.num_generations),
            prompts,
            rollout.sequences,
            add_eos=False,
        ).logprobs

    # -------------------------------------------------------------------- observability
    def _log_step(
        self,
        batch: dict,
        rollout: Rollout,
        videos: list,
        rewards: torch.Tensor,
        components: dict[str, torch.Tensor],
        a_student: list[float],
        a_teacher: list[float] | None,
        metrics: dict[str, torch.Tensor],
    ) -> None:
        size = batch["batch_size"]
        values = dict(metrics)
        values["train/reward"] = rewards.mean()
        values["train/reward_std"] = rewards.std(dim=1, unbiased=False).mean()
        for name, component in components.items():
            values[f"train/reward_{name}"] = component.mean()
        values["train/a_student"] = sum(a_student) / size
        types = batch.get("data_type") or ["video"] * size
        # Image rows train like the others but get no retention reward (no a_teacher).
        values["train/image_rows"] = float(sum(kind == "image" for kind in types))
        pairs = [(s, t) for s, t in zip(a_student, a_teacher or []) if t is not None]
        if pairs:
            values["train/a_teacher"] = sum(t for _, t in pairs) / len(pairs)
            eta = [retention_ratio(s, t) for s, t in pairs]
            values["train/eta"] = sum(eta) / len(pairs)
        values["train/zero_advantage_fraction"] = zero_advantage_fraction(rewards)
        values["train/completion_length"] = rollout.lengths.float().mean()
        values = {name: torch.as_tensor(v, dtype=torch.float32) for name, v in values.items()}
        self.log("train/loss", values.pop("train/loss"), prog_bar=True, batch_size=size)
        self.log_dict(values, batch_size=size)
        self.log_visual_tokens("train", videos, batch["video"])

    def _keep_summary(
        self,
        batch: dict,
        rollout: Rollout,
        rewards: torch.Tensor,
        components: dict[str, torch.Tensor],
        advantages: torch.Tensor,
        a_teacher: list[float] | None,
    ) -> None:
        """Store the last rollout, per question, for ``SampleCompletionsCallback``."""
        group = rollout.num_generations
        summary = []
        for i in range(rollout.num_prompts):
            completions = [
                {
                    "text": text,
                    "reward": float(rewards[i, j]),
                    "advantage": float(advantages[i * group + j]),
                    "components": {name: float(c[i, j]) for name, c in components.items()},
                }
                for j, text in enumerate(rollout.group_texts(i))
            ]
            summary.append(
                {
                    "step": self.global_step,
                    "problem_id": batch["problem_id"][i],
                    "question": batch["prompt"][i],
                    "solution": batch["solution"][i],
                    "a_teacher": None if a_teacher is None else a_teacher[i],
                    "completions": completions,
                }
            )
        self.last_rollout = summary

"""VideoVLMStage: what every VLM stage shares (model building, compression, evaluation, export).

Subclasses (``TeacherFinetuning`` and ``CompressorWarmup`` through ``SupervisedFinetuning``,
``CGRPODistillation``, ``VideoQAEvaluation``) add their training step. The VLM is built in
``__init__`` from an architecture name, or loaded from a saved folder (``init_from``) in
``configure_model`` so that instantiating a config never needs the file to exist yet
(prerequisites are built first, see ``marc.prerequisites``). The frame size is the data
module's (``data.frame_size``): a stage has no setting of its own for it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.trainer.states import TrainerStatus
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn

from marc.compression import Budget, CompressedVideo, Identity, TokenCompressor
from marc.data.prompts import chosen_option_text, reference_completion
from marc.io import replace_dir, staging_dir
from marc.models.tiny import qwen2_5_vl_3b_config
from marc.models.vlm import VideoVLM
from marc.modules.base import StageModule
from marc.modules.metrics import AccuracyByKind
from marc.modules.out_of_memory import names_memory_settings
from marc.modules.sharding import full_vlm_state_dict
from marc.rl.answers import is_correct
from marc.vocabulary import QWEN2_5_VL_TOKEN_IDS, build_tiny_tokenizer

log = logging.getLogger(__name__)

ARCHITECTURES = ("tiny", "qwen2.5-vl-3b")
ANSWER_FORMS = ("letter", "option_text")
REASONING_FORMS = ("event", "object")


def check_answer_with(answer_with: str) -> str:
    """``answer_with`` itself when it names an answer form, else a ValueError naming it."""
    if answer_with not in ANSWER_FORMS:
        raise ValueError(f"answer_with must be one of {ANSWER_FORMS}, got {answer_with!r}")
    return answer_with


def build_vlm(
    architecture: str = "tiny",
    init_from: str | None = None,
    model_overrides: dict | None = None,
    torch_dtype: str | None = None,
    seed: int = 0,
) -> VideoVLM:
    """A VideoVLM from a saved folder, or random-init from an architecture name."""
    dtype = getattr(torch, torch_dtype) if torch_dtype else None
    if init_from is not None:
        path = Path(init_from)
        if not path.exists():
            raise FileNotFoundError(f"init_from names a missing model folder: {path}")
        return VideoVLM.from_pretrained(path, torch_dtype=dtype)
    if architecture == "tiny":
        vlm = VideoVLM.tiny(seed=seed, **(model_overrides or {}))
    elif architecture == "qwen2.5-vl-3b":
        # Random weights with the real architecture (efficiency work); real weights come
        # through init_from. The word tokenizer must carry Qwen's control-token ids, or the
        # prompt's video placeholders would not be the ids the model fills.
        tokenizer = build_tiny_tokenizer(QWEN2_5_VL_TOKEN_IDS)
        return VideoVLM.from_config(qwen2_5_vl_3b_config(), tokenizer, dtype=dtype)
    else:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    return vlm.to(dtype) if dtype is not None else vlm


def sft_target(
    sample_captions: list[str],
    target_events: list[int],
    process: str | None,
    answer: str,
    options: list[str] | None = None,
    answer_with: str = "letter",
    target_objects: list[int] | None = None,
) -> str:
    """The supervised completion: the target events' captions as reasoning, then the answer.

    A question about two events (order) names only their backgrounds, the part of each
    caption before "with", which keeps completions short. With ``options`` the reasoning
    ends by naming the chosen option's text (". the answer is red"), so picking the
    letter is one lookup of that word among the options instead of a match of the
    captions against every option. ``answer_with="option_text"`` answers with that text
    instead of the letter (``<answer> red </answer>``, which ``is_correct`` accepts given
    the options): a small model trained from scratch learns the letter lookup far more
    slowly than the question itself (``benchmarks/letter_lookup.py``).

    ``target_objects`` (indices into the target event's objects, from the generated data)
    keeps only the object the question names in the caption ("a grey plain background
    with a red circle stays still"): the reasoning looks at that object instead of
    listing every object of the event.
    """
    check_answer_with(answer_with)
    if target_events and sample_captions:
        captions = [sample_captions[i] for i in target_events]
        if len(captions) > 1:
            captions = [c.split(" with ")[0] for c in captions]
        elif target_objects:
            head, _, tail = captions[0].partition(" with ")
            parts = tail.split(" and ")
            if tail and all(0 <= i < len(parts) for i in target_objects):
                captions = [f"{head} with " + " and ".join(parts[i] for i in target_objects)]
        reasoning = " and ".join(captions)
        if (text := chosen_option_text(options, answer)) is not None:
            if answer_with == "option_text":
                return reference_completion(reasoning, text)
            reasoning += f" . the answer is {text}"
    else:
        reasoning = (process or "").replace("<think>", "").replace("</think>", "").strip()
    return reference_completion(reasoning, answer)


class VideoVLMStage(StageModule):
    """Shared base of the VLM stages; see the module docstring.

    Args:
        compressor: token compressor between the vision tower and the language model.
        budget_frames / budget_tokens: the compression budget (exactly one set; frames
            counts temporal groups, the paper's one-frame budget is ``budget_frames=1``).
        use_retrieval: feed the retriever's reconstructed video (the batch's
            ``retrieved_video``) instead of the full video.
        architecture / init_from / model_overrides / torch_dtype: how to build the VLM
            (see ``build_vlm``).
        max_new_tokens: generation length for evaluation.
        answer_with: how SFT targets answer multiple choice: ``"letter"`` (Video-R1's
            ``<answer> B </answer>``) or ``"option_text"`` (``<answer> red </answer>``);
            evaluation accepts both (see ``sft_target``).
        reasoning: what an SFT target's reasoning describes: ``"event"`` the target events'
            captions, ``"object"`` only the object a question names when the data says
            which (``target_objects``; see ``sft_target``).
        export_dir: at the end of a ``fit`` that finished (never after an error or an
            interrupt) the model is saved there (atomically) in ``save_pretrained`` format
            for later stages; a sharded run (FSDP, ZeRO-3) gathers the full weights first.
        gradient_checkpointing: recompute each transformer block's activations in the
            backward pass (transformers' gradient checkpointing: memory for time; FSDP
            configs use the strategy's ``activation_checkpointing_policy`` instead).
        optimizer / lr_scheduler: injected from YAML.
        max_nonfinite_steps: see ``StageModule``.
    """

    def __init__(
        self,
        compressor: TokenCompressor | None = None,
        budget_frames: int | None = 1,
        budget_tokens: int | None = None,
        use_retrieval: bool = False,
        architecture: str = "tiny",
        init_from: str | None = None,
        model_overrides: dict | None = None,
        torch_dtype: str | None = None,
        max_new_tokens: int = 48,
        answer_with: str = "letter",
        reasoning: str = "event",
        export_dir: str | None = None,
        gradient_checkpointing: bool = False,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
        seed: int = 0,
        max_nonfinite_steps: int = 3,
    ):
        super().__init__(optimizer, lr_scheduler, max_nonfinite_steps)
        check_answer_with(answer_with)
        if reasoning not in REASONING_FORMS:
            raise ValueError(f"reasoning must be one of {REASONING_FORMS}, got {reasoning!r}")
        self.reasoning = reasoning
        self.save_hyperparameters(ignore=["compressor", "optimizer", "lr_scheduler"])
        # Attributes, not hparams: under LightningCLI hparams are the config's values, and a
        # subclass that fixes these (TeacherFinetuning) has no config entry for them.
        self.compressor = compressor if compressor is not None else Identity()
        self.use_retrieval = use_retrieval
        if budget_tokens is not None:
            self.budget = Budget(tokens=budget_tokens)
        else:
            self.budget = Budget(frames=budget_frames if budget_frames is not None else 1)
        self.vlm: VideoVLM | None = None
        if init_from is None:
            self.vlm = self._build_vlm()
        self.metrics = torch.nn.ModuleDict({"val": AccuracyByKind(), "test": AccuracyByKind()})

    def _build_vlm(self) -> VideoVLM:
        hp = self.hparams
        return build_vlm(hp.architecture, hp.init_from, hp.model_overrides, hp.torch_dtype, hp.seed)

    def configure_model(self) -> None:
        """Load ``init_from`` (once the prerequisites exist); match the data's frame size."""
        if self.vlm is None:
            log.info("loading the VLM from %s", self.hparams.init_from)
            # from_pretrained returns eval mode; Lightning sets train/eval per loop itself.
            self.vlm = self._build_vlm().train()
        if self.hparams.get("gradient_checkpointing"):
            self.vlm.model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
        self._match_frame_size()

    def _match_frame_size(self) -> None:
        """Record the data's frame size on the VLM when training; warn on a mismatch."""
        datamodule = self._trainer.datamodule if self._trainer is not None else None
        size = getattr(datamodule, "frame_size", None)
        if size is None:
            return
        if self.vlm.frame_size is not None and self.vlm.frame_size != size:
            rank_zero_warn(
                f"the model was trained on {self.vlm.frame_size} px frames but "
                f"data.frame_size is {size}"
            )
        if self.trainer.state.fn == "fit":
            self.vlm.frame_size = size  # saved with the model: what it was trained on

    # ----------------------------------------------------------------------------- inputs
    def input_videos(self, batch: dict) -> list[torch.Tensor]:
        """The frames this stage's model sees: reconstructed by the retriever or full."""
        if self.use_retrieval:
            if "retrieved_video" not in batch:
                raise ValueError(
                    "use_retrieval is on but the batch has no 'retrieved_video': configure "
                    "data.retriever (see configs/retriever.yaml)"
                )
            return batch["retrieved_video"]
        return batch["video"]

    def input_segments(self, batch: dict) -> list[list[tuple[int, int]] | None]:
        """The clip spans of each input video (the retrieved clips), None for full videos."""
        if self.use_retrieval:
            return batch.get("retrieved_segments") or [None] * len(batch["retrieved_video"])
        return [None] * len(batch["video"])

    def compress_videos(
        self,
        frames: list[torch.Tensor],
        segments: list[list[tuple[int, int]] | None] | None = None,
    ) -> list[CompressedVideo]:
        """Encode and compress each video to the stage's budget (within its segments)."""
        segments = segments if segments is not None else [None] * len(frames)
        return [
            self.vlm.compress(f, self.compressor, self.budget, s) for f, s in zip(frames, segments)
        ]

    def compressed_inputs(self, batch: dict) -> list[CompressedVideo]:
        """The batch's input videos, encoded and compressed within their clips."""
        return self.compress_videos(self.input_videos(batch), self.input_segments(batch))

    def sft_targets(self, batch: dict) -> list[str]:
        """Reference completions of a batch (think = target captions, answer = solution)."""
        processes = batch.get("process") or [None] * batch["batch_size"]
        named = [None] * batch["batch_size"]
        if self.reasoning == "object":
            named = batch.get("target_objects") or named
        return [
            sft_target(c, t, p, a, o, self.hparams.answer_with, n)
            for c, t, p, a, o, n in zip(
                batch["captions"],
                batch["target_events"],
                processes,
                batch["answer"],
                batch["options"],
                named,
            )
        ]

    # ------------------------------------------------------------------------- evaluation
    def evaluate_batch(self, batch: dict, split: str) -> None:
        """Greedy answers for a batch; updates accuracy per question kind and token counts."""
        self.metrics[split].skip(int(batch.get("num_skipped") or 0))
        if not self.has_samples(batch):
            return
        videos = self.compressed_inputs(batch)
        output = self.vlm.generate(
            videos, batch["prompt"], max_new_tokens=self.hparams.max_new_tokens, do_sample=False
        )
        correct = [
            is_correct(text, solution, problem_type, options=options)
            for text, solution, problem_type, options in zip(
                output.texts, batch["solution"], batch["problem_type"], batch["options"]
            )
        ]
        self.metrics[split].update(correct, batch["question_kind"])
        self.log_visual_tokens(split, videos, batch["video"])

    def log_visual_tokens(
        self, split: str, videos: list[CompressedVideo], full_frames: list[torch.Tensor]
    ) -> None:
        """Log ``{split}/visual_tokens`` and ``{split}/kept_fraction`` of a batch."""
        size = len(videos)
        values = {
            f"{split}/visual_tokens": sum(v.num_tokens for v in videos) / size,
            # Relative to the full video (not to the retriever's shorter one), as in the paper.
            f"{split}/kept_fraction": sum(
                v.num_tokens / self.full_video_tokens(f) for v, f in zip(videos, full_frames)
            )
            / size,
        }
        for name, value in values.items():
            self.log(name, value, batch_size=size)

    def full_video_tokens(self, frames: torch.Tensor) -> int:
        """Visual tokens the full, uncompressed video would give the language model."""
        unit = self.vlm.patch_size * self.vlm.merge_size
        groups = -(-frames.shape[0] // self.vlm.temporal_patch_size)
        return groups * (frames.shape[-2] // unit) * (frames.shape[-1] // unit)

    def _log_accuracy(self, split: str) -> None:
        """Log accuracy overall and per kind, and how many questions were scored and
        skipped; no question scored is an error (``StageModule.log_scored``)."""
        values = self.metrics[split].compute()
        self.metrics[split].reset()
        questions, skipped = int(values.pop("questions")), int(values.pop("skipped"))
        for name, value in values.items():
            self.log(f"{split}/acc" if name == "all" else f"{split}/acc_{name}", value)
        self.log_scored(split, questions, skipped)

    @names_memory_settings("val")
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.evaluate_batch(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_accuracy("val")

    @names_memory_settings("test")
    def test_step(self, batch: dict, batch_idx: int) -> None:
        self.evaluate_batch(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_accuracy("test")

    # --------------------------------------------------------------------------- export
    def on_fit_end(self) -> None:
        # Lightning calls on_fit_end only when fit returns normally (an exception or Ctrl-C
        # skips it); the status check keeps it so should that change.
        if self.hparams.export_dir and self.trainer.state.status == TrainerStatus.RUNNING:
            # Every rank takes part in gathering a sharded model's weights; rank 0 writes.
            self.export(self.hparams.export_dir, full_vlm_state_dict(self._trainer))

    def provenance(self) -> dict:
        """Where the exported weights come from: this stage, its steps and its start."""
        trainer = self._trainer
        return {
            "stage": type(self).__name__,
            "init_from": self.hparams.get("init_from")
            or f"random init ({self.hparams.get('architecture', 'tiny')})",
            "global_step": trainer.global_step if trainer is not None else None,
            "epochs": trainer.current_epoch if trainer is not None else None,
            "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

    @rank_zero_only
    def export(self, directory: str, state_dict: dict | None = None) -> None:
        """Save the VLM in ``save_pretrained`` format, atomically (temp folder, then rename).

        ``state_dict``: the VLM's gathered weights when the model is sharded (see
        ``marc.modules.sharding.full_vlm_state_dict``); None saves the module's own.
        """
        target = Path(directory)
        staging = staging_dir(target)
        self.vlm.provenance = self.provenance()
        self.vlm.save_pretrained(staging, state_dict=state_dict)
        replace_dir(staging, target)
        log.info("exported the model to %s", target)

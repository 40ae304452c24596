"""StageModule: what every marc LightningModule shares, whatever it trains.

- the optimizer and scheduler are injected (``OptimizerCallable`` / ``LRSchedulerCallable``
  from YAML) and built over :meth:`StageModule.trainable_parameters`, the scheduler stepping
  every optimizer step;
- :meth:`StageModule.has_samples`: a batch in which every sample was skipped as bad input
  holds no samples;
- :meth:`StageModule.zero_loss`: the loss of such a batch, a zero tied to every trainable
  parameter, so under DDP this process still joins the other processes' gradient
  all-reduce and every process stays identical;
- :meth:`StageModule.skip_nonfinite`: whether a step's loss is NaN or infinite on any
  process, so every process skips it (``marc.modules.nonfinite``), and
  :meth:`StageModule.skipped_step_loss`, how an automatic-optimisation step is skipped
  (:meth:`StageModule.empty_batch_loss` for a batch of skipped samples);
- counting: every training epoch logs the samples it trained on and skipped
  (``train/samples``, ``train/skipped``) and the data module's skip counts
  (``data/skipped_rows``, ``data/skipped_samples``); an epoch in which every sample was
  skipped raises :class:`NoSamplesError`, so the stage fails and never exports, and so does
  a validation or test epoch that scored no question (:meth:`StageModule.log_scored`);
- :meth:`StageModule.memory_settings`: the settings an out-of-memory error names
  (``marc.modules.out_of_memory``);
- checkpoints hold each process's random-number generator states
  (``marc.modules.rng_states``), its sample counts of the epoch so far and its non-finite
  step counts, which each process takes back when a run resumes;
- :meth:`StageModule.clip_grad_norm` clips by the norm over every parameter, sharded
  (FSDP) or not, and ``Trainer(gradient_clip_val=...)`` goes through it.
"""

from __future__ import annotations

import logging
import math

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from marc.modules.nonfinite import NonFiniteLosses
from marc.modules.out_of_memory import is_out_of_memory, with_hint
from marc.modules.rng_states import collect_rng_states, every_rank, set_rng_states
from marc.modules.sharding import fsdp_root

log = logging.getLogger(__name__)

PROCESS_STATES_KEY = "marc_process_states"


class NoSamplesError(RuntimeError):
    """A stage had nothing to learn from or score: every sample was skipped as bad input."""


class StageModule(L.LightningModule):
    """Base of the marc stages; see the module docstring.

    Args:
        optimizer / lr_scheduler: injected from YAML.
        max_nonfinite_steps: consecutive steps with a NaN or infinite loss that stop the
            run (fewer are skipped and counted).
    """

    def __init__(
        self,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
        max_nonfinite_steps: int = 3,
    ):
        super().__init__()
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler
        self.nonfinite = NonFiniteLosses(max_nonfinite_steps)
        self._epoch_counts = {"samples": 0, "skipped": 0}

    @staticmethod
    def has_samples(batch: dict) -> bool:
        """Whether the collated batch holds at least one sample (skipped ones are dropped)."""
        return bool(batch.get("batch_size"))

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """Parameters the optimizer updates (those that require gradients)."""
        return [p for p in self.parameters() if p.requires_grad]

    def zero_loss(self) -> torch.Tensor:
        """A zero loss whose graph reaches every trainable parameter (see the module docstring)."""
        return sum(p.sum() for p in self.trainable_parameters()) * 0.0

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.trainable_parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    # ------------------------------------------------------------------ across processes
    def sum_over_processes(self, value: float) -> float:
        """``value`` summed over every process (itself without a distributed trainer)."""
        trainer = self._trainer
        if trainer is None or trainer.world_size == 1:
            return float(value)
        total = torch.tensor(float(value), device=self.device)
        return float(trainer.strategy.reduce(total, reduce_op="sum"))

    # ------------------------------------------------------------------- non-finite loss
    def skipped_step_loss(self) -> torch.Tensor:
        """What an automatic-optimisation ``training_step`` returns for a skipped step.

        Lightning refuses a None under DDP, so the step returns :meth:`zero_loss` (every
        process joins the gradient all-reduce) and the update is dropped in
        :meth:`on_before_optimizer_step`, which sets the gradients to None: optimizers
        leave a parameter without a gradient untouched (no momentum, no weight decay).
        With gradient accumulation the whole accumulated update is dropped.
        """
        self._drop_update = True
        return self.zero_loss()

    def empty_batch_loss(self) -> torch.Tensor:
        """What an automatic-optimisation ``training_step`` returns for a batch whose samples
        were all skipped.

        Alone, the update is dropped (a zero gradient would still move AdamW's weights by
        momentum and weight decay). Under DDP a zero loss joins the other processes' vote
        on skipping and their gradient all-reduce, and the step applies their averaged
        gradients here too, as every process must to stay identical.
        """
        if self._trainer is None or self._trainer.world_size == 1:
            return self.skipped_step_loss()
        skip = self.skip_nonfinite(self.zero_loss(), empty=True)
        return self.skipped_step_loss() if skip else self.zero_loss()

    def on_before_optimizer_step(self, optimizer) -> None:
        if getattr(self, "_drop_update", False):
            optimizer.zero_grad(set_to_none=True)
            self._drop_update = False

    def skip_nonfinite(
        self, loss: torch.Tensor | None, detail: str = "", empty: bool = False
    ) -> bool:
        """True when this step must be skipped: its loss is NaN or infinite (or None: it
        could not be computed) on this process or another.

        Every process must call it for the same steps (one with an ``empty`` batch too, so
        it skips with the others); fewer than ``max_nonfinite_steps`` in a row are skipped
        and logged as ``train/skipped_nonfinite``, that many raise FloatingPointError.
        """
        value = None if empty or loss is None else float(loss.detach().float().sum())
        bad_here = not empty and (value is None or not math.isfinite(value))
        bad = self.sum_over_processes(float(bad_here)) > 0
        skip = self.nonfinite.record(bad, value, self.global_step, detail)
        if self._trainer is not None:
            self.log("train/skipped_nonfinite", float(self.nonfinite.skipped), batch_size=1)
        return skip

    # -------------------------------------------------------------------------- counting
    def on_train_epoch_start(self) -> None:
        self._epoch_counts = {"samples": 0, "skipped": 0}

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        self._epoch_counts["samples"] += int(batch.get("batch_size") or 0)
        self._epoch_counts["skipped"] += int(batch.get("num_skipped") or 0)

    def on_train_epoch_end(self) -> None:
        samples = self.sum_over_processes(self._epoch_counts["samples"])
        skipped = self.sum_over_processes(self._epoch_counts["skipped"])
        self.log("train/samples", samples)
        self.log("train/skipped", skipped)
        self.log_data_skips()
        if samples == 0:
            raise NoSamplesError(
                f"epoch {self.current_epoch} trained on no sample: all {int(skipped)} samples "
                "of its batches were skipped as bad input (see the warnings that name them); "
                "the stage stops and exports nothing"
            )

    def log_scored(self, split: str, questions: int, skipped: int) -> None:
        """Log ``{split}/questions`` and ``{split}/skipped`` (counted over every process) and
        the data module's skips; raise :class:`NoSamplesError` when no question was scored
        (outside the sanity check, whose few batches may all be bad)."""
        self.log(f"{split}/questions", float(questions))
        self.log(f"{split}/skipped", float(skipped))
        self.log_data_skips()
        if questions == 0 and not self.trainer.sanity_checking:
            raise NoSamplesError(
                f"no {split} question was scored: all {skipped} were skipped as bad input "
                f"(see the warnings that name them), so the {split} metrics would mean "
                "nothing; the stage stops and exports nothing"
            )
        if skipped:
            log.warning(
                "%s: %d questions scored, %d skipped as bad input", split, questions, skipped
            )

    def log_data_skips(self) -> None:
        """Log the data module's counts of skipped annotation rows and samples."""
        datamodule = getattr(self._trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "skipped_samples"):
            return
        self.log("data/skipped_rows", float(datamodule.skipped_rows))
        # Each process counts the samples it was served: the total is their sum.
        self.log(
            "data/skipped_samples",
            float(datamodule.skipped_samples),
            sync_dist=True,
            reduce_fx="sum",
        )

    # ----------------------------------------------------------------- out of memory
    def backward(self, loss: torch.Tensor, *args, **kwargs) -> None:
        """Lightning's backward; out of memory in it names the settings to lower."""
        try:
            super().backward(loss, *args, **kwargs)
        except RuntimeError as error:
            if not is_out_of_memory(error):
                raise
            raise with_hint(error, self, "train", "the backward pass of a train step") from error

    def memory_settings(self, split: str) -> list[tuple[str, object]]:
        """(setting, current value) pairs that set the size of a ``split`` step."""
        data = getattr(getattr(self._trainer, "datamodule", None), "hparams", {})
        if split == "train":
            return [("data.batch_size", data.get("batch_size", "?"))]
        size = data.get("eval_batch_size") or f"unset, so data.batch_size {data.get('batch_size')}"
        return [("data.eval_batch_size", size)]

    # ---------------------------------------------------------------- gradient clipping
    def clip_grad_norm(self, optimizer: torch.optim.Optimizer, max_norm: float) -> None:
        """Scale the gradients so that the norm over all of them is at most ``max_norm``."""
        root = fsdp_root(self._trainer)
        if root is not None:
            # Each rank holds a shard: only the root knows the norm over all of them.
            root.clip_grad_norm_(max_norm)
            return
        self.clip_gradients(optimizer, gradient_clip_val=max_norm, gradient_clip_algorithm="norm")

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        if gradient_clip_val and gradient_clip_algorithm in (None, "norm"):
            self.clip_grad_norm(optimizer, gradient_clip_val)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    # ------------------------------------------------------------------------ resuming
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Every process calls this while a checkpoint is made, so the gather is safe.
        checkpoint[PROCESS_STATES_KEY] = every_rank(
            {
                "rng": collect_rng_states(),
                "epoch_counts": dict(self._epoch_counts),
                "nonfinite": self.nonfinite.state_dict(),
            }
        )

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        states = checkpoint.get(PROCESS_STATES_KEY)
        resuming = self._trainer is not None and self.trainer.state.fn == "fit"
        if not states or not resuming:  # not when a checkpoint is only loaded for weights
            return
        # Resumed on more processes than saved them: the extra ones take rank 0's.
        state = states[self.global_rank if self.global_rank < len(states) else 0]
        set_rng_states(state["rng"])
        # A run resumed mid-epoch does not start the epoch again (no on_train_epoch_start):
        # its counts go on from the checkpoint's.
        self._epoch_counts = dict(state["epoch_counts"])
        self.nonfinite.load_state_dict(state["nonfinite"])
